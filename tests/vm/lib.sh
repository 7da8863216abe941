# shellcheck shell=bash
# Shared by mkinitramfs.sh and run.sh (sourced, not run).

# init_stage STAGE: the guest's merged /usr, like the host's, so library paths
# from ldd resolve either way. The per-run archive needs it too: a real /lib
# directory in it would replace the base archive's /lib symlink when the
# kernel unpacks it, hiding /lib/modules.
init_stage() {
    mkdir -p "$1"/usr/lib "$1"/usr/lib64
    ln -s usr/lib "$1/lib"
    ln -s usr/lib64 "$1/lib64"
}

# stage_file STAGE SRC GUEST_PATH
# Copy SRC into the staging tree at GUEST_PATH. A dynamically linked ELF also
# brings every library `ldd` resolves for it and the dynamic loader, at the same
# paths as on the host, so the guest can run it unchanged.
stage_file() {
    local stage=$1 src=$2 dest=$3
    [[ -e $src ]] || { echo "vm: $src does not exist" >&2; return 1; }
    mkdir -p "$stage$(dirname "$dest")"
    cp -L "$src" "$stage$dest"
    if file -L "$src" | grep -q 'dynamically linked'; then
        local lib
        # "libx.so => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"
        for lib in $(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
            if [[ ! -e $stage$lib ]]; then
                mkdir -p "$stage$(dirname "$lib")"
                cp -L "$lib" "$stage$lib"
            fi
        done
    fi
}

# make_cpio STAGE OUT: an uncompressed newc archive (the guest unpacks it faster
# than it could decompress one under TCG).
make_cpio() {
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$2"
}
