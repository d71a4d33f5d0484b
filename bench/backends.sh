#!/usr/bin/env bash
# guidstore-server on each storage backend, next to the databases' own insert benchmarks.
#
#   bash bench/backends.sh              # 3 rounds of 10 s runs; prints the tables
#   RECORD=1 bash bench/backends.sh     # also writes them into BENCHMARKS.md ("## Storage backends")
#
# Three servers stay up, each pinned to core 0: on SQLite (a file), on PostgreSQL and on MariaDB
# (a fresh database each, on the local services, dropped at the end). wrk (one thread, 64
# connections) runs on core 1; only 127.0.0.1 is targeted. The database servers themselves are
# not pinned (they are system services on both cores, as in production).
# Workloads: POST /guid (durable creates), GET of random live GUIDs (10,000 prefilled records,
# loaded into each backend with guidstore-cli export | import), PATCH, and on PostgreSQL a GET
# with Cache-Control: max-stale=1 (served from the cache without the freshness round).
# Anchors, same client count, same core: pgbench with a one-row INSERT script (one row per
# transaction, durable commit) and mysqlslap with the same INSERT.
# Each round runs every workload once; figures are medians over ROUNDS rounds.
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-10000}
PG_BASE=${PG_BASE:-postgres://postgres@127.0.0.1:5432}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
need wrk pgbench mysqlslap psql mariadb taskset

cargo build --release -q -p guidstore-server -p guidstore-cli --bin guidstore-server --bin guidstore-cli --example bench_prefill
DB="guidstore_bench_$$"
on_exit() {
    psql "$PG_BASE/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    mariadb -h "$MYSQL_HOST" -u root -e "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}

INSERT="INSERT INTO bench_insert (guid, expire, metadata) VALUES (md5(random()::text), 4000000000, '{\"user\":\"bench user\",\"team\":\"perf\"}')"
pgbench_tps() {
    taskset -c 1 pgbench -n -c "$CONNECTIONS" -j 1 -T "$DURATION" -f "$WORK/insert.sql" "$PG_BASE/$DB" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}
mysqlslap_tps() {
    local queries=$((CONNECTIONS * 200)) seconds
    seconds=$(taskset -c 1 mysqlslap -h "$MYSQL_HOST" -u root --create-schema="$DB" --concurrency="$CONNECTIONS" \
        --iterations=1 --number-of-queries="$queries" \
        --query="INSERT INTO bench_insert (guid, expire, metadata) VALUES (MD5(RAND()), 4000000000, '{\"user\":\"bench user\",\"team\":\"perf\"}')" \
        2>/dev/null | sed -n 's/.*Average number of seconds to run all queries: \([0-9.]*\).*/\1/p')
    awk -v q="$queries" -v s="$seconds" 'BEGIN { printf "%.0f", q / s }'
}

echo "prefilling $RECORDS records (SQLite, then export | import into PostgreSQL and MariaDB)" >&2
"$BIN/examples/bench_prefill" "$WORK/guids.db" "$RECORDS" >"$WORK/guids.txt"
psql "$PG_BASE/postgres" -qAtc "CREATE DATABASE $DB" >/dev/null
mariadb -h "$MYSQL_HOST" -u root -e "CREATE DATABASE $DB CHARACTER SET utf8mb4"
"$BIN/guidstore-cli" --db "$WORK/guids.db" export >"$WORK/records.ndjson"
"$BIN/guidstore-cli" --db "$PG_BASE/$DB" import "$WORK/records.ndjson" 2>/dev/null
"$BIN/guidstore-cli" --db "mysql://root@$MYSQL_HOST:3306/$DB" import "$WORK/records.ndjson" 2>/dev/null
echo "$INSERT;" >"$WORK/insert.sql"
psql "$PG_BASE/$DB" -qAtc "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, guid text, expire bigint, metadata text)"
mariadb -h "$MYSQL_HOST" -u root "$DB" -e "CREATE TABLE bench_insert (id bigint AUTO_INCREMENT PRIMARY KEY, guid char(32), expire bigint, metadata text) ENGINE=InnoDB"

for name in sqlite postgres mysql; do
    case $name in
        sqlite) url="$WORK/guids.db" ;;
        postgres) url="$PG_BASE/$DB" ;;
        mysql) url="mysql://root@$MYSQL_HOST:3306/$DB" ;;
    esac
    server "$name" --db "$url" --log-level info
    measure "$name" get 2 >/dev/null
done

RUNS=(sqlite:post sqlite:get sqlite:patch postgres:post postgres:get postgres:stale postgres:patch mysql:post mysql:get mysql:patch)
declare -A RPS P99
for round in $(seq "$ROUNDS"); do
    pg=$(pgbench_tps); RPS[pgbench]+="$pg "
    my=$(mysqlslap_tps); RPS[mysqlslap]+="$my "
    echo "  round $round: pgbench $pg tps, mysqlslap $my tps" >&2
    for run in "${RUNS[@]}"; do
        read -r rps p99 <<<"$(measure "${run%%:*}" "${run#*:}" "$DURATION")"
        RPS[$run]+="$rps "; P99[$run]+="$p99 "
        echo "  round $round: $run $rps req/s (p99 $p99 ms)" >&2
    done
done

# shellcheck disable=SC2086
m() { median ${RPS[$1]}; }
# shellcheck disable=SC2086
p() { median ${P99[$1]}; }
{
    echo "| backend | POST req/s (p99 ms) | GET req/s (p99 ms) | PATCH req/s (p99 ms) | database's own one-row INSERT tps | POST / INSERT |"
    echo "|---|---:|---:|---:|---:|---:|"
    echo "| SQLite (file) | $(m sqlite:post) ($(p sqlite:post)) | $(m sqlite:get) ($(p sqlite:get)) | $(m sqlite:patch) ($(p sqlite:patch)) | | |"
    echo "| PostgreSQL 15 | $(m postgres:post) ($(p postgres:post)) | $(m postgres:get) ($(p postgres:get)) | $(m postgres:patch) ($(p postgres:patch)) | pgbench $(m pgbench) | $(ratio "$(m postgres:post)" "$(m pgbench)")× |"
    echo "| MariaDB 10.11 | $(m mysql:post) ($(p mysql:post)) | $(m mysql:get) ($(p mysql:get)) | $(m mysql:patch) ($(p mysql:patch)) | mysqlslap $(m mysqlslap) | $(ratio "$(m mysql:post)" "$(m mysqlslap)")× |"
    echo
    echo "| GET of hot records | req/s | p99 (ms) | × SQLite-backed GET |"
    echo "|---|---:|---:|---:|"
    echo "| SQLite-backed | $(m sqlite:get) | $(p sqlite:get) | 1.00 |"
    echo "| PostgreSQL-backed, linearizable (a shared freshness round per batch of reads) | $(m postgres:get) | $(p postgres:get) | $(ratio "$(m postgres:get)" "$(m sqlite:get)") |"
    echo "| PostgreSQL-backed, Cache-Control: max-stale=1 | $(m postgres:stale) | $(p postgres:stale) | $(ratio "$(m postgres:stale)" "$(m sqlite:get)") |"
    echo "| MariaDB-backed, linearizable | $(m mysql:get) | $(p mysql:get) | $(ratio "$(m mysql:get)" "$(m sqlite:get)") |"
} >"$WORK/table.md"
cat "$WORK/table.md"

if [[ "${RECORD:-0}" == 1 ]]; then
    section="$WORK/section.md"
    {
        echo "## Storage backends"
        echo
        echo "Command: \`RECORD=1 bash bench/backends.sh\` ($ROUNDS rounds of ${DURATION} s runs, medians)."
        echo "Each guidstore-server pinned to core 0, wrk -t1 -c$CONNECTIONS on core 1, pgbench -c$CONNECTIONS -j1 and"
        echo "mysqlslap --concurrency=$CONNECTIONS on core 1; PostgreSQL 15 and MariaDB 10.11 are the machine's services"
        echo "(default settings: fsync on, synchronous_commit on, innodb_flush_log_at_trx_commit=1), not pinned."
        echo "$RECORDS records, loaded into each backend with \`guidstore-cli export | guidstore-cli import\`."
        machine_lines
        echo
        cat "$WORK/table.md"
    } >"$section"
    record_section "Storage backends" "$section"
fi
