#!/usr/bin/env bash
# Cross-build camstream for a Raspberry Pi (or any arm64/armhf Debian) with
# Debian's own Rust, in a cached Debian 13 (trixie) build root: no rustup.
#
#   packaging/cross-build.sh [--test | --cargo | --exec | --shell] TRIPLE [-- ARGS...]
#
#   TRIPLE   aarch64-unknown-linux-gnu      (Pi 3/4/5 with a 64-bit OS; .deb arch arm64)
#            armv7-unknown-linux-gnueabihf  (Pi 2/3/4 with a 32-bit OS; .deb arch armhf)
#   --test   instead of the release build, run the proto and agent test
#            suites for TRIPLE under qemu-user (ARGS go to `cargo test`
#            before its `--`, e.g. `-- --test golden`; QEMU_USER_SKIPS below
#            lists the tests qemu-user cannot run)
#   --cargo  run `cargo ARGS...` in the build root with `--target TRIPLE`
#            added after the subcommand; `run` and `test` run the target's
#            binaries under qemu-user, e.g.
#            `--cargo aarch64-unknown-linux-gnu -- run --release -p loadgen --bin stagebench -- --help`
#   --exec   run the command ARGS in the build root, from the source tree,
#            with the environment --cargo has (bench/arm-insns uses it)
#   --shell  open a shell in the build root, set up for TRIPLE (for debugging)
#
# Without --test it builds agent, viewer and camstream-cert (the viewer's
# package carries it) with `cargo build --release
# --locked` into target/TRIPLE/release/ of this source tree and prints that
# directory on stdout (cargo's output goes to stderr).
#
# The build root: the first run (as root) makes it with debootstrap and
# installs trixie's rustc-web/cargo-web (Rust 1.96), the target's Rust
# standard library (libstd-rust-web-dev:ARCH), the cross C compiler (for
# libdeflate) and qemu-user (for --test): about 2.5 GB and a few minutes with a
# fast mirror. Later runs reuse it. It lives in $CAMSTREAM_CACHE (default
# /var/cache/camstream): trixie-root/ and cargo-home/ (the crates.io
# download cache), never in the source tree. The host's CA certificates are
# copied in on every run, so cargo works behind a TLS-intercepting proxy.
# The Debian mirrors are $CAMSTREAM_DEBIAN_MIRROR (default
# http://deb.debian.org/debian) and $CAMSTREAM_DEBIAN_SECURITY_MIRROR
# (default http://deb.debian.org/debian-security, where Rust updates land).
#
# Safe to run concurrently, also from different source trees: setting up
# the root takes an exclusive lock (trixie-root.lock), builds take a shared
# one, and every run mounts the source tree, /proc, /dev and /sys in its own
# private mount namespace (unshare), so nothing stays mounted if it is killed.
# Cargo serialises two builds of the same tree and target on its own.
#
# Why trixie: Debian's own Rust new enough for the lock file (rust-version in
# Cargo.toml) is rustc-web, and trixie carries it with its standard library
# for arm64 and armhf (libstd-rust-web-dev). The binaries ask for glibc 2.34
# at most (readelf -V), so they run on Raspberry Pi OS bookworm (glibc 2.36)
# and trixie alike. Why a chroot and not the host: the host (CI: Debian 12)
# keeps its own apt state, with no foreign architecture added.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
readonly repo
cache=${CAMSTREAM_CACHE:-/var/cache/camstream}
mirror=${CAMSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${CAMSTREAM_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
root=$cache/trixie-root
readonly cache mirror security_mirror root
# Bump when the root's base setup (not its package list) changes: older roots are remade.
readonly ROOT_LAYOUT=1
# Free space needed: a new root (~2.5 GB after the packages), a build (~1 GB of target/).
readonly ROOT_NEED_MIB=3000 BUILD_NEED_MIB=1500

main() {
    local mode=build triple=''
    while [ $# -gt 0 ]; do
        case $1 in
        --test) mode='test'; shift ;;
        --cargo) mode='cargo'; shift ;;
        --exec) mode='exec'; shift ;;
        --shell) mode='shell'; shift ;;
        -h | --help) sed -n '2,47p' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *)
            [ -z "$triple" ] || die "one TRIPLE only; pass cargo arguments after --"
            triple=$1; shift
            ;;
        esac
    done
    [ -n "$triple" ] || die "which target? e.g. packaging/cross-build.sh aarch64-unknown-linux-gnu (see --help)"

    local arch gnu
    read -r arch gnu <<<"$(target_info "$triple")"
    preflight

    exec 9>"$cache/trixie-root.lock"
    flock -s 9
    if ! root_ready "$arch" "$gnu"; then
        # Upgrade to exclusive (flock drops the shared lock first, so two
        # upgrading runs cannot deadlock), then look again: another run may
        # have done the work while we waited.
        flock -x 9
        root_ready "$arch" "$gnu" || setup_root "$arch" "$gnu"
        flock -s 9
    fi
    copy_ca_certificates

    case $mode in
    build)
        in_root "$triple" "$arch" "$gnu" cargo build --release --locked --bin agent --bin viewer --bin camstream-cert \
            --target "$triple" "$@" >&2
        echo "$repo/target/$triple/release"
        ;;
    test)
        # --no-fail-fast: one failure still lets every suite report.
        in_root "$triple" "$arch" "$gnu" cargo test --locked --no-fail-fast --target "$triple" -p proto -p agent "$@" \
            -- "${QEMU_USER_SKIPS[@]}"
        ;;
    cargo)
        [ $# -gt 0 ] || die "--cargo needs a cargo subcommand after --, e.g. -- run --release -p loadgen --bin stagebench"
        local subcommand=$1
        shift
        in_root "$triple" "$arch" "$gnu" cargo "$subcommand" --target "$triple" "$@"
        ;;
    exec)
        [ $# -gt 0 ] || die "--exec needs a command after --"
        in_root "$triple" "$arch" "$gnu" "$@"
        ;;
    shell)
        in_root "$triple" "$arch" "$gnu" bash -i
        ;;
    esac
}

die() {
    echo "cross-build.sh: $*" >&2
    exit 1
}

# target_info TRIPLE: "DEBIAN_ARCH GNU_TRIPLE" of a Rust target (the GNU
# triple names the cross compiler, e.g. aarch64-linux-gnu-gcc).
target_info() {
    case $1 in
    aarch64-unknown-linux-gnu) echo "arm64 aarch64-linux-gnu" ;;
    armv7-unknown-linux-gnueabihf) echo "armhf arm-linux-gnueabihf" ;;
    *) die "unsupported target '$1': use aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf" ;;
    esac
}

# The packages a target needs in the root, by what needs them.
root_packages() {
    local arch=$1 gnu=$2
    # Rust 1.96 (trixie's plain rustc is 1.85, older than the lock needs)
    # and its standard library for the target.
    echo rustc-web cargo-web "libstd-rust-web-dev:$arch"
    # Clippy for the target: ./run-tests lints the ARM code too.
    echo rust-web-clippy
    # The linker and libdeflate's C compiler, with the target's libc.
    echo "gcc-$gnu" "libc6-dev-$arch-cross"
    # bindgen (the v4l crate's V4L2 bindings) loads libclang.
    echo libclang-dev
    # --test runs the target's test binaries under emulation.
    echo qemu-user
    # cargo fetches crates over TLS; update-ca-certificates merges the host's.
    echo ca-certificates
}

# preflight: everything this script needs from the host, checked before it
# touches anything, so a missing piece is one clear message.
preflight() {
    [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mounts): run it with sudo"
    local tool missing=()
    for tool in debootstrap:debootstrap unshare:util-linux flock:util-linux chroot:coreutils df:coreutils; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] || die "missing host tools; install them: apt-get install ${missing[*]}"
    mkdir -p "$cache" || die "cannot create the cache directory $cache (set CAMSTREAM_CACHE to a writable place)"
    if [ ! -e "$root/.camstream-layout" ]; then
        need_space "$cache" "$ROOT_NEED_MIB" "the trixie build root"
    fi
    mkdir -p "$repo/target"
    need_space "$repo/target" "$BUILD_NEED_MIB" "the build"
}

# need_space DIR MIB WHAT: die unless DIR's file system has MIB MiB free.
need_space() {
    local free
    free=$(df -Pm "$1" | awk 'NR == 2 { print $4 }')
    [ "${free:-0}" -ge "$2" ] ||
        die "$3 needs about $2 MiB free in $1, there are ${free:-0} MiB: free some space (or set CAMSTREAM_CACHE elsewhere)"
}

# root_ready ARCH GNU: the root exists, in this layout, with ARCH's packages
# as root_packages lists them now (a package added to the list is installed
# on the next run).
root_ready() {
    [ "$(cat "$root/.camstream-layout" 2>/dev/null)" = "$ROOT_LAYOUT" ] &&
        [ "$(cat "$root/.camstream-ready-$1" 2>/dev/null)" = "$(root_packages "$1" "$2" | tr '\n' ' ')" ]
}

# setup_root ARCH GNU: make the root if it is missing or of an older layout,
# then install ARCH's packages. Runs under the exclusive lock.
setup_root() {
    local arch=$1 gnu=$2
    if [ "$(cat "$root/.camstream-layout" 2>/dev/null)" != "$ROOT_LAYOUT" ]; then
        remove_tree "$root"
        make_root
    fi
    echo "cross-build.sh: installing the $arch toolchain into $root" >&2
    local packages
    packages=$(root_packages "$arch" "$gnu" | tr '\n' ' ')
    in_chroot sh -c "dpkg --add-architecture $arch" ||
        die "could not add the $arch architecture in $root"
    # shellcheck disable=SC2086 # $packages is a list of package names
    if ! in_chroot env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -q && apt-get install -y -q --no-install-recommends $packages && apt-get clean" >&2; then
        die "could not install $packages from $mirror into $root (network down, or the mirror unreachable? see apt's message above; set CAMSTREAM_DEBIAN_MIRROR for another mirror)"
    fi
    echo "$packages" >"$root/.camstream-ready-$arch"
}

# make_root: debootstrap trixie into a scratch directory and move it into
# place only when complete, so an interrupted run leaves no half root.
make_root() {
    local partial=$root.partial
    remove_tree "$partial"
    need_space "$cache" "$ROOT_NEED_MIB" "the trixie build root"
    echo "cross-build.sh: making the trixie build root in $root (debootstrap from $mirror)" >&2
    # In a private mount namespace: debootstrap mounts /proc and /sys in the
    # new root, and those mounts must not outlive it if it is interrupted.
    if ! unshare --mount --propagation private \
        debootstrap --variant=minbase trixie "$partial" "$mirror" >&2; then
        die "debootstrap of trixie from $mirror failed (see its messages above; network down? set CAMSTREAM_DEBIAN_MIRROR for another mirror; its log: $partial/debootstrap/debootstrap.log)"
    fi
    cat >"$partial/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -f "$partial/etc/apt/sources.list"
    # Keep the root small: no docs, no recommends.
    printf 'APT::Install-Recommends "false";\n' >"$partial/etc/apt/apt.conf.d/90camstream"
    echo "$ROOT_LAYOUT" >"$partial/.camstream-layout"
    mv "$partial" "$root"
}

# remove_tree DIR: delete DIR, refusing if anything is mounted below it (a
# mount left by a crash would take the host's files with it).
remove_tree() {
    [ -e "$1" ] || return 0
    if awk -v d="$1/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        die "something is still mounted below $1 (see /proc/mounts): unmount it, then run again"
    fi
    rm -rf --one-file-system -- "$1"
}

# copy_ca_certificates: the host's CA certificates, including local ones such
# as a TLS proxy's, merged into the root's bundle.
copy_ca_certificates() {
    local local_certs=/usr/local/share/ca-certificates
    if [ -d "$local_certs" ]; then
        mkdir -p "$root$local_certs"
        cp -a "$local_certs/." "$root$local_certs/"
    fi
    if [ -x "$root/usr/sbin/update-ca-certificates" ]; then
        in_chroot update-ca-certificates >/dev/null 2>&1 || true
    fi
    # Certificates the host trusts that are not under local_certs (put into
    # its bundle some other way) still reach cargo: the host's bundle is used
    # as is when it exists.
    if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$root/etc/camstream"
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/camstream/host-ca-certificates.crt"
    fi
}

# in_chroot CMD...: run CMD in the root, with /proc, /dev and /sys mounted
# in a private mount namespace (for apt and dpkg).
in_chroot() {
    unshare --mount --propagation private sh -c "$MOUNT_AND_CHROOT" sh "$root" "" "" "$@"
}

# The script in_chroot and in_root run in their mount namespace: mount the
# kernel's file systems (and, when REPO is not empty, the source tree at its
# host path and the cargo cache), then chroot. Arguments: ROOT REPO CACHE CMD...
# shellcheck disable=SC2016 # expanded by the inner sh, not here
readonly MOUNT_AND_CHROOT='
    root=$1 repo=$2 cache=$3; shift 3
    mount -t proc proc "$root/proc" &&
        mount --rbind /dev "$root/dev" &&
        mount --rbind /sys "$root/sys" || exit
    if [ -n "$repo" ]; then
        mount --bind "$repo" "$root$repo" &&
            mount --bind "$cache/cargo-home" "$root/cargo-home" || exit
    fi
    exec chroot "$root" "$@"
'

# in_root TRIPLE ARCH GNU CMD...: run CMD in the root from the source tree,
# which is mounted at its host path, with cargo set up for TRIPLE.
in_root() {
    local triple=$1 arch=$2 gnu=$3
    shift 3
    local var
    var=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    mkdir -p "$cache/cargo-home" "$root$repo" "$root/cargo-home"
    local cafile=/etc/ssl/certs/ca-certificates.crt
    [ ! -s "$root/etc/camstream/host-ca-certificates.crt" ] || cafile=/etc/camstream/host-ca-certificates.crt
    unshare --mount --propagation private sh -c "$MOUNT_AND_CHROOT" sh "$root" "$repo" "$cache" \
        env -i \
        PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
        CARGO_HOME=/cargo-home \
        CARGO_HTTP_CAINFO="$cafile" SSL_CERT_FILE="$cafile" \
        CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}" \
        "CARGO_TARGET_${var}_LINKER=$gnu-gcc" \
        "CARGO_TARGET_${var}_RUNNER=qemu-$(qemu_arch "$arch") -L /usr/$gnu" \
        RUSTFLAGS="${CAMSTREAM_CROSS_RUSTFLAGS:--D warnings}" \
        sh -c "$CD_AND_EXEC" sh "$repo" "$@"
}

# shellcheck disable=SC2016 # expanded by the inner sh, not here
readonly CD_AND_EXEC='cd "$1" && shift && exec "$@"'

# Tests that check what qemu-user does not emulate, skipped under it (the
# same syscalls are made as on x86, where the tests run natively):
# - connected_socket_detects_a_dead_viewer reads SO_SNDTIMEO back:
#   setsockopt(SOL_SOCKET, SO_SNDTIMEO, 16-byte timeval) succeeds, but
#   qemu-user's getsockopt answers a zero timeout (seen with -strace).
readonly QEMU_USER_SKIPS=(--skip send::tests::connected_socket_detects_a_dead_viewer)

# qemu_arch ARCH: qemu-user's name for a Debian architecture.
qemu_arch() {
    case $1 in
    arm64) echo aarch64 ;;
    armhf) echo arm ;;
    esac
}

main "$@"
