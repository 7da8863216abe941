#!/bin/sh
# Build the camstream Debian packages, camstream-agent and camstream-viewer,
# with plain `dpkg-deb --build` from a staged tree.
#
#   packaging/build-deb.sh [--target TRIPLE] [--bin-dir DIR] [--out DIR]
#
#   --target TRIPLE  cross-build for another architecture, e.g.
#                    aarch64-unknown-linux-gnu (Pi 3/4/5, 64-bit OS) or
#                    armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS).
#   --bin-dir DIR    package the agent and viewer binaries already in DIR
#                    instead of running `cargo build --release` (the tests
#                    use this with their debug build).
#   --out DIR        where the .deb files go (default: target/debian).
#
# Why dpkg-deb rather than cargo-deb: it ships with every Debian (dpkg), so
# building a package needs no extra tool to compile and install, and the
# tree below is exactly what lands on the disk: maintainer scripts, conffiles
# and paths are all in plain view and checked by lintian in the test suite.
#
# Prints the paths of the two packages, one per line, on stdout.
set -eu

die() {
    echo "build-deb.sh: $*" >&2
    exit 1
}

repo=$(cd "$(dirname "$0")/.." && pwd)
target=
bin_dir=
out=$repo/target/debian
while [ $# -gt 0 ]; do
    case $1 in
    --target) target=${2:?--target needs a triple}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

for tool in dpkg-deb fakeroot gzip md5sum; do
    command -v "$tool" >/dev/null || die "$tool not found: sudo apt-get install dpkg-dev fakeroot"
done

# Debian architecture of the binaries.
case $target in
'') arch=$(dpkg --print-architecture) ;;
aarch64-unknown-linux-gnu) arch=arm64 ;;
armv7-unknown-linux-gnueabihf) arch=armhf ;;
arm-unknown-linux-gnueabihf) arch=armhf ;;
x86_64-unknown-linux-gnu) arch=amd64 ;;
*) die "no Debian architecture known for target '$target'" ;;
esac

if [ -z "$bin_dir" ]; then
    if [ -n "$target" ]; then
        cargo build --release --bin agent --bin viewer --target "$target" --manifest-path "$repo/Cargo.toml" >&2
        bin_dir=$repo/target/$target/release
    else
        cargo build --release --bin agent --bin viewer --manifest-path "$repo/Cargo.toml" >&2
        bin_dir=$repo/target/release
    fi
fi
for bin in agent viewer; do
    [ -x "$bin_dir/$bin" ] || die "no $bin binary in $bin_dir (build it, or pass --bin-dir)"
done

# Debian version from the workspace version: 0.1.0 -> 0.1.0-1.
upstream=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
[ -n "$upstream" ] || die "no version in [workspace.package] of $repo/Cargo.toml"
version=$upstream-1

case $target in
'') strip="strip" ;;
armv7-* | arm-*) strip=arm-linux-gnueabihf-strip ;;
*) strip=${target%%-unknown-*}-linux-gnu-strip ;;
esac
command -v "$strip" >/dev/null || strip=
[ -n "$strip" ] || echo "build-deb.sh: no strip for $arch found, packaging unstripped binaries" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Depends: from the binaries' shared libraries when dpkg-shlibdeps can read
# them (native builds), else the libraries a Rust binary always links.
shlib_depends() {
    mkdir -p "$work/shlibs/debian"
    printf 'Source: camstream\n\nPackage: camstream\nArchitecture: any\n' >"$work/shlibs/debian/control"
    deps=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$1" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || deps=
    [ -n "$deps" ] || deps="libc6 (>= 2.34), libgcc-s1 (>= 4.2)"
    echo "$deps"
}

copyright() {
    cat <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: camstream
Comment: The binaries statically link Rust crates from crates.io, each under
 MIT, Apache-2.0 or a compatible permissive license (see Cargo.lock).

Files: *
Copyright: 2026 camstream developers
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
EOF
}

changelog() { # package
    cat <<EOF
$1 ($version) unstable; urgency=medium

  * Package built from the camstream source tree by packaging/build-deb.sh.

 -- camstream developers <camstream@example.org>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")
EOF
}

# Stage the parts every package has: binary, man page, doc, DEBIAN/.
stage_common() { # package binary
    pkg=$1
    bin=$2
    root=$work/$pkg
    install -d -m 755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" "$root/usr/share/doc/$pkg" "$root/usr/share/lintian/overrides"
    install -m 644 "$repo/packaging/$bin.lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"
    install -m 755 "$bin_dir/$bin" "$root/usr/bin/$bin"
    [ -z "$strip" ] || "$strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/bin/$bin"
    gzip -9n <"$repo/packaging/$bin.1" >"$root/usr/share/man/man1/$bin.1.gz"
    copyright >"$root/usr/share/doc/$pkg/copyright"
    changelog "$pkg" | gzip -9n >"$root/usr/share/doc/$pkg/changelog.Debian.gz"
    chmod 644 "$root/usr/share/man/man1/$bin.1.gz" "$root/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/changelog.Debian.gz"
}

# Control file, md5sums, build. $deps, $recommends and $description are set
# by the caller.
finish() { # package
    pkg=$1
    root=$work/$pkg
    size=$(du -k -s --exclude=DEBIAN "$root" | cut -f 1)
    {
        echo "Package: $pkg"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: camstream developers <camstream@example.org>"
        echo "Installed-Size: $size"
        echo "Depends: $deps"
        [ -z "$recommends" ] || echo "Recommends: $recommends"
        echo "Section: video"
        echo "Priority: optional"
        printf '%s\n' "$description"
    } >"$root/DEBIAN/control"
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
    chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    deb=$out/${pkg}_${version}_$arch.deb
    fakeroot dpkg-deb --build -Zxz "$root" "$deb" >&2
    echo "$deb"
}

# ---- camstream-agent
pkg=camstream-agent
stage_common "$pkg" agent
root=$work/$pkg
install -d -m 755 "$root/usr/libexec/camstream" "$root/lib/systemd/system" "$root/lib/udev/rules.d" "$root/etc/camstream"
install -m 755 "$repo/systemd/camera-agent-launch" "$root/usr/libexec/camstream/camera-agent-launch"
install -m 644 "$repo/systemd/camera-agent@.service" "$root/lib/systemd/system/camera-agent@.service"
install -m 644 "$repo/udev/70-camera-agent.rules" "$root/lib/udev/rules.d/70-camera-agent.rules"
install -m 644 "$repo/config/agent.env" "$root/etc/camstream/agent.env"
echo /etc/camstream/agent.env >"$root/DEBIAN/conffiles"
install -m 755 "$repo/packaging/agent.postinst" "$root/DEBIAN/postinst"
install -m 755 "$repo/packaging/agent.prerm" "$root/DEBIAN/prerm"
install -m 755 "$repo/packaging/agent.postrm" "$root/DEBIAN/postrm"
chmod 644 "$root/DEBIAN/conffiles"
deps="$(shlib_depends "$root/usr/bin/agent"), udev"
recommends="v4l-utils"
description='Description: camstream camera agent: streams USB cameras to a viewer
 Captures frames from V4L2 cameras, encodes each as a gzip-compressed BMP and
 sends it over TCP to a camstream viewer.
 .
 Plugging in a camera starts camera-agent@<node>.service for it (udev rule),
 unplugging it stops that agent. Set the viewer address in
 /etc/camstream/agent.env.'
finish "$pkg"

# ---- camstream-viewer
pkg=camstream-viewer
stage_common "$pkg" viewer
root=$work/$pkg
install -d -m 755 "$root/lib/systemd/system" "$root/etc/camstream"
install -m 644 "$repo/systemd/camera-viewer.service" "$root/lib/systemd/system/camera-viewer.service"
install -m 644 "$repo/config/viewer.env" "$root/etc/camstream/viewer.env"
echo /etc/camstream/viewer.env >"$root/DEBIAN/conffiles"
install -m 755 "$repo/packaging/viewer.postinst" "$root/DEBIAN/postinst"
install -m 755 "$repo/packaging/viewer.prerm" "$root/DEBIAN/prerm"
install -m 755 "$repo/packaging/viewer.postrm" "$root/DEBIAN/postrm"
chmod 644 "$root/DEBIAN/conffiles"
deps=$(shlib_depends "$root/usr/bin/viewer")
# Windows need X11, loaded at run time (dlopen); headless needs neither.
recommends="libx11-6, libxcursor1"
description='Description: camstream viewer: one window per streaming camera
 Accepts camstream agents over TCP and shows one window per camera, or runs
 headless and records every frame (camera-viewer.service, not enabled by
 default: systemctl enable --now camera-viewer).'
finish "$pkg"
