#!/usr/bin/env bash
# NDJSON import and export through guidstore-cli, on each storage backend.
#
#   bash bench/import.sh              # 1,000,000 records, 3 rounds; prints the table
#   RECORD=1 bash bench/import.sh     # also writes it into BENCHMARKS.md ("## Import and export")
#
# The input: RECORDS records with random GUIDs, expiries spread over three years and three
# metadata members (bench/http's shape), in random GUID order (as a program would write them).
# Its export (GUID order, exactly as GET renders each record) is what `export | import` moves
# between registries. Each round imports into a fresh database each time: the random-order file
# into SQLite, the exported file into SQLite, PostgreSQL and MariaDB (fresh databases on the
# local services, dropped at the end), then exports the SQLite registry. The CLI is not pinned:
# it reads and parses on one thread while its writer thread commits the previous batch. Figures
# are medians over ROUNDS rounds: records per second of wall time, and the CLI's peak RSS.
source "$(dirname "$0")/lib.sh"

RECORDS=${RECORDS:-1000000}
ROUNDS=${ROUNDS:-3}
PG_BASE=${PG_BASE:-postgres://postgres@127.0.0.1:5432}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
need psql mariadb python3
[[ -x /usr/bin/time ]] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

cargo build --release -q -p guidstore-cli
CLI="$BIN/guidstore-cli"
DB="guidstore_import_bench_$$"
on_exit() {
    psql "$PG_BASE/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    mariadb -h "$MYSQL_HOST" -u root -e "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
}

echo "writing $RECORDS records of NDJSON" >&2
python3 - "$RECORDS" "$WORK/random.ndjson" <<'PY'
import random, sys
count, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1)
with open(path, "w") as out:
    for i in range(count):
        guid = "%032X" % rng.getrandbits(128)
        expire = 1_900_000_000 + rng.randrange(100_000_000)
        out.write('{"guid":"%s","expire":"%d","user":"bench user %d","team":"ops","tags":["a","b"]}\n' % (guid, expire, i))
PY
"$CLI" --db "$WORK/source.db" import "$WORK/random.ndjson" 2>/dev/null
"$CLI" --db "$WORK/source.db" export >"$WORK/exported.ndjson"
rm -f "$WORK"/source.db*

# timed NAME COMMAND...: runs COMMAND under /usr/bin/time; appends "records/s" to RATE[NAME] and
# the peak RSS in MiB to RSS[NAME]. The command must account for all RECORDS.
declare -A RATE RSS
timed() {
    local name=$1; shift
    local started ended
    started=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    ended=$(date +%s.%N)
    RATE[$name]+="$(awk -v n="$RECORDS" -v a="$started" -v b="$ended" 'BEGIN { printf "%.0f", n / (b - a) }') "
    RSS[$name]+="$(awk '{ printf "%.0f", $1 / 1024 }' "$WORK/time") "
    echo "  $name: $(awk '{ print $NF }' <<<"${RATE[$name]}") records/s" >&2
}
fresh_databases() {
    on_exit
    psql "$PG_BASE/postgres" -qAtc "CREATE DATABASE $DB" >/dev/null
    mariadb -h "$MYSQL_HOST" -u root -e "CREATE DATABASE $DB"
}

for round in $(seq "$ROUNDS"); do
    echo "round $round" >&2
    rm -f "$WORK"/a.db* "$WORK"/b.db*
    fresh_databases
    timed sqlite_random "$CLI" --db "$WORK/a.db" import "$WORK/random.ndjson"
    timed sqlite_exported "$CLI" --db "$WORK/b.db" import "$WORK/exported.ndjson"
    timed postgres "$CLI" --db "$PG_BASE/$DB" import "$WORK/exported.ndjson"
    timed mariadb "$CLI" --db "mysql://root@$MYSQL_HOST/$DB" import "$WORK/exported.ndjson"
    timed export sh -c "\"$CLI\" --db \"$WORK/b.db\" export > \"$WORK/again.ndjson\""
    cmp -s "$WORK/exported.ndjson" "$WORK/again.ndjson" || { echo "the export differs from its input" >&2; exit 1; }
done

# shellcheck disable=SC2086
row() { echo "| $1 | $(median ${RATE[$2]}) | ${RATE[$2]% } | $(median ${RSS[$2]}) |"; }
# verdict NAME: whether the median of RATE[NAME] reaches 100,000 records/s.
# shellcheck disable=SC2086
verdict() { awk -v r="$(median ${RATE[$1]})" 'BEGIN { print (r >= 100000 ? "met" : "MISSED") }'; }
{
    echo "## Import and export"
    echo
    echo "Command: \`RECORD=1 bash bench/import.sh\` ($RECORDS records, $ROUNDS rounds, medians; \`RECORDS=\`,"
    echo "\`ROUNDS=\` to change). \`guidstore-cli import\` into a fresh database each time (SQLite batches of"
    echo "50,000 records, PostgreSQL and MariaDB batches of 10,000, one transaction each, durable commits),"
    echo "and \`guidstore-cli export\` of the SQLite registry (checked byte-identical to the imported file)."
    echo "Records/s of wall time, the CLI's peak RSS."
    machine_lines
    echo
    echo "| $RECORDS records | records/s | each round | peak RSS MiB |"
    echo "|---|---:|---|---:|"
    row "import into SQLite, random GUID order" sqlite_random
    row "import into SQLite, exported (GUID) order" sqlite_exported
    row "import into PostgreSQL 15, exported order" postgres
    row "import into MariaDB 10.11, exported order" mariadb
    row "export from SQLite" export
    echo
    echo "Goal: import into SQLite ≥ 100,000 records/s: $(verdict sqlite_exported) in exported order (\`export | import\`),"
    echo "$(verdict sqlite_random) in random order."
} >"$WORK/section.md"
cat "$WORK/section.md"
if [[ "${RECORD:-0}" == 1 ]]; then record_section "Import and export" "$WORK/section.md"; fi
