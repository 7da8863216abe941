#!/bin/bash
# One-time (and idempotent) setup for the hot-plug guest: a small Debian root
# file system that boots systemd as PID 1 under QEMU, on the vivid rigs'
# kernels: Debian bookworm on amd64 (tests/vm/setup.sh's kernel), Debian
# trixie on arm64 (tests/vm/arm64/setup.sh's kernel; trixie because the
# aarch64 agent is built against trixie's glibc).
#
#   tests/vm/systemd/setup.sh [--arch ARCH]            make the root file system
#                                                      (as root) and cache it as one
#                                                      cpio archive
#   tests/vm/systemd/setup.sh [--arch ARCH] --check    only report what is missing;
#                                                      exit 1 if anything is
#   tests/vm/systemd/setup.sh [--arch ARCH] --archive  print the archive's path
#
# ARCH is amd64 (default) or arm64. The cache lives outside the source tree,
# in $CAMSTREAM_CACHE (default /var/cache/camstream), as
# vm-systemd/SUITE-ARCH.vN.cpio: a debootstrap --variant=minbase root with
# systemd, udev, kmod and v4l-utils, trimmed of documentation, with the units
# a test guest has no use for masked. With the archive present this does
# nothing and takes milliseconds; making it needs debootstrap and the Debian
# archive: about 2-3 minutes for amd64, and for arm64 several more, as
# debootstrap's second stage (which runs the packages' arm64 maintainer
# scripts) runs in the arm64 guest under emulation, so the host needs no
# binfmt_misc.
#
# Nothing in the guest fetches packages: the .deb under test comes in with
# each run (tests/vm/systemd/run.sh), so no CA certificates are copied in.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${CAMSTREAM_CACHE:-/var/cache/camstream}/vm-systemd
# Bump when what goes into the root changes: an older archive is then made
# again instead of being reused (and removed).
layout=2
# shellcheck source=tests/vm/lib.sh
. "$here/../lib.sh"
mirror=${CAMSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the guest needs beyond minbase: systemd as init, udev (the hot-plug
# chain under test), kmod (modprobe vivid), v4l-utils (v4l2-ctl presses
# vivid's disconnect control).
include=systemd,systemd-sysv,udev,kmod,v4l-utils

arch=amd64 check_only=0 print_archive=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift 2 ;;
    --check) check_only=1; shift ;;
    --archive) print_archive=1; shift ;;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case $arch in
amd64) suite=bookworm kernel_setup=$here/../setup.sh ;;
arm64) suite=trixie kernel_setup=$here/../arm64/setup.sh ;;
*) echo "setup.sh: --arch must be amd64 or arm64, not $arch" >&2; exit 2 ;;
esac
archive=$cache/$suite-$arch.v$layout.cpio
if ((print_archive)); then
    echo "$archive"
    exit 0
fi

# The vivid rig's kernel for this architecture is this guest's kernel.
vm_ok=1
"$kernel_setup" --check >/dev/null 2>&1 || vm_ok=0

if ((check_only)); then
    bad=0
    if ((!vm_ok)); then
        echo "missing: the $arch vivid guest's kernel and packages (run $kernel_setup as root)" >&2
        bad=1
    fi
    if [[ ! -s $archive ]]; then
        echo "missing root file system: $archive" >&2
        bad=1
    fi
    ((bad)) && echo "run tests/vm/systemd/setup.sh --arch $arch (as root) to set up the hot-plug guest" >&2
    exit $bad
fi

((vm_ok)) || "$kernel_setup"

if [[ -s $archive ]]; then
    echo "vm-systemd: root file system cached in $archive"
    exit 0
fi

[[ $(id -u) == 0 ]] || { echo "vm-systemd: making the guest's root file system needs root (debootstrap); run: sudo $0" >&2; exit 1; }
command -v debootstrap >/dev/null 2>&1 || install_packages debootstrap

# second_stage_in_guest ROOT WORK: debootstrap's second stage for a foreign
# ROOT, run where its programs are native: ROOT boots as the initramfs of the
# arm64 guest (tests/vm/arm64/'s kernel) with a script as its init, which runs
# the stage and sends the finished root back as a cpio archive over a
# virtio-serial port into a file; ROOT is then replaced by what came back.
second_stage_in_guest() {
    local root=$1 work=$2 kernel packed
    kernel=$("$here/../arm64/setup.sh" --image)
    # The first stage leaves /proc a symlink to the host's.
    rm -f "$root/proc" && mkdir -p "$root/proc"
    "$here/../arm64/setup.sh" --busybox "$root/busybox-static"
    cat >"$root/second-stage" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/debootstrap/debootstrap --second-stage >/tmp/second-stage.log 2>&1
rc=$?
# debootstrap unmounts /proc and /sys when it is done: mount them again.
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
tail -n 20 /tmp/second-stage.log
echo "SECOND_STAGE=$rc"
if [ $rc = 0 ]; then
    for p in /sys/class/virtio-ports/*; do [ "$(cat "$p/name")" = root ] && port=/dev/${p##*/}; done
    rm -f /second-stage /tmp/second-stage.log
    cd / && find . -xdev -mindepth 1 ! -path ./busybox-static | /busybox-static cpio -o -H newc >"$port"
    echo "PACKED=$?"
fi
/busybox-static sync
echo b >/proc/sysrq-trigger
EOF
    chmod 0755 "$root/second-stage"
    (cd "$root" && find . -mindepth 1 | cpio --quiet -o -H newc) >"$work/stage1.cpio"
    rm -rf "$root"
    echo "vm-systemd: debootstrap's second stage in the $arch guest (emulated: several minutes)"
    timeout --kill-after=5 1800 qemu-system-aarch64 \
        -nodefaults -no-user-config -no-reboot \
        -machine virt -accel tcg -cpu cortex-a72 -smp 1 -m 2048 \
        -kernel "$kernel" -initrd "$work/stage1.cpio" \
        -append "console=ttyAMA0 quiet loglevel=3 panic=-1 rdinit=/second-stage" \
        -display none -monitor none -serial stdio \
        -device virtio-serial-pci -chardev "file,id=root,path=$work/root.cpio" \
        -device virtserialport,chardev=root,name=root \
        </dev/null >"$work/second-stage.console" 2>&1 || true
    packed=$(tr -d '\r' <"$work/second-stage.console" | sed -n 's/^PACKED=\([0-9]*\)$/\1/p')
    if [[ $packed != 0 ]]; then
        tail -n 40 "$work/second-stage.console" >&2
        echo "vm-systemd: debootstrap's second stage in the $arch guest failed (console above)" >&2
        exit 1
    fi
    mkdir -p "$root"
    (cd "$root" && cpio -idm --quiet --no-absolute-filenames <"$work/root.cpio")
    rm -f "$work/stage1.cpio" "$work/root.cpio"
}

mkdir -p "$cache"
work=$(mktemp -d "$cache/.make.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
started=$SECONDS
echo "vm-systemd: debootstrap $suite $arch (minbase + $include) from $mirror"
foreign=()
[[ $arch == "$(dpkg --print-architecture)" ]] || foreign=(--foreign "--arch=$arch")
if ! debootstrap "${foreign[@]}" --variant=minbase --include="$include" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
    echo "vm-systemd: debootstrap failed (is $mirror reachable? see the log above)" >&2
    exit 1
fi
if ((${#foreign[@]})); then
    second_stage_in_guest "$root" "$work"
fi

# --- configure: network, console, and only the units a test guest needs -----
echo camstream-guest >"$root/etc/hostname"
# QEMU's user network: the guest is 10.0.2.15, the host's 127.0.0.1 is 10.0.2.2.
# The kernel does no IP autoconfiguration (virtio_net is a module), so
# systemd-networkd sets the static address once udev has loaded the driver.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/10-qemu.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
systemctl --root="$root" enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
# Only what the hot-plug chain needs: journald, udevd, networkd and the
# targets. Every other unit costs seconds of boot under TCG, so logins (no
# dbus for logind; the console belongs to the test), maintenance timers,
# pseudo file systems and first-boot jobs are masked, and so are the
# generators (no fstab, no gettys, no SysV scripts to translate).
systemctl --root="$root" mask \
    getty@.service serial-getty@.service console-getty.service getty-static.service getty.target \
    systemd-logind.service systemd-user-sessions.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer systemd-tmpfiles-clean.timer \
    dev-hugepages.mount dev-mqueue.mount proc-sys-fs-binfmt_misc.automount sys-fs-fuse-connections.mount \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount systemd-binfmt.service \
    systemd-firstboot.service systemd-journal-flush.service systemd-machine-id-commit.service \
    systemd-modules-load.service systemd-pcrphase-sysinit.service systemd-pcrphase.service \
    systemd-random-seed.service systemd-repart.service systemd-sysctl.service systemd-sysusers.service \
    systemd-update-utmp.service systemd-update-utmp-runlevel.service \
    systemd-ask-password-wall.path systemd-ask-password-console.path kmod-static-nodes.service \
    modprobe@.service systemd-network-generator.service systemd-pstore.service \
    systemd-initctl.socket systemd-journald-audit.socket systemd-remount-fs.service \
    systemd-hwdb-update.service systemd-journal-catalog-update.service systemd-update-done.service \
    ldconfig.service >/dev/null 2>&1
systemctl --root="$root" set-default multi-user.target >/dev/null 2>&1
mkdir -p "$root/etc/systemd/system-generators"
for generator in "$root"/usr/lib/systemd/system-generators/*; do
    ln -sf /dev/null "$root/etc/systemd/system-generators/${generator##*/}"
done
# The journal stays in memory (/run): the root is a tmpfs anyway.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/10-volatile.conf"
# Same machine id in every run: the launcher's camera id depends on it.
systemd-machine-id-setup --root="$root" >/dev/null 2>&1 || true

# --- trim: everything the guest never reads makes every boot slower ----------
# (gconv: iconv's charsets; hwdb.d: the source of udev's compiled hwdb.bin)
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,bash-completion} \
    "$root"/usr/lib/*-linux-gnu/gconv "$root"/usr/lib/udev/hwdb.d \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/debootstrap
# The guest mounts its own /dev, /proc, /sys, /run and /tmp.
for d in dev proc sys run tmp; do
    find "$root/$d" -mindepth 1 -delete 2>/dev/null || true
done

# --- one uncompressed cpio: the kernel unpacks it as the guest's root ---------
# (uncompressed: under TCG the guest copies faster than it would decompress)
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc) >"$work/root.cpio"
chmod 0644 "$work/root.cpio"
mv "$work/root.cpio" "$archive"
for old in "$cache/$suite-$arch".*cpio; do
    [[ $old == "$archive" ]] || rm -f "$old"
done
echo "vm-systemd: root file system ready: $archive ($(du -m "$archive" | cut -f1) MB, made in $((SECONDS - started)) s)"
