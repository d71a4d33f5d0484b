#!/usr/bin/env bash
# Instructions per linearizable GET of a hot record on a PostgreSQL-backed guidstore-server,
# counted by callgrind (every thread of the server), and what the database does for it: the
# method of bench/instructions.sh on a shared database.
#
#   bash bench/instructions-shared.sh                      # the release build of this tree
#   bash bench/instructions-shared.sh A/guidstore-server B/guidstore-server   # compare builds
#
# For each binary and each client concurrency in CONCURRENCY (default "1 16"), two runs under
# `valgrind --tool=callgrind`, each on a fresh database (`createdb`, dropped afterwards) with one
# record: BASE GETs of it, then BASE + EXTRA GETs. The differences divided by EXTRA cancel the
# start-up, the migration and the shutdown:
#   instr/GET   instructions of the server per GET (a cache hit after its freshness round);
#   rounds/GET  the server's guidstore_freshness_rounds_total per GET (read from /metrics at the end);
#   xacts/GET   PostgreSQL transactions of the database per GET (pg_stat_database.xact_commit after
#               the server has exited: each query outside a transaction is one);
#   pg us/GET   CPU time of the server's PostgreSQL backends per GET (utime + stime from /proc,
#               10 ms ticks: a rough figure).
# The tailer does not poll (--tail-interval 1h) so that wall time, which callgrind stretches,
# adds no queries. Concurrency 1 is one keep-alive connection, one request at a time (every read
# runs its own round); concurrency N is N connections at once (bench/instructions/concurrent.py),
# so reads share rounds — how many depends on the timing under callgrind, hence rounds/GET.
# URL_QUERY is appended to the database URL ("?sslmode=disable" measures without TLS).
# Only 127.0.0.1 is targeted. Needs valgrind, createdb, dropdb, psql.
set -euo pipefail

BASE=${BASE:-500}
EXTRA=${EXTRA:-3000}
CONCURRENCY=${CONCURRENCY:-"1 16"}
PG=${PG:-"-h 127.0.0.1 -U postgres"}
URL_QUERY=${URL_QUERY:-} # e.g. "?sslmode=disable": without it the connections use TLS when the server offers it
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/instructions/listening.sh"

if [ "$#" -eq 0 ]; then
    (cd "$ROOT" && cargo build --release -q -p guidstore-server --bin guidstore-server)
    set -- "$ROOT/target/release/guidstore-server"
fi
WORK=$(mktemp -d)
PID=
DB=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    if [ -n "$DB" ]; then dropdb $PG --if-exists --force "$DB" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Cumulative utime + stime (clock ticks) of the PostgreSQL backends serving database $1.
pg_ticks() {
    local total=0 pid fields
    for pid in $(psql $PG -d postgres -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$1'"); do
        fields=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + $(echo "$fields" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}

# "instructions rounds xacts pg_ticks" of one run of server $1 serving $2 GETs over $3 connections.
run() {
    local dir="$WORK/run" out rounds ticks xacts
    rm -rf "$dir" && mkdir -p "$dir"
    DB="guidstore_instr_$$_$RANDOM"
    createdb $PG "$DB"
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$1" --listen 127.0.0.1:0 --db "postgres://postgres@127.0.0.1:5432/$DB$URL_QUERY" --log-file "$dir/server.log" \
        --purge-interval 1h --tail-interval 1h --db-timeout 60s --db-wait 60s \
        >"$dir/stdout" 2>"$dir/stderr" &
    PID=$!
    out=$(wait_listening "$PID" "$dir")
    if [ "$3" = 1 ]; then
        python3 "$ROOT/bench/instructions/client.py" "$out" "$2" 0 0 0
    else
        python3 "$ROOT/bench/instructions/concurrent.py" "$out" "$2" "$3"
    fi
    rounds=$(python3 -c "import urllib.request,sys; t=urllib.request.urlopen('http://$out/metrics', timeout=600).read().decode(); print(next(int(float(l.split()[1])) for l in t.splitlines() if l.startswith('guidstore_freshness_rounds_total')))")
    ticks=$(pg_ticks "$DB")
    kill -TERM "$PID"
    wait "$PID"
    PID=
    sleep 1 # the backends flush their statistics as they exit
    xacts=$(psql $PG -d postgres -Atc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'")
    dropdb $PG --force "$DB"
    DB=
    echo "$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$dir/callgrind.out") $rounds $xacts $ticks"
}

hz=$(getconf CLK_TCK)
printf '%-45s %5s %12s %10s %10s %10s\n' "server" "conns" "instr/GET" "rounds/GET" "xacts/GET" "pg us/GET"
for server in "$@"; do
    for conns in $CONCURRENCY; do
        read -r i0 r0 x0 t0 <<<"$(run "$server" "$BASE" "$conns")"
        read -r i1 r1 x1 t1 <<<"$(run "$server" $((BASE + EXTRA)) "$conns")"
        awk -v s="$server" -v c="$conns" -v e="$EXTRA" -v hz="$hz" \
            -v i0="$i0" -v i1="$i1" -v r0="$r0" -v r1="$r1" -v x0="$x0" -v x1="$x1" -v t0="$t0" -v t1="$t1" \
            'BEGIN { printf "%-45s %5d %12d %10.3f %10.3f %10.1f\n", s, c, (i1 - i0) / e, (r1 - r0) / e,
                     (x1 - x0) / e, (t1 - t0) * 1e6 / hz / e }'
    done
done
