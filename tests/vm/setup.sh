#!/bin/bash
# One-time (and idempotent) setup for the vivid VM tests.
#
#   tests/vm/setup.sh            install missing apt packages (as root), fetch the
#                                Debian kernel (never installed) into
#                                $CAMSTREAM_CACHE/vm-amd64 (default
#                                /var/cache/camstream/vm-amd64)
#   tests/vm/setup.sh --check    only report what is missing; exit 1 if anything is
#
# Fast when everything is cached: no apt call, no download.
#
# Why a Debian kernel: the kernel of these machines has no media subsystem, so
# there is no V4L2 at all. A stock Debian kernel has vivid, a virtual V4L2 driver
# that behaves like a webcam, and we boot it under QEMU (TCG: /dev/kvm here is PVM
# and cannot boot a stock kernel).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
cache=$(amd64_cache)
# Modules the guest loads: the NIC (to reach the host's viewer) and vivid.
# Their dependency closure is resolved from modules.dep after depmod.
guest_modules=(virtio_pci virtio_net vivid)

# command -> Debian package that provides it
declare -A pkg_of=(
    [qemu-system-x86_64]=qemu-system-x86
    [busybox]=busybox-static
    [depmod]=kmod
    [cpio]=cpio
    [xz]=xz-utils
    [udevadm]=udev
    [v4l2-ctl]=v4l-utils
)

check_only=0
[[ ${1:-} == --check ]] && check_only=1

missing_pkgs=()
for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=("${pkg_of[$cmd]}")
done
# busybox must be the static build: it runs in the guest with no libraries.
if command -v busybox >/dev/null 2>&1 && ! file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked'; then
    if ! dpkg -s busybox-static >/dev/null 2>&1; then missing_pkgs+=(busybox-static); fi
fi
# qboot: a tiny firmware that skips SeaBIOS's slow boot (qemu-system-data ships it).
[[ -e /usr/share/qemu/qboot.rom ]] || missing_pkgs+=(qemu-system-data)
[[ -e /usr/lib/udev/rules.d/60-persistent-v4l.rules && -e /usr/lib/udev/v4l_id ]] || missing_pkgs+=(udev)
# `file` is used above and by the initramfs builder to tell ELF files apart.
command -v file >/dev/null 2>&1 || missing_pkgs+=(file)

kernel_ready() {
    [[ -s $cache/vmlinux && -s $cache/KERNEL_VERSION && -d $cache/modules ]]
}

setup_or_check "$check_only" "${missing_pkgs[*]}" "missing kernel cache: $cache (vmlinux, modules)" \
    "tests/vm/setup.sh (as root) to set up the VM tests" kernel_ready

if kernel_ready; then
    echo "vm: kernel $(cat "$cache/KERNEL_VERSION") cached in $cache"
    exit 0
fi

# --- fetch the kernel package (download only; it is never installed) ---------
mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
# linux-image-amd64 is a metapackage; its dependency is the real image.
image_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z $image_pkg ]]; then
    apt-get update -q
    image_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n $image_pkg ]] || { echo "cannot resolve linux-image-amd64 to a kernel package (apt-get update?)" >&2; exit 1; }
echo "vm: downloading $image_pkg"
# As root, apt would warn that its _apt sandbox user cannot write the private
# temp dir; it downloads unsandboxed either way, so say so up front.
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$image_pkg")
debs=("$work"/*.deb)
deb=${debs[0]}
[[ -e $deb ]] || { echo "apt-get download $image_pkg produced no .deb" >&2; exit 1; }
dpkg-deb -x "$deb" "$work/root"
versions=("$work"/root/lib/modules/*)
version=$(basename "${versions[0]}")
[[ -d ${versions[0]} ]] || { echo "$deb has no /lib/modules/<version>" >&2; exit 1; }

# --- vmlinux: the uncompressed kernel, booted through its PVH entry ----------
# Booting the ELF directly skips the bzImage decompressor (slow under TCG).
# The bzImage setup header says where the compressed payload is: setup_sects at
# 0x1f1, payload_offset at 0x248 and payload_length at 0x24c, the offset counted
# from the start of the protected-mode code at (setup_sects + 1) * 512.
bz="$work/root/boot/vmlinuz-$version"
read_u() { od -An -tu"$2" -j "$1" -N "$2" "$bz" | tr -d ' '; }
setup_sects=$(read_u $((0x1f1)) 1)
payload_offset=$(read_u $((0x248)) 4)
payload_length=$(read_u $((0x24c)) 4)
start=$(((setup_sects + 1) * 512 + payload_offset))
magic=$(od -An -tx1 -j "$start" -N 6 "$bz" | tr -d ' \n')
case $magic in
    fd377a585a00*) decomp=(xz -dc --single-stream) ;;
    28b52ffd*) decomp=(zstd -dcq) ;;
    1f8b*) decomp=(gzip -dc) ;;
    *) echo "unknown kernel payload compression (magic $magic) in $bz" >&2; exit 1 ;;
esac
# The payload ends with a 4-byte uncompressed size that the decompressors don't
# expect: --single-stream makes xz stop at the stream end; gzip/zstd only warn.
dd if="$bz" iflag=skip_bytes,count_bytes skip="$start" count="$payload_length" bs=1M status=none | { "${decomp[@]}" 2>/dev/null || true; } >"$work/vmlinux"
if [[ $(od -An -tx1 -N 4 "$work/vmlinux" | tr -d ' ') != 7f454c46 ]]; then
    echo "extracting vmlinux from $bz failed (no ELF header)" >&2
    exit 1
fi

# --- the module closure, with its own modules.dep ----------------------------
small="$work/modules"
module_closure "$work/root" "$version" "$small/lib/modules" "${guest_modules[@]}"

rm -rf "$cache/modules" "$cache/vmlinux"
mv "$small" "$cache/modules"
mv "$work/vmlinux" "$cache/vmlinux"
echo "$image_pkg" >"$cache/KERNEL_PACKAGE"
echo "$version" >"$cache/KERNEL_VERSION"
echo "vm: kernel $version ready in $cache ($modules_kept modules)"
