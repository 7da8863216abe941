# shellcheck shell=bash
# Shared by the arm64 guest's setup.sh and run.sh (sourced, not run).

# arm64_missing_libs STAGE ELF...: the NEEDED libraries of each ELF (read
# with readelf, which works across architectures, unlike ldd) that are not
# in STAGE's library directories, and its program interpreter if that is
# missing; prints nothing when everything is there.
arm64_missing_libs() {
    local stage=$1 elf lib interp missing=()
    shift
    for elf in "$@"; do
        interp=$(readelf -l "$elf" 2>/dev/null | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
        if [[ -n $interp && ! -e $stage/usr/lib/${interp##*/} ]]; then
            missing+=("$interp")
        fi
        for lib in $(readelf -d "$elf" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            [[ -e $stage/usr/lib/aarch64-linux-gnu/$lib || -e $stage/usr/lib/$lib ]] || missing+=("$lib")
        done
    done
    ((${#missing[@]} == 0)) || printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' '
}
