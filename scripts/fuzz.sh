#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) and prints, per target, the
# runs libFuzzer made, the corpus size, and whether it found a crash (left in fuzz/artifacts/).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed here from crates.io by package name when missing) and a C++ compiler.
# cargo-fuzz uses nightly's -Z flags; this machine has only the stable toolchain, so
# RUSTC_BOOTSTRAP=1 unlocks them on stable. Exit status: 1 when any target found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(fuzz_[a-z_]*\)"$/\1/p' fuzz/Cargo.toml)
fi

export RUSTC_BOOTSTRAP=1
# Fuzz builds go to their own target dir (sanitizer flags would rebuild the workspace's).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
mkdir -p fuzz/logs
echo "fuzz: building ${#targets[@]} targets" >&2
cargo fuzz build --fuzz-dir fuzz -O >/dev/null 2>fuzz/logs/build.log || {
    tail -30 fuzz/logs/build.log >&2
    exit 2
}

found=0
printf '%-24s %10s %8s %8s %s\n' target runs exec/s corpus result
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    seeds=()
    [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
    log="fuzz/logs/$t.log"
    set +e
    cargo fuzz run --fuzz-dir fuzz -O "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="CRASH (exit $rc; see $log and fuzz/artifacts/$t/)"
        found=1
    fi
    printf '%-24s %10s %8s %8s %s\n' "$t" "${runs:-?}" "${speed:-?}" "$corpus" "$result"
done
exit "$found"
