#!/usr/bin/env bash
# Instructions per request of guidstore-server, counted by callgrind: a load-independent measure
# for comparing two builds on a noisy machine (wall-clock figures belong to bench/http.sh).
#
#   bash bench/instructions.sh                      # the release build of this tree
#   bash bench/instructions.sh A/guidstore-server B/guidstore-server   # compare builds
#
# For each binary, runs under `valgrind --tool=callgrind` (every thread counted), each on a fresh
# database with one record: BASE GETs of it; BASE + EXTRA GETs; BASE GETs + EXTRA HEADs of it;
# BASE GETs + METRICS GETs of /metrics; BASE GETs + POSTS creates; and the first two again with
# `--cache-capacity 0`. The differences of the totals, divided by the number of extra requests,
# cancel the start-up and shutdown: instructions per GET /guid/{guid} (a cache hit, logged, counted
# in the metrics), per HEAD of it, per GET /guid/{guid} read from SQLite (no cache: the stored JSON
# is parsed), per POST /guid (parse, commit with fsync, render) and per GET /metrics. HOT_ONLY=1
# gives the first two columns only (three runs instead of seven). ARGS adds server flags to every
# run: ARGS="--log-level warn" measures without the access log. The record carries numbers
# (client.py). One keep-alive connection, one request at a time (client.py, python3); only
# 127.0.0.1 is targeted.
# Needs valgrind (installed with apt-get if missing).
set -euo pipefail

BASE=${BASE:-1000}
EXTRA=${EXTRA:-5000}
METRICS=${METRICS:-500}
ARGS=${ARGS:-}
HOT_ONLY=${HOT_ONLY:-0}
POSTS=${POSTS:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/instructions/listening.sh"

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

# Total instructions of one run of server $1 serving $2 GETs, $3 /metrics, $4 POSTs and $5 HEADs,
# with cache capacity $6.
run() {
    local dir="$WORK/run" out
    rm -rf "$dir" && mkdir -p "$dir"
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$1" --listen 127.0.0.1:0 --db "$dir/guids.db" --log-file "$dir/server.log" --purge-interval 1h \
        --cache-capacity "$6" $ARGS >"$dir/stdout" 2>"$dir/stderr" &
    PID=$!
    out=$(wait_listening "$PID" "$dir")
    python3 "$ROOT/bench/instructions/client.py" "$out" "$2" "$3" "$4" "$5"
    kill -TERM "$PID"
    wait "$PID"
    PID=
    sed -n 's/^totals: \([0-9]*\).*/\1/p' "$dir/callgrind.out"
}

printf '%-50s %14s %14s %14s %14s %14s\n' "server" "GET (cache)" "HEAD (cache)" "GET (SQLite)" "POST /guid" \
    "GET /metrics"
for server in "$@"; do
    base=$(run "$server" "$BASE" 0 0 0 100000)
    more=$(run "$server" $((BASE + EXTRA)) 0 0 0 100000)
    headed=$(run "$server" "$BASE" 0 0 "$EXTRA" 100000)
    if [ "$HOT_ONLY" = 1 ]; then
        printf '%-50s %14d %14d\n' "$server" $(((more - base) / EXTRA)) $(((headed - base) / EXTRA))
        continue
    fi
    scraped=$(run "$server" "$BASE" "$METRICS" 0 0 100000)
    posted=$(run "$server" "$BASE" 0 "$POSTS" 0 100000)
    cold_base=$(run "$server" "$BASE" 0 0 0 0)
    cold_more=$(run "$server" $((BASE + EXTRA)) 0 0 0 0)
    printf '%-50s %14d %14d %14d %14d %14d\n' "$server" $(((more - base) / EXTRA)) $(((headed - base) / EXTRA)) \
        $(((cold_more - cold_base) / EXTRA)) $(((posted - base) / POSTS)) $(((scraped - base) / METRICS))
done
