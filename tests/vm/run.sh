#!/bin/bash
# Boot the vivid test guest, run one command in it, and exit with its status.
#
#   tests/vm/run.sh [--initramfs FILE] [--timeout SECS] [--mem MB]
#                   [--file HOST_FILE[:GUEST_PATH]]... (-c 'COMMAND' | SCRIPT)
#
# The command runs as /vm/cmd.sh under busybox sh, as root, after /init has
# mounted /proc, /sys, /dev, brought up eth0 (10.0.2.15/24, the host's 127.0.0.1
# is 10.0.2.2) and exported VIVID_WEBCAM (the vivid module parameters of one
# webcam-like node): the command loads vivid itself, e.g.
#   modprobe vivid $VIVID_WEBCAM
# Files given with --file are added for this run only (ldd libraries included).
#
# Output: the serial console on stdout. Exit status: the guest command's; 124
# if the guest did not finish within --timeout (it is killed); 125 if it ended
# without reporting a status (kernel panic, crash).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CAMSTREAM_VM_CACHE:-$here/cache}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

initramfs=""
timeout_secs=120
mem_mb=512
files=()
script=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --initramfs) initramfs=$2; shift 2 ;;
        --timeout) timeout_secs=$2; shift 2 ;;
        --mem) mem_mb=$2; shift 2 ;;
        --file) files+=("$2"); shift 2 ;;
        -c) script=$2; shift 2 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) script=$(cat "$1"); shift ;;
    esac
done
[[ -n $script ]] || { echo "usage: $0 [--initramfs F] [--timeout S] [--file H[:G]]... (-c CMD | SCRIPT)" >&2; exit 2; }
"$here/setup.sh" --check >/dev/null || { echo "vm: not set up; run tests/vm/setup.sh (as root)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $initramfs ]]; then
    initramfs="$work/base.cpio"
    "$here/mkinitramfs.sh" "$initramfs"
fi

# The per-run archive, appended to the base one: the kernel unpacks
# concatenated cpio archives in order, later files winning.
overlay="$work/overlay"
init_stage "$overlay"
mkdir -p "$overlay/vm"
printf '%s\n' "$script" >"$overlay/vm/cmd.sh"
for spec in "${files[@]}"; do
    src=${spec%%:*}
    dest=${spec#*:}
    [[ $spec == *:* ]] || dest=/$(basename "$src")
    stage_file "$overlay" "$src" "$dest"
done
make_cpio "$overlay" "$work/overlay.cpio"
cat "$initramfs" "$work/overlay.cpio" >"$work/initrd"

log="$work/console.log"
# TCG: /dev/kvm here is PVM, which cannot boot a stock kernel. The ELF vmlinux
# boots through its PVH entry with qboot: no bzImage decompression, no SeaBIOS.
set +e
timeout --kill-after=5 "$timeout_secs" qemu-system-x86_64 \
    -nodefaults -no-user-config -no-reboot \
    -machine pc -accel tcg -smp 1 -m "$mem_mb" \
    -bios /usr/share/qemu/qboot.rom \
    -kernel "$cache/vmlinux" -initrd "$work/initrd" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 reboot=t" \
    -display none -monitor none -serial stdio \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    </dev/null | tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e

if [[ $qemu_rc == 124 || $qemu_rc == 137 ]]; then
    echo "vm: guest did not finish within ${timeout_secs}s; killed" >&2
    exit 124
fi
rc=$(tr -d '\r' <"$log" | sed -n 's/^.*VM_EXIT=\([0-9]\{1,3\}\)$/\1/p' | tail -n 1)
if [[ -z $rc ]]; then
    echo "vm: guest ended without reporting VM_EXIT (qemu exit $qemu_rc; kernel panic?)" >&2
    exit 125
fi
exit "$rc"
