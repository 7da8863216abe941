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
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
cache=$(amd64_cache)

initramfs=""
timeout_secs=120
mem_mb=512
files=()
script=""
parse_run_args "$0 [--initramfs F] [--timeout S] [--file H[:G]]... (-c CMD | SCRIPT)" --initramfs "$@"
"$here/setup.sh" --check >/dev/null || { echo "vm: not set up; run tests/vm/setup.sh (as root)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $initramfs ]]; then
    initramfs="$work/base.cpio"
    "$here/mkinitramfs.sh" "$initramfs"
fi

overlay="$work/overlay"
start_overlay "$overlay"
# shellcheck disable=SC2317 # called by each_file
add_file() { stage_file "$overlay" "$1" "$2"; }
each_file "" add_file
make_cpio "$overlay" "$work/overlay.cpio"
cat "$initramfs" "$work/overlay.cpio" >"$work/initrd"

# TCG: /dev/kvm here is PVM, which cannot boot a stock kernel. The ELF vmlinux
# boots through its PVH entry with qboot: no bzImage decompression, no SeaBIOS.
boot_guest vm "kernel panic?" "$work/console.log" qemu-system-x86_64 -machine pc \
    -bios /usr/share/qemu/qboot.rom \
    -kernel "$cache/vmlinux" -initrd "$work/initrd" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 reboot=t"
