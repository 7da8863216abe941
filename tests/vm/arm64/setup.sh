#!/bin/bash
# One-time (and idempotent) setup for the arm64 vivid guest: an ARM camera
# node, emulated by qemu-system-aarch64, with Debian trixie's arm64 kernel
# (which has vivid) and a busybox initramfs.
#
#   tests/vm/arm64/setup.sh           install missing apt packages (as root), fetch
#                                     trixie's arm64 kernel, busybox-static and the
#                                     libraries the agent and v4l2-ctl need, and
#                                     build the base initramfs
#   tests/vm/arm64/setup.sh --check   only report what is missing; exit 1 if anything is
#   tests/vm/arm64/setup.sh --image   print the kernel Image's path
#   tests/vm/arm64/setup.sh --busybox DEST   copy the guest's static busybox to DEST
#
# Everything is cached in $CAMSTREAM_CACHE/vm-arm64 (default
# /var/cache/camstream/vm-arm64): the kernel Image, the base initramfs and
# the versions they came from. With those present it does nothing and takes
# milliseconds. The packages are fetched (never installed) with the host's
# own apt, pointed at trixie/arm64 through a private state directory, so the
# host's apt sources and architectures stay as they are.
#
# Why the kernel package and not a custom kernel: trixie's linux-image-arm64
# boots under `qemu-system-aarch64 -M virt` as it is (its vmlinuz is an
# uncompressed arm64 Image; no firmware needed) and builds vivid as a module.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
vm=$here/..
cache=${CAMSTREAM_CACHE:-/var/cache/camstream}/vm-arm64
mirror=${CAMSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# shellcheck source=tests/vm/lib.sh
. "$vm/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
# The guest's modules: the NIC (to reach the host's viewer) and vivid, with
# their dependency closures.
guest_modules=(virtio_pci virtio_net vivid)
# Packages whose files go into the guest besides the kernel: busybox, and
# the shared libraries of the agent (glibc, libgcc) and of v4l2-ctl, which
# presses vivid's controls. A library that is missing is named by the build.
guest_packages=(busybox-static libc6 libgcc-s1 libstdc++6 v4l-utils libv4l-0t64 libv4lconvert0t64 libv4l2rds0t64 libjpeg62-turbo libudev1 libcap2)

# command -> Debian package that provides it (on the host)
declare -A pkg_of=(
    [qemu-system-aarch64]=qemu-system-arm
    [depmod]=kmod
    [cpio]=cpio
    [xz]=xz-utils
    [readelf]=binutils
    [file]=file
)

check_only=0
case ${1:-} in
--check) check_only=1 ;;
# For the hot-plug guest's setup (tests/vm/systemd/setup.sh --arch arm64),
# which boots this kernel with busybox to finish an arm64 debootstrap.
--image) echo "$cache/Image"; exit 0 ;;
--busybox)
    dest=${2:?--busybox needs a destination file}
    cpio -i --quiet --to-stdout bin/busybox <"$cache/base.cpio" >"$dest"
    chmod 0755 "$dest"
    exit 0
    ;;
esac

missing_pkgs=()
for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=("${pkg_of[$cmd]}")
done

ready() {
    [[ -s $cache/Image && -s $cache/base.cpio && -s $cache/KERNEL_VERSION ]]
}

setup_or_check "$check_only" "${missing_pkgs[*]}" "missing arm64 guest cache: $cache (Image, base.cpio)" \
    "tests/vm/arm64/setup.sh (as root) to set up the arm64 guest" ready

if ready; then
    echo "vm-arm64: kernel $(cat "$cache/KERNEL_VERSION") and initramfs cached in $cache"
    exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- a private apt for trixie/arm64: download only ---------------------------
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc/apt.conf.d" "$apt_dir/etc/preferences.d"
echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt_dir/etc/sources.list"
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o Dir::Etc::SourceParts=-
    -o "Dir::Etc::Parts=$apt_dir/etc/apt.conf.d" -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" -o Dir::State::status=/dev/null
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Debug::NoLocking=1
    -o APT::Sandbox::User=root -q
)
echo "vm-arm64: reading the trixie arm64 package index"
apt-get "${apt_opts[@]}" update >"$work/apt-update.log" 2>&1 || {
    cat "$work/apt-update.log" >&2
    echo "vm-arm64: apt-get update for trixie/arm64 failed (is $mirror reachable?)" >&2
    exit 1
}
# linux-image-arm64 is a metapackage; its dependency is the real image.
image_pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[[ -n $image_pkg ]] || { echo "vm-arm64: cannot resolve linux-image-arm64 to a kernel package in trixie" >&2; exit 1; }
image_pkg=${image_pkg%:arm64}
echo "vm-arm64: downloading $image_pkg ${guest_packages[*]}"
(cd "$work" && apt-get "${apt_opts[@]}" download "$image_pkg" "${guest_packages[@]}") >"$work/download.log" 2>&1 || {
    cat "$work/download.log" >&2
    echo "vm-arm64: downloading the guest's packages failed" >&2
    exit 1
}
root=$work/root
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$root"
done
versions=("$root"/usr/lib/modules/*)
version=$(basename "${versions[0]}")
[[ -d ${versions[0]} && -s $root/boot/vmlinuz-$version ]] || { echo "vm-arm64: $image_pkg has no /usr/lib/modules/<version> or vmlinuz" >&2; exit 1; }
# The arm64 vmlinuz is the uncompressed Image QEMU boots: "ARM\x64" at 0x38.
[[ $(od -An -c -j 56 -N 4 "$root/boot/vmlinuz-$version" | tr -d ' ') == 'ARMd' ]] || {
    echo "vm-arm64: $root/boot/vmlinuz-$version is not an uncompressed arm64 Image" >&2
    exit 1
}

# --- the module closure, with its own modules.dep ----------------------------
# trixie keeps modules under /usr/lib/modules; module_closure looks in
# lib/modules, which this symlink gives it.
ln -s usr/lib "$root/lib" 2>/dev/null || true
stage=$work/stage
init_stage "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,vm,root,etc}
module_closure "$root" "$version" "$stage/usr/lib/modules" "${guest_modules[@]}"

# --- busybox, v4l2-ctl and the libraries, at their trixie paths -------------
cp "$root/usr/bin/busybox" "$stage/bin/busybox"
file -L "$stage/bin/busybox" | grep -q 'ARM aarch64.*statically linked' || { echo "vm-arm64: busybox-static is not a static arm64 binary" >&2; exit 1; }
install -m 0755 "$vm/init" "$stage/init"
cp "$root/usr/bin/v4l2-ctl" "$stage/usr/bin/v4l2-ctl"
# Every library in the packages, so any arm64 binary linked against them (the
# agent comes per run) finds its NEEDED entries; plus the dynamic loader.
cp -a "$root/usr/lib/aarch64-linux-gnu" "$stage/usr/lib/"
cp -a "$root/usr/lib/ld-linux-aarch64.so.1" "$stage/usr/lib/" 2>/dev/null || true
rm -rf "$stage/usr/lib/aarch64-linux-gnu/gconv" "$stage/usr/lib/aarch64-linux-gnu/audit"
# Check now, not in the guest: v4l2-ctl's libraries must all be there.
absent=$(arm64_missing_libs "$stage" "$stage/usr/bin/v4l2-ctl")
[[ -z $absent ]] || { echo "vm-arm64: v4l2-ctl needs $absent, not among ${guest_packages[*]}" >&2; exit 1; }

make_cpio "$stage" "$work/base.cpio"
cp "$root/boot/vmlinuz-$version" "$work/Image"
mv "$work/base.cpio" "$cache/base.cpio"
mv "$work/Image" "$cache/Image"
echo "$image_pkg" >"$cache/KERNEL_PACKAGE"
echo "$version" >"$cache/KERNEL_VERSION"
echo "vm-arm64: kernel $version and initramfs ($modules_kept modules, $(du -m "$cache/base.cpio" | cut -f1) MB) ready in $cache"
