#!/usr/bin/env bash
# Build the camstream Debian packages, camstream-agent and camstream-viewer,
# with plain `dpkg-deb --build` from a staged tree. camstream-viewer also
# carries camstream-cert, the certificate helper: it runs on the workstation,
# where the CA key stays (docs/DESIGN.md, "Optional mutual TLS").
#
#   packaging/build-deb.sh [--target TRIPLE] [--bin-dir DIR] [--out DIR]
#
#   --target TRIPLE  cross-build for another architecture, e.g.
#                    aarch64-unknown-linux-gnu (Pi 3/4/5, 64-bit OS) or
#                    armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS).
#   --bin-dir DIR    package the agent, viewer and camstream-cert binaries
#                    already in DIR
#                    instead of running `cargo build --release` (the tests
#                    use this with their debug build).
#   --out DIR        where the .deb files go (default: target/debian).
#
# Why dpkg-deb rather than cargo-deb: it ships with every Debian (dpkg), so
# building a package needs no extra tool to compile and install, and the
# tree below is exactly what lands on the disk: maintainer scripts, conffiles
# and paths are all in plain view and checked by lintian in the test suite.
#
# Prints the paths of the two packages, one per line, on stdout.
#
# How it reads: main, right below, is the whole recipe. Every other function
# takes what it needs as arguments and answers on stdout; only the source tree
# ($repo, where this script lives) is known everywhere.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
readonly repo

main() {
    local target='' bin_dir='' out=$repo/target/debian
    while [ $# -gt 0 ]; do
        case $1 in
        --target) target=${2:?--target needs a triple}; shift 2 ;;
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
        esac
    done

    local tool
    for tool in dpkg-deb fakeroot gzip md5sum; do
        command -v "$tool" >/dev/null || die "$tool not found: sudo apt-get install dpkg-dev fakeroot"
    done

    local arch version strip
    arch=$(debian_arch "$target")
    [ -n "$bin_dir" ] || bin_dir=$(cargo_build "$target")
    local bin
    for bin in agent viewer camstream-cert; do
        [ -x "$bin_dir/$bin" ] || die "no $bin binary in $bin_dir (build it, or pass --bin-dir)"
    done
    version=$(debian_version)
    strip=$(strip_tool "$target")
    [ -n "$strip" ] || echo "build-deb.sh: no strip for $arch found, packaging unstripped binaries (lintian will warn; install $(strip_package "$target"))" >&2

    local work
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand $work now: it is local to main, gone by the time the EXIT trap runs
    trap "rm -rf -- '$work'" EXIT
    mkdir -p "$out"

    local root depends
    root=$work/camstream-agent
    stage_common "$root" camstream-agent agent "$bin_dir" "$strip" "$version"
    stage_agent "$root"
    depends="$(shlib_depends "$work/shlibs" "$root/usr/bin/agent"), udev"
    control camstream-agent "$version" "$arch" "$(installed_size "$root")" "$depends" \
        v4l-utils "$(agent_description)" >"$root/DEBIAN/control"
    build_deb "$root" "$out/camstream-agent_${version}_$arch.deb"

    root=$work/camstream-viewer
    stage_common "$root" camstream-viewer viewer "$bin_dir" "$strip" "$version"
    stage_viewer "$root"
    stage_binary "$root" camstream-cert "$bin_dir" "$strip"
    depends=$(shlib_depends "$work/shlibs" "$root/usr/bin/viewer")
    # Windows need X11, loaded at run time (dlopen); headless needs neither.
    control camstream-viewer "$version" "$arch" "$(installed_size "$root")" "$depends" \
        "libx11-6, libxcursor1" "$(viewer_description)" >"$root/DEBIAN/control"
    build_deb "$root" "$out/camstream-viewer_${version}_$arch.deb"
}

die() {
    echo "build-deb.sh: $*" >&2
    exit 1
}

# debian_arch TRIPLE: the Debian architecture of a Rust target ('' = this machine).
debian_arch() {
    case $1 in
    '') dpkg --print-architecture ;;
    aarch64-unknown-linux-gnu) echo arm64 ;;
    armv7-unknown-linux-gnueabihf) echo armhf ;;
    arm-unknown-linux-gnueabihf) echo armhf ;;
    x86_64-unknown-linux-gnu) echo amd64 ;;
    *) die "no Debian architecture known for target '$1'" ;;
    esac
}

# cargo_build TRIPLE: release-build agent, viewer and camstream-cert for TRIPLE ('' = this
# machine), cargo's output on stderr; prints the directory holding them. The
# Raspberry Pi targets go through cross-build.sh (Debian's Rust in a cached
# trixie build root, no rustup); other triples need `rustup target add`.
cargo_build() {
    local target=$1
    case $target in
    '')
        cargo build --release --bin agent --bin viewer --bin camstream-cert --manifest-path "$repo/Cargo.toml" >&2
        echo "$repo/target/release"
        ;;
    aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf)
        "$repo/packaging/cross-build.sh" "$target" || die "cross-build.sh $target failed (see above)"
        ;;
    *)
        cargo build --release --bin agent --bin viewer --bin camstream-cert --target "$target" --manifest-path "$repo/Cargo.toml" >&2
        echo "$repo/target/$target/release"
        ;;
    esac
}

# debian_version: the workspace version as a Debian version, 0.1.0 -> 0.1.0-1.
debian_version() {
    local upstream
    upstream=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
    [ -n "$upstream" ] || die "no version in [workspace.package] of $repo/Cargo.toml"
    echo "$upstream-1"
}

# strip_tool TRIPLE: the strip program for TRIPLE's binaries, or nothing when
# it is not installed.
strip_tool() {
    local strip
    case $1 in
    '') strip='strip' ;;
    armv7-* | arm-*) strip=arm-linux-gnueabihf-strip ;;
    *) strip=${1%%-unknown-*}-linux-gnu-strip ;;
    esac
    if command -v "$strip" >/dev/null; then
        echo "$strip"
    fi
}

# strip_package TRIPLE: the Debian package with TRIPLE's strip.
strip_package() {
    case $1 in
    '') echo binutils ;;
    armv7-* | arm-*) echo binutils-arm-linux-gnueabihf ;;
    *) echo "binutils-${1%%-unknown-*}-linux-gnu" ;;
    esac
}

# stage_common ROOT PACKAGE BINARY BIN_DIR STRIP VERSION: stage, under ROOT,
# the parts every package has: the binary and its man page (stage_binary),
# copyright, changelog, lintian overrides, and DEBIAN/.
stage_common() {
    local root=$1 pkg=$2 bin=$3 bin_dir=$4 strip=$5 version=$6
    local doc=$root/usr/share/doc/$pkg man=$root/usr/share/man/man1/$bin.1.gz
    install -d -m 755 "$root/DEBIAN" "$doc" "$root/usr/share/lintian/overrides"
    install -m 644 "$repo/packaging/$bin.lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"
    stage_binary "$root" "$bin" "$bin_dir" "$strip"
    copyright >"$doc/copyright"
    changelog "$pkg" "$version" | gzip -9n >"$doc/changelog.Debian.gz"
    chmod 644 "$doc/copyright" "$doc/changelog.Debian.gz"
}

# stage_binary ROOT BINARY BIN_DIR STRIP: /usr/bin/BINARY from BIN_DIR
# (stripped with STRIP unless that is empty) and its man page
# packaging/BINARY.1, under ROOT.
stage_binary() {
    local root=$1 bin=$2 bin_dir=$3 strip=$4
    local man=$root/usr/share/man/man1/$bin.1.gz
    install -d -m 755 "$root/usr/bin" "$root/usr/share/man/man1"
    install -m 755 "$bin_dir/$bin" "$root/usr/bin/$bin"
    [ -z "$strip" ] || "$strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/bin/$bin"
    gzip -9n <"$repo/packaging/$bin.1" >"$man"
    chmod 644 "$man"
}

# stage_agent ROOT: the agent's own files: launcher, unit, udev rule, config
# (a conffile) and maintainer scripts.
stage_agent() {
    local root=$1
    install -d -m 755 "$root/usr/libexec/camstream" "$root/lib/systemd/system" "$root/lib/udev/rules.d" "$root/etc/camstream"
    install -m 755 "$repo/systemd/camera-agent-launch" "$root/usr/libexec/camstream/camera-agent-launch"
    install -m 644 "$repo/systemd/camera-agent@.service" "$root/lib/systemd/system/camera-agent@.service"
    install -m 644 "$repo/udev/70-camera-agent.rules" "$root/lib/udev/rules.d/70-camera-agent.rules"
    install -m 644 "$repo/config/agent.env" "$root/etc/camstream/agent.env"
    install -d -m 755 "$root/etc/camstream/tls"
    maintainer_files "$root" agent /etc/camstream/agent.env
}

# stage_viewer ROOT: the viewer's own files: unit, config (a conffile) and
# maintainer scripts.
stage_viewer() {
    local root=$1
    install -d -m 755 "$root/lib/systemd/system" "$root/etc/camstream"
    install -m 644 "$repo/systemd/camera-viewer.service" "$root/lib/systemd/system/camera-viewer.service"
    install -m 644 "$repo/config/viewer.env" "$root/etc/camstream/viewer.env"
    install -d -m 755 "$root/etc/camstream/tls"
    maintainer_files "$root" viewer /etc/camstream/viewer.env
}

# maintainer_files ROOT NAME CONFFILE: DEBIAN/conffiles listing CONFFILE, and
# the maintainer scripts packaging/NAME.{postinst,prerm,postrm}.
maintainer_files() {
    local root=$1 name=$2 conffile=$3 script
    echo "$conffile" >"$root/DEBIAN/conffiles"
    chmod 644 "$root/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        install -m 755 "$repo/packaging/$name.$script" "$root/DEBIAN/$script"
    done
}

# shlib_depends SCRATCH BINARY: the Depends: of BINARY, from its shared
# libraries when dpkg-shlibdeps can read them (native builds). For a cross
# build, whose libraries are not installed here, the libraries a Rust binary
# links, with the libc6 version from the newest GLIBC_ symbol version the
# binary asks for (readelf reads any architecture). SCRATCH is a directory
# for the debian/control that dpkg-shlibdeps insists on.
shlib_depends() {
    local scratch=$1 binary=$2 deps glibc
    mkdir -p "$scratch/debian"
    printf 'Source: camstream\n\nPackage: camstream\nArchitecture: any\n' >"$scratch/debian/control"
    deps=$(cd "$scratch" && dpkg-shlibdeps -O -e"$binary" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || deps=
    if [ -z "$deps" ]; then
        glibc=$(readelf --version-info "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
        deps="libc6 (>= ${glibc:-2.34}), libgcc-s1 (>= 4.2)"
    fi
    echo "$deps"
}

# installed_size ROOT: the Installed-Size: of the tree staged under ROOT, in KiB.
installed_size() {
    du -k -s --exclude=DEBIAN "$1" | cut -f 1
}

# control PACKAGE VERSION ARCH SIZE DEPENDS RECOMMENDS DESCRIPTION: the
# DEBIAN/control file (no Recommends: line when RECOMMENDS is empty).
control() {
    local pkg=$1 version=$2 arch=$3 size=$4 depends=$5 recommends=$6 description=$7
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: camstream developers <camstream@example.org>"
    echo "Installed-Size: $size"
    echo "Depends: $depends"
    [ -z "$recommends" ] || echo "Recommends: $recommends"
    echo "Section: video"
    echo "Priority: optional"
    printf '%s\n' "$description"
}

# build_deb ROOT DEB: DEBIAN/md5sums of the staged tree under ROOT, then the
# package DEB; prints DEB's path.
build_deb() {
    local root=$1 deb=$2
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
    chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    fakeroot dpkg-deb --build -Zxz "$root" "$deb" >&2
    echo "$deb"
}

agent_description() {
    cat <<'EOF'
Description: camstream camera agent: streams USB cameras to a viewer
 Captures frames from V4L2 cameras, encodes each as a gzip-compressed BMP and
 sends it over TCP to a camstream viewer.
 .
 Plugging in a camera starts camera-agent@<node>.service for it (udev rule),
 unplugging it stops that agent. Set the viewer address in
 /etc/camstream/agent.env.
EOF
}

viewer_description() {
    cat <<'EOF'
Description: camstream viewer: one window per streaming camera
 Accepts camstream agents over TCP and shows one window per camera, or runs
 headless and records every frame (camera-viewer.service, not enabled by
 default: systemctl enable --now camera-viewer).
 .
 camstream-cert makes the certificates for the optional mutual TLS between
 agents and viewer: a CA, whose key stays on this machine, the viewer's
 certificate and one per camera node.
EOF
}

copyright() {
    cat <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: camstream
Comment: The binaries statically link Rust crates from crates.io, each under
 MIT, Apache-2.0 or a compatible permissive license (see Cargo.lock).

Files: *
Copyright: 2026 camstream developers
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
EOF
}

# changelog PACKAGE VERSION: debian/changelog's one entry, dated
# SOURCE_DATE_EPOCH when set (reproducible builds), else now.
changelog() {
    cat <<EOF
$1 ($2) unstable; urgency=medium

  * Package built from the camstream source tree by packaging/build-deb.sh.

 -- camstream developers <camstream@example.org>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")
EOF
}

main "$@"
