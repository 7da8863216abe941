# shellcheck shell=bash
# Shared by the rigs' scripts (sourced, not run): staging files, writing cpio,
# the runners' command line and QEMU boot, the kernel setups' package check
# and module closure.

# amd64_cache: where the amd64 vivid rig's kernel (vmlinux, its modules) is
# cached by setup.sh: outside the source tree like the other rigs' caches,
# so every clone and worktree on the machine reuses it; $CAMSTREAM_CACHE
# moves them all.
amd64_cache() {
    echo "${CAMSTREAM_CACHE:-/var/cache/camstream}/vm-amd64"
}

# init_stage STAGE: the guest's merged /usr, like the host's, so library paths
# from ldd resolve either way. The per-run archive needs it too: a real /lib
# directory in it would replace the base archive's /lib symlink when the
# kernel unpacks it, hiding /lib/modules.
init_stage() {
    mkdir -p "$1"/usr/lib "$1"/usr/lib64
    ln -s usr/lib "$1/lib"
    ln -s usr/lib64 "$1/lib64"
}

# stage_file STAGE SRC GUEST_PATH
# Copy SRC into the staging tree at GUEST_PATH. A dynamically linked ELF also
# brings every library `ldd` resolves for it and the dynamic loader, at the same
# paths as on the host, so the guest can run it unchanged.
stage_file() {
    local stage=$1 src=$2 dest=$3
    [[ -e $src ]] || { echo "vm: $src does not exist" >&2; return 1; }
    mkdir -p "$stage$(dirname "$dest")"
    cp -L "$src" "$stage$dest"
    if file -L "$src" | grep -q 'dynamically linked'; then
        local lib
        # "libx.so => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"
        for lib in $(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
            if [[ ! -e $stage$lib ]]; then
                mkdir -p "$stage$(dirname "$lib")"
                cp -L "$lib" "$stage$lib"
            fi
        done
    fi
}

# make_cpio STAGE OUT: an uncompressed newc archive (the guest unpacks it faster
# than it could decompress one under TCG).
make_cpio() {
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$2"
}

# --- the runners (run.sh, arm64/run.sh, systemd/run.sh) ----------------------

# parse_run_args USAGE EXTRA ARG...: a runner's command line. Every runner
# takes --timeout SECS, --mem MB, --file HOST[:GUEST] (repeatable) and the
# command, as -c CMD or a SCRIPT file; EXTRA lists the options only it takes
# (--initramfs FILE, --arch ARCH), each setting the variable of its name. Sets
# timeout_secs, mem_mb, files and script, whose defaults the runner sets
# first; exits 2 with "usage: USAGE" when no command is given.
parse_run_args() {
    local usage=$1 extra=" $2 "
    shift 2
    while [[ $# -gt 0 ]]; do
        case $1 in
            --timeout) timeout_secs=$2; shift 2 ;;
            --mem) mem_mb=$2; shift 2 ;;
            --file) files+=("$2"); shift 2 ;;
            -c) script=$2; shift 2 ;;
            -*)
                [[ $extra == *" $1 "* ]] || { echo "run.sh: unknown option $1" >&2; exit 2; }
                printf -v "${1#--}" '%s' "$2"
                shift 2
                ;;
            *) script=$(cat "$1"); shift ;;
        esac
    done
    [[ -n $script ]] || { echo "usage: $usage" >&2; exit 2; }
}

# start_overlay OVERLAY: the per-run archive's tree, which the runner appends
# to the base archive (the kernel unpacks concatenated cpio archives in
# order, later files winning), with the command as /vm/cmd.sh.
start_overlay() {
    init_stage "$1"
    mkdir -p "$1/vm"
    printf '%s\n' "$script" >"$1/vm/cmd.sh"
}

# each_file DEFAULT_DIR FUNCTION: FUNCTION SRC DEST for each --file
# HOST[:GUEST] (in files); a HOST alone goes to DEFAULT_DIR/<its name>.
# (shellcheck sees no call of a FUNCTION: its SC2317 is disabled there.)
each_file() {
    local default_dir=$1 add=$2 spec src dest
    for spec in "${files[@]}"; do
        src=${spec%%:*}
        dest=${spec#*:}
        [[ $spec == *:* ]] || dest=$default_dir/$(basename "$src")
        "$add" "$src" "$dest"
    done
}

# boot_guest NAME NO_STATUS_WHY LOG QEMU_ARG...: boots QEMU with QEMU_ARGs (the
# machine, kernel, initrd and command line) and what every guest has: TCG
# (no usable KVM here), one vCPU, mem_mb of memory, the serial console on
# stdout (and in LOG) and a virtio NIC on QEMU's user network. Kills it after
# timeout_secs. Then exits with the guest command's status, from the
# console's last "VM_EXIT=<n>" line; 124 if it timed out, 125 if it reported
# no status (NO_STATUS_WHY says what that may mean). NAME prefixes the
# messages.
boot_guest() {
    local name=$1 no_status_why=$2 log=$3 qemu_rc rc
    shift 3
    set +e
    timeout --kill-after=5 "$timeout_secs" "$@" \
        -nodefaults -no-user-config -no-reboot -accel tcg -smp 1 -m "$mem_mb" \
        -display none -monitor none -serial stdio \
        -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
        </dev/null | tee "$log"
    qemu_rc=${PIPESTATUS[0]}
    set -e
    if [[ $qemu_rc == 124 || $qemu_rc == 137 ]]; then
        echo "$name: guest did not finish within ${timeout_secs}s; killed" >&2
        exit 124
    fi
    rc=$(tr -d '\r' <"$log" | sed -n 's/^.*VM_EXIT=\([0-9]\{1,3\}\)$/\1/p' | tail -n 1)
    if [[ -z $rc ]]; then
        echo "$name: guest ended without reporting VM_EXIT (qemu exit $qemu_rc; $no_status_why)" >&2
        exit 125
    fi
    exit "$rc"
}

# --- the kernel setups (setup.sh, arm64/setup.sh) -----------------------------

# setup_or_check CHECK_ONLY PKGS NOT_READY HOW READY_CMD...: how a kernel
# setup starts. PKGS are the missing packages (space-separated; empty: none).
# With CHECK_ONLY 1 (`setup.sh --check`) it reports them, and NOT_READY unless
# READY_CMD succeeds, and exits: 0 when nothing is missing, else 1 after the
# line "run HOW". Otherwise it installs PKGS (as root; anyone else is told
# the command and the script fails) and returns.
setup_or_check() {
    local check_only=$1 pkgs not_ready=$3 how=$4 bad=0
    read -ra pkgs <<<"$2"
    shift 4
    if ((check_only)); then
        if ((${#pkgs[@]})); then
            echo "missing packages: ${pkgs[*]}" >&2
            bad=1
        fi
        if ! "$@"; then
            echo "$not_ready" >&2
            bad=1
        fi
        ((bad)) && echo "run $how" >&2
        exit $bad
    fi
    install_packages "${pkgs[@]}"
}

# install_packages PKG...: apt-get install of the PKGs (none: nothing to do),
# as root; anyone else is told the command and the script fails.
install_packages() {
    (($#)) || return 0
    local pkgs
    mapfile -t pkgs < <(printf '%s\n' "$@" | sort -u)
    if [[ $(id -u) != 0 ]]; then
        echo "missing packages: ${pkgs[*]}; run: sudo apt-get install --no-install-recommends ${pkgs[*]}" >&2
        exit 1
    fi
    echo "installing: ${pkgs[*]}"
    # Only refresh the lists when they are absent (a fresh container), to stay fast.
    if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then apt-get update -q; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
}

# module_closure ROOT VERSION OUT MODULE...: the MODULEs of the kernel
# package unpacked in ROOT (ROOT/lib/modules/VERSION) and every module they
# depend on, copied to OUT/VERSION with modules.order and modules.builtin*,
# and a modules.dep of their own. Debian's package ships no modules.dep, so
# ROOT is depmod'ed first to resolve the closure; the full tree is ~400 MB,
# the guests need a few MB. Sets modules_kept to how many it copied.
module_closure() {
    local root=$1 version=$2 out=$3 m deps path rel dep_base
    shift 3
    depmod -b "$root" "$version"
    modules_kept=0
    for m in "$@"; do
        deps=$(modprobe -d "$root" -S "$version" --show-depends "$m") || { echo "vm: module $m not found in the kernel at $root" >&2; return 1; }
        while read -r path; do
            rel=${path#*/modules/"$version"/}
            [[ -e $out/$version/$rel ]] && continue
            mkdir -p "$out/$version/$(dirname "$rel")"
            cp "$path" "$out/$version/$rel"
            modules_kept=$((modules_kept + 1))
        done < <(awk '$1 == "insmod" {print $2}' <<<"$deps")
    done
    local moddir=$root/lib/modules/$version
    cp "$moddir/modules.order" "$moddir/modules.builtin" "$moddir/modules.builtin.modinfo" "$out/$version/" 2>/dev/null || true
    # depmod wants BASE/lib/modules/VERSION: OUT may be any directory.
    dep_base=$(mktemp -d)
    mkdir -p "$dep_base/lib"
    ln -s "$(cd "$out" && pwd)" "$dep_base/lib/modules"
    depmod -b "$dep_base" "$version"
    rm -rf "$dep_base"
}
