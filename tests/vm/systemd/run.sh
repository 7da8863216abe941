#!/bin/bash
# Boot the hot-plug guest (systemd as PID 1 on a small Debian root), run one
# command in it as a systemd service, and exit with the command's status.
#
#   tests/vm/systemd/run.sh [--timeout SECS] [--mem MB]
#                           [--file HOST_FILE[:GUEST_PATH]]... (-c 'COMMAND' | SCRIPT)
#
# The guest is Debian bookworm (tests/vm/systemd/setup.sh) on the vivid rig's
# kernel (tests/vm/setup.sh), its modules in /usr/lib/modules. systemd, udevd
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
cache=${CAMSTREAM_VM_CACHE:-$vm/cache}
archive=$("$here/setup.sh" --archive)
# shellcheck source=tests/vm/lib.sh
. "$vm/lib.sh"

timeout_secs=180
mem_mb=1024
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
"$here/setup.sh" --check >/dev/null || { echo "vm-systemd: not set up; run tests/vm/systemd/setup.sh (as root)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The per-run archive, appended to the cached root: the kernel unpacks
# concatenated cpio archives in order, later files winning.
overlay=$work/overlay
init_stage "$overlay"
cp -a "$cache/modules/lib/modules" "$overlay/usr/lib/"
mkdir -p "$overlay/vm" "$overlay/etc/systemd/system/multi-user.target.wants"
printf '%s\n' "$script" >"$overlay/vm/cmd.sh"
cat >"$overlay/vm/run" <<'EOF'
#!/bin/sh
# Runs the test command and reports its status where run.sh looks for it.
export VIVID_WEBCAM="n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 vid_cap_nr=0"
cd /
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
for spec in "${files[@]}"; do
    src=${spec%%:*}
    dest=${spec#*:}
    [[ $spec == *:* ]] || dest=/vm/$(basename "$src")
    [[ -e $src ]] || { echo "vm-systemd: $src does not exist" >&2; exit 1; }
    mkdir -p "$overlay$(dirname "$dest")"
    cp -L "$src" "$overlay$dest"
done
make_cpio "$overlay" "$work/overlay.cpio"
cat "$archive" "$work/overlay.cpio" >"$work/initrd"

log=$work/console.log
# As tests/vm/run.sh: TCG (/dev/kvm here is PVM, which cannot boot a stock
# kernel), the ELF vmlinux through its PVH entry with qboot. rdinit= makes
# systemd PID 1 straight from the initramfs, which stays the root file system.
set +e
timeout --kill-after=5 "$timeout_secs" qemu-system-x86_64 \
    -nodefaults -no-user-config -no-reboot \
    -machine pc -accel tcg -smp 1 -m "$mem_mb" \
    -bios /usr/share/qemu/qboot.rom \
    -kernel "$cache/vmlinux" -initrd "$work/initrd" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 reboot=t rdinit=/lib/systemd/systemd systemd.show_status=error" \
    -display none -monitor none -serial stdio \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    </dev/null | tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e

if [[ $qemu_rc == 124 || $qemu_rc == 137 ]]; then
    echo "vm-systemd: guest did not finish within ${timeout_secs}s; killed" >&2
    exit 124
fi
rc=$(tr -d '\r' <"$log" | sed -n 's/^.*VM_EXIT=\([0-9]\{1,3\}\)$/\1/p' | tail -n 1)
if [[ -z $rc ]]; then
    echo "vm-systemd: guest ended without reporting VM_EXIT (qemu exit $qemu_rc; kernel panic, or systemd never ran the command?)" >&2
    exit 125
fi
exit "$rc"
