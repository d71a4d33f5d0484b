#!/usr/bin/env bash
# Runs every fuzz target for a bounded number of executions on one core and prints the counts.
# Usage: fuzz/run-all.sh [RUNS] [MAX_SECONDS_PER_TARGET] [CORE]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-5000000}
max_seconds=${2:-900}
core=${3:-1}
mkdir -p logs
for target in ${TARGETS:-guid_parse expiry_parse create_parse patch_parse if_match_parse}; do
    mkdir -p "corpus/$target"
    log="logs/$target.log"
    taskset -c "$core" cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -runs="$runs" -max_total_time="$max_seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || {
        echo "$target: FAILED, see fuzz/$log and fuzz/artifacts/$target/"; tail -40 "$log"; exit 1; }
    executed=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    done_line=$(grep -E '^Done [0-9]+ runs' "$log" || true)
    echo "$target: ${executed:-?} executions, 0 crashes (${done_line:-no Done line})"
done
