#!/usr/bin/env bash
# Runs each proto fuzz target for N seconds and prints its execution count.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default: 60 seconds, every target
#   PARALLEL=1 fuzz/run.sh 600            # all targets at once
#
# Runs are niced (10, or 15 with PARALLEL=1; set NICE to change it).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Its flags are
# nightly-only, so on a stable toolchain this sets RUSTC_BOOTSTRAP=1.
# Each target starts from the committed seeds (fuzz/seeds/TARGET) and keeps
# what it learns in fuzz/corpus/TARGET. A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes this script exit 1; replay it with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-...)
# The full libFuzzer log of each run is fuzz/artifacts/TARGET/fuzz.log.
set -euo pipefail

cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [SECONDS] [TARGET...] (SECONDS is a whole number > 0)" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: install it with 'cargo install cargo-fuzz --locked'" >&2
    exit 2
fi
if ! rustc -V | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# Build once up front, so the timed runs do not include compile time.
for t in "${targets[@]}"; do
    cargo fuzz build "$t"
done

# Fuzzing is long and CPU-bound: run it at low priority on a shared
# machine (NICE=0 to not), lower still when the targets run at once.
if [[ ${PARALLEL:-0} == 1 ]]; then
    nice_cmd=(nice -n "${NICE:-15}")
else
    nice_cmd=(nice -n "${NICE:-10}")
fi

# -malloc_limit_mb: no legitimate allocation is anywhere near this for
# inputs of a few KiB, so a decoder that trusts a header's size is caught.
# -timeout: a single input taking seconds is a bug (quadratic work, a loop).
run_one() {
    local target=$1
    mkdir -p "corpus/$target" "artifacts/$target"
    "${nice_cmd[@]}" cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        -malloc_limit_mb=256 -timeout=10 \
        >"artifacts/$target/fuzz.log" 2>&1
}

declare -A status
if [[ ${PARALLEL:-0} == 1 ]]; then
    declare -A pids
    for t in "${targets[@]}"; do
        run_one "$t" &
        pids[$t]=$!
    done
    for t in "${targets[@]}"; do
        if wait "${pids[$t]}"; then status[$t]=0; else status[$t]=$?; fi
    done
else
    for t in "${targets[@]}"; do
        if run_one "$t"; then status[$t]=0; else status[$t]=$?; fi
    done
fi

failed=0
printf '%-16s %14s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
    log="artifacts/$t/fuzz.log"
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    if [[ ${status[$t]} == 0 ]]; then
        result=ok
    else
        failed=1
        crash=$(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/Test unit written to //')
        result="FAILED (exit ${status[$t]}) ${crash:-see $log}"
    fi
    printf '%-16s %14s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$result"
done
exit $failed
