#!/usr/bin/env bash
# Instructions per request of guidstore-server, counted by callgrind: a load-independent measure
# for comparing two builds on a noisy machine (wall-clock figures belong to bench/http.sh).
#
#   bash bench/instructions.sh                      # the release build of this tree
#   bash bench/instructions.sh A/guidstore-server B/guidstore-server   # compare builds
#
# For each binary, three runs under `valgrind --tool=callgrind` (every thread counted), each on a
# fresh database with one record: BASE GETs of it; BASE + EXTRA GETs; BASE GETs + METRICS GETs of
# /metrics. The differences of the totals, divided by the number of extra requests, cancel the
# start-up and shutdown: instructions per GET /guid/{guid} (a cache hit, logged, counted in the
# metrics) and per GET /metrics. One keep-alive connection, one request at a time (client.py,
# python3); only 127.0.0.1 is targeted. Needs valgrind (installed with apt-get if missing).
set -euo pipefail

BASE=${BASE:-1000}
EXTRA=${EXTRA:-5000}
METRICS=${METRICS:-500}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v valgrind >/dev/null; then
    echo "installing valgrind" >&2
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
if [ "$#" -eq 0 ]; then
    (cd "$ROOT" && cargo build --release -q -p guidstore-server --bin guidstore-server)
    set -- "$ROOT/target/release/guidstore-server"
fi
WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Total instructions of one run of server $1 serving $2 GETs and $3 /metrics.
run() {
    local dir="$WORK/run" out
    rm -rf "$dir" && mkdir -p "$dir"
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$1" --listen 127.0.0.1:0 --db "$dir/guids.db" --log-file "$dir/server.log" --purge-interval 1h \
        >"$dir/stdout" 2>"$dir/stderr" &
    PID=$!
    for _ in $(seq 600); do
        grep -q '^listening on ' "$dir/stdout" 2>/dev/null && break
        kill -0 "$PID" 2>/dev/null || { cat "$dir/stderr" >&2; exit 1; }
        sleep 0.1
    done
    out=$(sed -n 's|^listening on http://||p' "$dir/stdout")
    python3 "$ROOT/bench/instructions/client.py" "$out" "$2" "$3"
    kill -TERM "$PID"
    wait "$PID"
    PID=
    sed -n 's/^totals: \([0-9]*\).*/\1/p' "$dir/callgrind.out"
}

printf '%-50s %16s %16s\n' "server" "instr/GET guid" "instr/GET metrics"
for server in "$@"; do
    base=$(run "$server" "$BASE" 0)
    more=$(run "$server" $((BASE + EXTRA)) 0)
    scraped=$(run "$server" "$BASE" "$METRICS")
    printf '%-50s %16d %16d\n' "$server" $(((more - base) / EXTRA)) $(((scraped - base) / METRICS))
done
