#!/bin/bash
# Build the base initramfs of the vivid test guest.
#
#   tests/vm/mkinitramfs.sh OUT [HOST_FILE[:GUEST_PATH]]...
#
# OUT holds busybox, the module closure of virtio_pci, virtio_net and vivid
# (from tests/vm/setup.sh's cache), /init, the host's v4l2-ctl (to press vivid's
# controls), udevadm, v4l_id and 60-persistent-v4l.rules (to test our udev rule
# against udev's own), and each HOST_FILE at GUEST_PATH (default:
# /<basename>). Every ELF comes with its ldd libraries and the dynamic loader.
# Build it once per test run; run.sh appends the per-run command to it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
cache=$(amd64_cache)

[[ $# -ge 1 ]] || { echo "usage: $0 OUT [HOST_FILE[:GUEST_PATH]]..." >&2; exit 2; }
out=$1
shift
"$here/setup.sh" --check >/dev/null || { echo "vm: not set up; run tests/vm/setup.sh (as root)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
init_stage "$stage"
mkdir -p "$stage"/{bin,usr/bin,usr/sbin,sbin,vm,root}

busybox=$(command -v busybox)
file -L "$busybox" | grep -q 'statically linked' || { echo "vm: $busybox is not static (install busybox-static)" >&2; exit 1; }
cp -L "$busybox" "$stage/bin/busybox"
install -m 0755 "$here/init" "$stage/init"
cp -a "$cache/modules/lib/modules" "$stage/usr/lib/"

standard=(
    "$(command -v v4l2-ctl):/usr/bin/v4l2-ctl"
    "$(command -v udevadm):/usr/bin/udevadm"
    /usr/lib/udev/v4l_id:/usr/lib/udev/v4l_id
    /usr/lib/udev/rules.d/60-persistent-v4l.rules:/usr/lib/udev/rules.d/60-persistent-v4l.rules
)
for spec in "${standard[@]}" "$@"; do
    src=${spec%%:*}
    dest=${spec#*:}
    [[ $spec == *:* ]] || dest=/$(basename "$src")
    stage_file "$stage" "$src" "$dest"
done

tmp="$out.tmp.$$"
make_cpio "$stage" "$tmp"
mv "$tmp" "$out"
