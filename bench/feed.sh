#!/usr/bin/env bash
# Change-feed benchmark: events/s delivered to 1 and to 100 Server-Sent-Event subscribers while
# POSTs run; POST throughput with and without 100 subscribers attached (goal ≥ 0.9×); latency
# from a write's acknowledgement to its event at a subscriber on another instance (two servers
# on one PostgreSQL database); memory and CPU of 1,000 idle subscribers on one server.
#
#   bash bench/feed.sh                       # 5 rounds of 5 s runs; prints the tables
#   RECORD=1 bash bench/feed.sh              # also writes them into BENCHMARKS.md ("## Change feed")
#   ROUNDS=1 DURATION=1 IDLE=100 bash bench/feed.sh   # a smoke run
#
# The load client is reliability's `feed-load` (writers on keep-alive connections, one thread per
# subscriber, events counted as they arrive; it fails if any subscriber misses an acknowledged
# write). Servers are pinned to core 0 (`taskset -c 0`), the client to core 1; only 127.0.0.1 is
# targeted. Paired runs: in each round the three SQLite runs (no subscriber, 1, 100) come one
# right after another, and the "× without" ratio is to that round's run without subscribers.
# Figures are medians over ROUNDS rounds. The latency part needs PostgreSQL at 127.0.0.1:5432
# (user postgres, trust; PGHOST/PGUSER to change): it creates a database and drops it after.
set -euo pipefail

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
WRITERS=${WRITERS:-16}
IDLE=${IDLE:-1000}
IDLE_SECS=${IDLE_SECS:-10}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is required (the latency part runs on PostgreSQL)" >&2; exit 1; }

cargo build --release -q -p guidstore-server --bin guidstore-server -p guidstore-reliability --bin feed-load
BIN="$ROOT/target/release"
WORK=$(mktemp -d)
PGDB="guidstore_feed_bench_$$"
declare -A PIDS URLS
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    psql -h "$PGHOST" -U "$PGUSER" -qc "DROP DATABASE IF EXISTS $PGDB" postgres >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME ARGS...: a guidstore-server pinned to core 0; sets PIDS[NAME] and URLS[NAME].
start() {
    local name=$1; shift
    taskset -c 0 "$BIN/guidstore-server" --listen 127.0.0.1:0 --log-file "$WORK/$name.log" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS[$name]=$!
    for _ in $(seq 200); do
        if grep -q '^listening on ' "$WORK/$name.out" 2>/dev/null; then
            URLS[$name]=$(sed -n 's/^listening on //p' "$WORK/$name.out")
            return
        fi
        sleep 0.05
    done
    echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

stop() {
    local status=0
    kill -TERM "${PIDS[$1]}"
    wait "${PIDS[$1]}" || status=$?
    unset "PIDS[$1]"
    if [[ "$status" != 0 ]]; then echo "$1 exited with $status" >&2; exit 1; fi
}

# load ARGS...: one feed-load run on core 1; prints "posts/s events/s events/s/subscriber p50 p99".
load() {
    taskset -c 1 "$BIN/feed-load" run --writers "$WRITERS" --seconds "$DURATION" "$@" | sed -n 's/^RESULT //p'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. One server on SQLite: POSTs with 0, 1 and 100 subscribers.
start sqlite --db "$WORK/feed.db" --sync full
load --write-url "${URLS[sqlite]}" --subscribers 0 --seconds 1 >/dev/null # warm-up
declare -A POSTS EVENTS PER RATIO
# cpu_per_post POSTS/S TICKS: the server's CPU time (user + system) per POST of a run, in µs: a
# figure that holds on a busy machine, where the POST rate mostly measures the neighbours.
cpu_per_post() { awk -v p="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" 'BEGIN { printf "%.0f", t / hz * 1e6 / (p * d) }'; }
for round in $(seq "$ROUNDS"); do
    ticks=$(cpu_ticks "${PIDS[sqlite]}")
    read -r base_posts _ <<<"$(load --write-url "${URLS[sqlite]}" --subscribers 0)"
    base_cpu=$(cpu_per_post "$base_posts" "$(($(cpu_ticks "${PIDS[sqlite]}") - ticks))")
    POSTS[0]+="$base_posts "
    echo "  round $round: no subscriber: $base_posts POST/s, server CPU ${base_cpu} µs per POST" >&2
    for subscribers in 1 100; do
        ticks=$(cpu_ticks "${PIDS[sqlite]}")
        read -r posts events per _ <<<"$(load --write-url "${URLS[sqlite]}" --subscribers "$subscribers")"
        cpu=$(cpu_per_post "$posts" "$(($(cpu_ticks "${PIDS[sqlite]}") - ticks))")
        ratio=$(awk -v a="$posts" -v b="$base_posts" 'BEGIN { printf "%.2f", a / b }')
        POSTS[$subscribers]+="$posts "; EVENTS[$subscribers]+="$events "; PER[$subscribers]+="$per "
        RATIO[$subscribers]+="$ratio "
        echo "  round $round: $subscribers subscribers: $posts POST/s (${ratio}× of $base_posts), $events events/s delivered, server CPU ${cpu} µs per POST" >&2
    done
done

# 2. Idle subscribers on that server: memory and CPU while they wait.
pid=${PIDS[sqlite]}
rss_before=$(rss_kib "$pid")
taskset -c 1 "$BIN/feed-load" hold --subscribe-url "${URLS[sqlite]}" --subscribers "$IDLE" --seconds "$IDLE_SECS" \
    >"$WORK/hold.out" &
hold_pid=$!
for _ in $(seq 600); do grep -q READY "$WORK/hold.out" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$WORK/hold.out" || { echo "the idle subscribers did not open" >&2; exit 1; }
sleep 1
rss_with=$(rss_kib "$pid")
ticks_before=$(cpu_ticks "$pid"); sleep "$((IDLE_SECS - 3))"; ticks_after=$(cpu_ticks "$pid")
wait "$hold_pid"
grep -q "^HELD $IDLE" "$WORK/hold.out" || { echo "feed-load hold failed" >&2; exit 1; }
hz=$(getconf CLK_TCK)
idle_cpu=$(awk -v t="$((ticks_after - ticks_before))" -v hz="$hz" -v s="$((IDLE_SECS - 3))" 'BEGIN { printf "%.2f", 100 * t / hz / s }')
per_sub=$(awk -v a="$rss_with" -v b="$rss_before" -v n="$IDLE" 'BEGIN { printf "%.1f", (a - b) / n }')
stop sqlite

# 3. Two servers on one PostgreSQL database: write on one, subscribe on the other.
psql -h "$PGHOST" -U "$PGUSER" -qc "CREATE DATABASE $PGDB" postgres >/dev/null
PGURL="postgres://$PGUSER@$PGHOST:5432/$PGDB"
start pg_a --db "$PGURL"
start pg_b --db "$PGURL"
load --write-url "${URLS[pg_a]}" --subscribe-url "${URLS[pg_b]}" --subscribers 1 --seconds 1 --latency >/dev/null
declare -a P50 P99 PG_POSTS
for round in $(seq "$ROUNDS"); do
    read -r posts _ _ p50 p99 <<<"$(load --write-url "${URLS[pg_a]}" --subscribe-url "${URLS[pg_b]}" --subscribers 1 --latency)"
    PG_POSTS+=("$posts"); P50+=("$p50"); P99+=("$p99")
    echo "  round $round: PostgreSQL, two instances: $posts POST/s, latency p50 $p50 ms, p99 $p99 ms" >&2
done
stop pg_a
stop pg_b

# shellcheck disable=SC2086 # the lists are space-separated numbers
{
    echo "| SQLite, one server, $WRITERS writers | POST/s | × without subscribers | events/s delivered (all) | events/s per subscriber | × without, each round |"
    echo "|---|---:|---:|---:|---:|---|"
    echo "| no subscriber | $(median ${POSTS[0]}) | 1.00 | | | |"
    for subscribers in 1 100; do
        echo "| $subscribers SSE subscriber$([[ $subscribers == 1 ]] || echo s) | $(median ${POSTS[$subscribers]}) | $(median ${RATIO[$subscribers]}) | $(median ${EVENTS[$subscribers]}) | $(median ${PER[$subscribers]}) | ${RATIO[$subscribers]% } |"
    done
    echo
    echo "| PostgreSQL, two servers: POST on one, SSE subscriber on the other | POST/s | ack → event p50 (ms) | p99 (ms) |"
    echo "|---|---:|---:|---:|"
    echo "| $WRITERS writers, 1 subscriber | $(median "${PG_POSTS[@]}") | $(median "${P50[@]}") | $(median "${P99[@]}") |"
    echo
    echo "| $IDLE idle SSE subscribers on one server | RSS before | RSS with them | per subscriber | server CPU while idle |"
    echo "|---|---:|---:|---:|---:|"
    echo "| SQLite server after the runs above | $((rss_before / 1024)) MiB | $((rss_with / 1024)) MiB | $per_sub KiB | ${idle_cpu}% of a core |"
} >"$WORK/table.md"
# shellcheck disable=SC2086
goal=$(awk -v r="$(median ${RATIO[100]})" 'BEGIN { print (r >= 0.9) ? "met" : "MISSED" }')
summary="Goal: POST throughput with 100 subscribers ≥ 0.9× without: $goal."
cat "$WORK/table.md"
echo
echo "$summary"

if [[ "${RECORD:-0}" == 1 ]]; then
    section="$WORK/section.md"
    {
        echo "## Change feed"
        echo
        echo "Command: \`RECORD=1 bash bench/feed.sh\` ($ROUNDS rounds of ${DURATION} s runs; \`ROUNDS=\`, \`DURATION=\`, \`WRITERS=\`, \`IDLE=\` to change)."
        echo "Servers pinned to core 0, the load client (\`feed-load\`: $WRITERS writer threads POSTing \`{}\` on keep-alive"
        echo "connections, one thread per subscriber reading its event stream) to core 1. Every subscriber received every"
        echo "acknowledged write's event (the client fails otherwise). Latency: from the POST's answer at the writer to the"
        echo "event's arrival at the subscriber, in one process (one clock); the subscriber's server learns of the write"
        echo "through its tail of the change log (PostgreSQL NOTIFY wakes it). Idle: CPU over $((IDLE_SECS - 3)) s with the"
        echo "subscribers open and no writes; RSS from /proc."
        echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -r);"
        echo "load average before the run $LOAD_BEFORE; commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)."
        echo
        cat "$WORK/table.md"
        echo
        echo "$summary"
    } >"$section"
    touch BENCHMARKS.md
    awk -v section="$section" '
        /^## Change feed[[:space:]]*$/ { while ((getline line < section) > 0) print line; skipping = 1; done = 1; next }
        skipping && /^## / { skipping = 0 }
        !skipping { print }
        END { if (!done) { if (NR > 0) print ""; while ((getline line < section) > 0) print line } }
    ' BENCHMARKS.md >"$WORK/BENCHMARKS.md"
    cp "$WORK/BENCHMARKS.md" BENCHMARKS.md
    echo "recorded in BENCHMARKS.md" >&2
fi
