#!/bin/bash
# Boot the arm64 vivid guest, run one command in it, and exit with its status.
#
#   tests/vm/arm64/run.sh [--timeout SECS] [--mem MB]
#                         [--file HOST_FILE[:GUEST_PATH]]... (-c 'COMMAND' | SCRIPT)
#
# The guest is an emulated Cortex-A72 (qemu-system-aarch64 -M virt, TCG) with
# Debian trixie's arm64 kernel and the busybox initramfs of
# tests/vm/arm64/setup.sh. Its /init is the x86 guest's (tests/vm/init): the
# command runs as /vm/cmd.sh under busybox sh, as root, with eth0 at
# 10.0.2.15/24 (the host's 127.0.0.1 is 10.0.2.2) and VIVID_WEBCAM exported.
# Files given with --file are added for this run; an arm64 ELF among them
# must find its libraries in the initramfs (glibc, libgcc, libstdc++), or
# this fails before booting, naming what is missing.
#
# Output: the serial console on stdout. Exit status: the guest command's; 124
# if the guest did not finish within --timeout (it is killed); 125 if it ended
# without reporting a status (kernel panic, crash).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm=$here/..
cache=${CAMSTREAM_CACHE:-/var/cache/camstream}/vm-arm64
# shellcheck source=tests/vm/lib.sh
. "$vm/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

timeout_secs=120
mem_mb=512
files=()
script=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --timeout) timeout_secs=$2; shift 2 ;;
        --mem) mem_mb=$2; shift 2 ;;
        --file) files+=("$2"); shift 2 ;;
        -c) script=$2; shift 2 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) script=$(cat "$1"); shift ;;
    esac
done
[[ -n $script ]] || { echo "usage: $0 [--timeout S] [--mem MB] [--file H[:G]]... (-c CMD | SCRIPT)" >&2; exit 2; }
"$here/setup.sh" --check >/dev/null || { echo "vm-arm64: not set up; run tests/vm/arm64/setup.sh (as root)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The per-run archive, appended to the base one (later files win).
overlay=$work/overlay
init_stage "$overlay"
mkdir -p "$overlay/vm"
printf '%s\n' "$script" >"$overlay/vm/cmd.sh"
base_libs=$work/base
for spec in "${files[@]}"; do
    src=${spec%%:*}
    dest=${spec#*:}
    [[ $spec == *:* ]] || dest=/$(basename "$src")
    [[ -e $src ]] || { echo "vm-arm64: $src does not exist" >&2; exit 1; }
    if file -L "$src" | grep -q 'ARM aarch64.*dynamically linked'; then
        # The libraries are in the base archive: list them once, from it.
        if [[ ! -d $base_libs ]]; then
            mkdir -p "$base_libs"
            (cd "$base_libs" && cpio -id --quiet 'usr/lib/aarch64-linux-gnu/*' 'usr/lib/ld-linux-aarch64.so.1' <"$cache/base.cpio")
        fi
        absent=$(arm64_missing_libs "$base_libs" "$src")
        [[ -z $absent ]] || { echo "vm-arm64: $src needs $absent, which the guest does not have (add its package to tests/vm/arm64/setup.sh)" >&2; exit 1; }
    fi
    mkdir -p "$overlay$(dirname "$dest")"
    cp -L "$src" "$overlay$dest"
done
make_cpio "$overlay" "$work/overlay.cpio"
cat "$cache/base.cpio" "$work/overlay.cpio" >"$work/initrd"

log=$work/console.log
# TCG: there is no KVM for arm64 on an x86 host. cortex-a72 is the Pi 4's
# core; QEMU's `max` CPU emulates more features and runs about half as fast.
set +e
timeout --kill-after=5 "$timeout_secs" qemu-system-aarch64 \
    -nodefaults -no-user-config -no-reboot \
    -machine virt -accel tcg -cpu cortex-a72 -smp 1 -m "$mem_mb" \
    -kernel "$cache/Image" -initrd "$work/initrd" \
    -append "console=ttyAMA0 quiet loglevel=3 panic=-1" \
    -display none -monitor none -serial stdio \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    </dev/null | tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e

if [[ $qemu_rc == 124 || $qemu_rc == 137 ]]; then
    echo "vm-arm64: guest did not finish within ${timeout_secs}s; killed" >&2
    exit 124
fi
rc=$(tr -d '\r' <"$log" | sed -n 's/^.*VM_EXIT=\([0-9]\{1,3\}\)$/\1/p' | tail -n 1)
if [[ -z $rc ]]; then
    echo "vm-arm64: guest ended without reporting VM_EXIT (qemu exit $qemu_rc; kernel panic?)" >&2
    exit 125
fi
exit "$rc"
