#!/usr/bin/env bash
# The shared Redis cache (--cache): GET over a working set 10× larger than a server's own cache,
# PostgreSQL-backed, without Redis, with Redis, and with Redis killed (the breaker open).
#
#   bash bench/redis.sh                      # 100,000 records, local caches of 10,000; 3 rounds of 10 s
#   RECORDS=1000000 bash bench/redis.sh      # the issue's set-up: 1M records, local caches of 100,000
#   RECORD=1 bash bench/redis.sh             # also writes the section into BENCHMARKS.md ("## Shared Redis cache")
#
# Three guidstore-server processes stay up on one PostgreSQL database (the machine's service; a
# fresh database, dropped at the end), each with --cache-capacity RECORDS/10, pinned to core 0:
#   database  no --cache
#   redis     --cache on a private redis-server (unpinned, as the database), warmed first by a
#             scan of every record through this server
#   killed    --cache on a second private redis-server, killed with -9 before the runs
# wrk (one thread, 64 connections, random GETs of the whole set) runs on core 1; only 127.0.0.1 is
# targeted. Paired runs: each round runs the three servers back to back, and the ratios are to the
# database-only run of the same round; figures are medians over ROUNDS rounds.
# Database work per 1,000 GETs, from each server's /metrics deltas over its runs: record reads
# (guidstore_storage_reads_total) and freshness rounds (guidstore_freshness_rounds_total); and the
# transactions PostgreSQL counted in that time (pg_stat_database.xact_commit, which also includes
# the two idle servers' polls of the change log, 10 a second each).
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-100000}
LOCAL=${LOCAL:-$((RECORDS / 10))}
PG_BASE=${PG_BASE:-postgres://postgres@127.0.0.1:5432}
need wrk psql redis-server redis-cli taskset curl

cargo build --release -q -p guidstore-server --bin guidstore-server --example bench_prefill
DB="guidstore_redis_bench_$$"
on_exit() { psql "$PG_BASE/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; }

# redis NAME: a private redis-server; sets PIDS[NAME] and URLS[NAME].
redis() {
    local port
    port=$(free_port)
    mkdir -p "$WORK/$1"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/$1" >/dev/null 2>&1 &
    PIDS[$1]=$!
    URLS[$1]="redis://127.0.0.1:$port"
    for _ in $(seq 200); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then return; fi
        sleep 0.05
    done
    echo "redis-server $1 did not start" >&2; exit 1
}

# pg_server NAME FLAGS...: a guidstore-server on the bench database, pinned to core 0.
pg_server() {
    local name=$1; shift
    server "$name" --db "$PG_BASE/$DB" --cache-capacity "$LOCAL" --log-level warn "$@"
}

# metric SERVER NAME: a counter of the server's /metrics (GETs of /guid/{guid} answered 200 for "gets").
metric() {
    local text
    text=$(curl -fsS "${URLS[$1]}/metrics")
    if [[ "$2" == gets ]]; then
        sed -n 's/^guidstore_http_requests_total{route="\/guid\/{guid}",method="GET",status="200"} //p' <<<"$text"
    else
        sed -n "s/^$2 //p" <<<"$text"
    fi | awk '{ s += $1 } END { print s + 0 }'
}
commits() { psql "$PG_BASE/postgres" -qAtc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }

psql "$PG_BASE/postgres" -qAtc "CREATE DATABASE $DB" >/dev/null
echo "prefilling $RECORDS records into PostgreSQL" >&2
"$BIN/examples/bench_prefill" "$PG_BASE/$DB" "$RECORDS" >"$WORK/guids.txt"

redis cache
redis doomed
pg_server database
pg_server redis --cache "${URLS[cache]}"
pg_server killed --cache "${URLS[doomed]}"
# Warm Redis: every record once through the redis server (its fills), then a random warm-up.
scan_seconds=$((RECORDS / 2000 + 5))
echo "warming Redis: a ${scan_seconds} s scan of the records through the redis server" >&2
measure redis scan "$scan_seconds" >/dev/null
echo "Redis holds $(redis-cli -p "${URLS[cache]##*:}" dbsize) entries" >&2
kill -9 "${PIDS[doomed]}"; wait "${PIDS[doomed]}" 2>/dev/null || true; unset "PIDS[doomed]"
for name in database redis killed; do measure "$name" get 2 >/dev/null; done

RUNS=(database redis killed)
declare -A RPS P99 RATIO GETS READS ROUNDS_DB COMMITS
for round in $(seq "$ROUNDS"); do
    for run in "${RUNS[@]}"; do
        gets=$(metric "$run" gets); reads=$(metric "$run" guidstore_storage_reads_total)
        rounds=$(metric "$run" guidstore_freshness_rounds_total); xacts=$(commits)
        read -r rps p99 <<<"$(measure "$run" get "$DURATION")"
        GETS[$run]=$(( ${GETS[$run]:-0} + $(metric "$run" gets) - gets ))
        READS[$run]=$(( ${READS[$run]:-0} + $(metric "$run" guidstore_storage_reads_total) - reads ))
        ROUNDS_DB[$run]=$(( ${ROUNDS_DB[$run]:-0} + $(metric "$run" guidstore_freshness_rounds_total) - rounds ))
        COMMITS[$run]=$(( ${COMMITS[$run]:-0} + $(commits) - xacts ))
        RPS[$run]+="$rps "; P99[$run]+="$p99 "
        echo "  round $round: $run $rps req/s (p99 $p99 ms)" >&2
    done
    for run in "${RUNS[@]}"; do
        RATIO[$run]+="$(ratio "$(awk '{ print $NF }' <<<"${RPS[$run]}")" "$(awk '{ print $NF }' <<<"${RPS[database]}")") "
    done
done
hits=$(metric redis guidstore_shared_cache_hits_total); misses=$(metric redis guidstore_shared_cache_misses_total)
unproven=$(metric redis guidstore_shared_cache_unproven_total)
skipped=$(metric killed guidstore_shared_cache_skipped_total); timeouts=$(metric killed guidstore_shared_cache_timeouts_total)
errors=$(metric killed guidstore_shared_cache_errors_total)

# shellcheck disable=SC2086
m() { median ${RPS[$1]}; }
# shellcheck disable=SC2086
p() { median ${P99[$1]}; }
# shellcheck disable=SC2086
r() { median ${RATIO[$1]}; }
per1000() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b ? a * 1000 / b : 0 }'; }
row() {
    echo "| $1 | $(m "$2") | $(p "$2") | $(r "$2") | ${RATIO[$2]% } | $(per1000 "${READS[$2]}" "${GETS[$2]}") | $(per1000 "${ROUNDS_DB[$2]}" "${GETS[$2]}") | $(per1000 "${COMMITS[$2]}" "${GETS[$2]}") |"
}
{
    echo "| GET of random records ($RECORDS, local caches of $LOCAL) | req/s | p99 (ms) | × database only | each round | record reads from PostgreSQL per 1,000 GETs | freshness rounds per 1,000 | PostgreSQL transactions per 1,000 |"
    echo "|---|---:|---:|---:|---|---:|---:|---:|"
    row "database only (no --cache)" database
    row "with Redis (--cache)" redis
    row "with Redis killed (--cache, breaker open)" killed
} >"$WORK/table.md"
summary="Goals: with Redis ≥ 2× database only: $(awk -v r="$(r redis)" 'BEGIN { print (r >= 2) ? "met" : "MISSED" }'); \
Redis killed ≥ 0.9×: $(awk -v r="$(r killed)" 'BEGIN { print (r >= 0.9) ? "met" : "MISSED" }'). \
Redis server over the runs: $hits hits, $misses misses ($unproven entries not proven current). \
Killed-Redis server: $skipped reads skipped Redis, $timeouts timeouts, $errors errors (the breaker opened once)."
cat "$WORK/table.md"
echo
echo "$summary"

if [[ "${RECORD:-0}" == 1 ]]; then
    section="$WORK/section.md"
    {
        echo "## Shared Redis cache"
        echo
        echo "Command: \`RECORD=1 RECORDS=$RECORDS bash bench/redis.sh\` ($ROUNDS rounds of ${DURATION} s runs, medians)."
        echo "Three guidstore-server processes on one PostgreSQL 15 database, each with \`--cache-capacity $LOCAL\`,"
        echo "pinned to core 0: without \`--cache\`, with \`--cache\` (Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'),"
        echo "warmed by a scan of every record), and with \`--cache\` on a Redis killed before the runs. wrk -t1"
        echo "-c$CONNECTIONS on core 1, random GETs over all $RECORDS records; each round runs the three back to back."
        machine_lines
        echo
        cat "$WORK/table.md"
        echo
        echo "$summary"
    } >"$section"
    record_section "Shared Redis cache" "$section"
fi
