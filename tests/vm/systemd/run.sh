#!/bin/bash
# Boot the hot-plug guest (systemd as PID 1 on a small Debian root), run one
# command in it as a systemd service, and exit with the command's status.
#
#   tests/vm/systemd/run.sh [--arch amd64|arm64] [--timeout SECS] [--mem MB]
#                           [--file HOST_FILE[:GUEST_PATH]]... (-c 'COMMAND' | SCRIPT)
#
# The guest is Debian (tests/vm/systemd/setup.sh: bookworm on amd64, trixie on
# arm64) on the vivid rig's kernel for that architecture (tests/vm/setup.sh,
# an emulated Cortex-A72 from tests/vm/arm64/setup.sh), its modules in
# /usr/lib/modules. systemd, udevd
# and networkd run as on a real machine; eth0 gets 10.0.2.15/24 (the host's
# 127.0.0.1 is 10.0.2.2). The command runs as /vm/cmd.sh under /bin/sh, as
# root, from camstream-vm.service once the network is online, with
# VIVID_WEBCAM exported (the vivid module parameters of one webcam-like node,
# as in tests/vm/init). Files given with --file are copied in as they are (no
# libraries: the guest is a full Debian; install packages with dpkg -i).
#
# Output: the serial console on stdout. Exit status: the command's; 124 if
# the guest did not finish within --timeout (it is killed); 125 if it ended
# without reporting a status (kernel panic, systemd never reached the command).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm=$here/..
# shellcheck source=tests/vm/lib.sh
. "$vm/lib.sh"
cache=$(amd64_cache)

arch=amd64
timeout_secs=180
mem_mb=1024
files=()
script=""
parse_run_args "$0 [--arch A] [--timeout S] [--mem MB] [--file H[:G]]... (-c CMD | SCRIPT)" --arch "$@"
"$here/setup.sh" --arch "$arch" --check >/dev/null || { echo "vm-systemd: not set up; run tests/vm/systemd/setup.sh --arch $arch (as root)" >&2; exit 1; }
archive=$("$here/setup.sh" --arch "$arch" --archive)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The per-run archive, appended to the cached root: the kernel unpacks
# concatenated cpio archives in order, later files winning.
overlay=$work/overlay
start_overlay "$overlay"
case $arch in
amd64) cp -a "$cache/modules/lib/modules" "$overlay/usr/lib/" ;;
arm64)
    arm_initramfs=$(dirname "$("$vm/arm64/setup.sh" --image)")/base.cpio
    (cd "$overlay" && cpio -id --quiet 'usr/lib/modules/*' <"$arm_initramfs")
    ;;
esac
mkdir -p "$overlay/etc/systemd/system/multi-user.target.wants"
cat >"$overlay/vm/run" <<'EOF'
#!/bin/sh
# Runs the test command and reports its status where run.sh looks for it.
export VIVID_WEBCAM="n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 vid_cap_nr=0"
cd /
# A fresh line first: systemd may open the console with terminal escape codes.
echo
sh /vm/cmd.sh
rc=$?
echo
echo "VM_EXIT=$rc"
# QEMU runs with -no-reboot: an immediate reboot ends it.
systemctl reboot --force --force
EOF
chmod 0755 "$overlay/vm/run"
cat >"$overlay/etc/systemd/system/camstream-vm.service" <<'EOF'
[Unit]
Description=camstream test command (/vm/cmd.sh)
Wants=network-online.target
After=network-online.target systemd-udevd.service

[Service]
Type=oneshot
ExecStart=/vm/run
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/console
TTYReset=no
TTYVHangup=no
TimeoutStartSec=infinity
EOF
ln -s ../camstream-vm.service "$overlay/etc/systemd/system/multi-user.target.wants/camstream-vm.service"
# shellcheck disable=SC2317 # called by each_file
add_file() {
    [[ -e $1 ]] || { echo "vm-systemd: $1 does not exist" >&2; exit 1; }
    mkdir -p "$overlay$(dirname "$2")"
    cp -L "$1" "$overlay$2"
}
each_file /vm add_file
make_cpio "$overlay" "$work/overlay.cpio"
cat "$archive" "$work/overlay.cpio" >"$work/initrd"

# rdinit= makes systemd PID 1 straight from the initramfs, which stays the
# root file system.
append="quiet loglevel=3 panic=-1 rdinit=/lib/systemd/systemd systemd.show_status=error"
case $arch in
amd64)
    # As tests/vm/run.sh: TCG (/dev/kvm here is PVM, which cannot boot a
    # stock kernel), the ELF vmlinux through its PVH entry with qboot.
    qemu=(qemu-system-x86_64 -machine pc -bios /usr/share/qemu/qboot.rom -kernel "$cache/vmlinux")
    append="console=ttyS0 reboot=t $append"
    ;;
arm64)
    # As tests/vm/arm64/run.sh: a Cortex-A72 (a Pi 4's core) under TCG.
    qemu=(qemu-system-aarch64 -machine virt -cpu cortex-a72 -kernel "$("$vm/arm64/setup.sh" --image)")
    append="console=ttyAMA0 $append"
    ;;
*) echo "run.sh: --arch must be amd64 or arm64, not $arch" >&2; exit 2 ;;
esac
boot_guest vm-systemd "kernel panic, or systemd never ran the command?" "$work/console.log" \
    "${qemu[@]}" -initrd "$work/initrd" -append "$append"
