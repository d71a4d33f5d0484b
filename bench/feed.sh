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
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
WRITERS=${WRITERS:-16}
IDLE=${IDLE:-1000}
IDLE_SECS=${IDLE_SECS:-10}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
need taskset psql

cargo build --release -q -p guidstore-server --bin guidstore-server -p guidstore-reliability --bin feed-load
PGDB="guidstore_feed_bench_$$"
on_exit() { psql -h "$PGHOST" -U "$PGUSER" -qc "DROP DATABASE IF EXISTS $PGDB" postgres >/dev/null 2>&1; }

# load ARGS...: one feed-load run on core 1; prints "posts/s events/s events/s/subscriber p50 p99".
load() {
    taskset -c 1 "$BIN/feed-load" run --writers "$WRITERS" --seconds "$DURATION" "$@" | sed -n 's/^RESULT //p'
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# 1. One server on SQLite: POSTs with 0, 1 and 100 subscribers.
server sqlite --db "$WORK/feed.db" --sync full
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
        ratio=$(ratio "$posts" "$base_posts")
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
server pg_a --db "$PGURL"
server pg_b --db "$PGURL"
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
        machine_lines
        echo
        cat "$WORK/table.md"
        echo
        echo "$summary"
    } >"$section"
    record_section "Change feed" "$section"
fi
