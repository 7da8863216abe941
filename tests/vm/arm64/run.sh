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
parse_run_args "$0 [--timeout S] [--mem MB] [--file H[:G]]... (-c CMD | SCRIPT)" "" "$@"
"$here/setup.sh" --check >/dev/null || { echo "vm-arm64: not set up; run tests/vm/arm64/setup.sh (as root)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

overlay=$work/overlay
start_overlay "$overlay"
base_libs=$work/base
# add_file SRC DEST: an arm64 ELF must find its libraries in the base archive.
# shellcheck disable=SC2317 # called by each_file
add_file() {
    local src=$1 dest=$2 absent
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
}
each_file "" add_file
make_cpio "$overlay" "$work/overlay.cpio"
cat "$cache/base.cpio" "$work/overlay.cpio" >"$work/initrd"

# TCG: there is no KVM for arm64 on an x86 host. cortex-a72 is the Pi 4's
# core; QEMU's `max` CPU emulates more features and runs about half as fast.
boot_guest vm-arm64 "kernel panic?" "$work/console.log" qemu-system-aarch64 -machine virt -cpu cortex-a72 \
    -kernel "$cache/Image" -initrd "$work/initrd" \
    -append "console=ttyAMA0 quiet loglevel=3 panic=-1"
