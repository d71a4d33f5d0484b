#!/usr/bin/env bash
# HTTP benchmark of guidstore-server against a minimal hyper hello-world (the ceiling).
#
#   bash bench/http.sh            # 10 s per run; prints the table
#   RECORD=1 bash bench/http.sh   # also writes it into BENCHMARKS.md ("## HTTP server")
#
# Needs wrk (installed with apt-get if missing) and taskset (util-linux). Servers are pinned to
# core 0 and wrk (one thread, 64 connections) to core 1; only 127.0.0.1 is targeted.
# Workloads: GET of random live GUIDs (10,000 prefilled records), POST /guid (durable creates,
# synchronous=FULL), PATCH, and a 90/10 GET/PATCH mix; request logging on (server.log, info).
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
RECORDS=${RECORDS:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT="$ROOT/bench/http/workload.lua"
cd "$ROOT"

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

cargo build --release -q -p guidstore-server --bin guidstore-server --example hello_world --example bench_prefill
BIN="$ROOT/target/release"
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME COMMAND...: runs COMMAND pinned to core 0, sets SERVER_PID and URL.
start() {
    local name=$1; shift
    rm -f "$WORK/$name.out"
    taskset -c 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    SERVER_PID=$!
    for _ in $(seq 200); do
        if grep -q '^listening on ' "$WORK/$name.out" 2>/dev/null; then
            URL=$(sed -n 's/^listening on //p' "$WORK/$name.out")
            return
        fi
        sleep 0.05
    done
    echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

# stop [EXPECTED_STATUS]: SIGTERM to the server; guidstore-server must exit 0.
stop() {
    local status=0
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || status=$?
    SERVER_PID=""
    if [[ "$status" != "${1:-0}" ]]; then echo "server exited with $status" >&2; exit 1; fi
}

# measure MODE SECONDS: prints "req/s p99_ms"; fails on errors.
measure() {
    local line
    line=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$2"s --timeout 5s -s "$SCRIPT" "$URL" -- "$1" "$WORK/guids.txt" \
        | grep '^RESULT')
    read -r _ rps p99 bad errors <<<"$line"
    if [[ "$bad" != 0 || "$errors" != 0 ]]; then
        echo "$1: $bad non-2xx responses, $errors socket errors" >&2; exit 1
    fi
    echo "$rps $p99"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "prefilling $RECORDS records" >&2
"$BIN/examples/bench_prefill" "$WORK/guids.db" "$RECORDS" >"$WORK/guids.txt"

# hello: measures the hello-world baseline into hello_rps / hello_p99, keeping the best run seen
# (it runs before and after guidstore-server, so a noisy moment cannot flatter the ratios).
hello_rps=0
hello_p99=0
hello() {
    echo "hello-world baseline" >&2
    start hello "$BIN/examples/hello_world" 127.0.0.1:0
    measure hello 2 >/dev/null
    local run_rps run_p99
    read -r run_rps run_p99 <<<"$(measure hello "$DURATION")"
    stop 143 # no signal handler: killed by SIGTERM
    echo "  $run_rps req/s" >&2
    if ((run_rps > hello_rps)); then hello_rps=$run_rps; hello_p99=$run_p99; fi
}
hello

echo "guidstore-server" >&2
start server "$BIN/guidstore-server" --listen 127.0.0.1:0 --db "$WORK/guids.db" --log-file "$WORK/server.log" \
    --log-level info --sync full
measure get 2 >/dev/null
declare -A rps p99
# Each workload runs twice and keeps its better run, as the hello-world baseline does: other jobs
# on a shared machine can only make a run slower.
for mode in get post patch mix; do
    rps[$mode]=0
    for run in 1 2; do
        read -r run_rps run_p99 <<<"$(measure "$mode" "$DURATION")"
        echo "  $mode run $run: $run_rps req/s" >&2
        if ((run_rps > rps[$mode])); then rps[$mode]=$run_rps; p99[$mode]=$run_p99; fi
    done
done
stop
logged=$(grep -c ' /guid' "$WORK/server.log" || true)
hello

ratio() { awk -v a="$1" -v b="$hello_rps" 'BEGIN { printf "%.2f", a / b }'; }
{
    echo "| workload | req/s | p99 (ms) | × hello-world |"
    echo "|---|---:|---:|---:|"
    echo "| hello-world baseline (hyper, 20-byte JSON) | $hello_rps | $hello_p99 | 1.00 |"
    echo "| GET /guid/{guid} (random of $RECORDS live) | ${rps[get]} | ${p99[get]} | $(ratio "${rps[get]}") |"
    echo "| POST /guid (durable create, synchronous=FULL) | ${rps[post]} | ${p99[post]} | $(ratio "${rps[post]}") |"
    echo "| PATCH /guid/{guid} (durable update) | ${rps[patch]} | ${p99[patch]} | $(ratio "${rps[patch]}") |"
    echo "| 90% GET / 10% PATCH | ${rps[mix]} | ${p99[mix]} | $(ratio "${rps[mix]}") |"
} >"$WORK/table.md"

floor() { awk -v a="$1" -v b="$hello_rps" -v f="$2" 'BEGIN { exit !(a >= f * b) }' && echo met || echo MISSED; }
summary="Floors: GET ≥ 0.65× hello-world: $(floor "${rps[get]}" 0.65); POST ≥ 0.25×: $(floor "${rps[post]}" 0.25). \
Request lines written to server.log during the runs: $logged."
cat "$WORK/table.md"
echo
echo "$summary"

if [[ "${RECORD:-0}" == 1 ]]; then
    section="$WORK/section.md"
    {
        echo "## HTTP server"
        echo
        echo "Command: \`RECORD=1 bash bench/http.sh\` (${DURATION} s per run; \`DURATION=\` to change)."
        echo "Servers pinned to core 0 (\`taskset -c 0\`), load from \`taskset -c 1 wrk -t1 -c$CONNECTIONS\`,"
        echo "$RECORDS records prefilled, request logging on (one info line per request to server.log)."
        echo "Every figure is the better of two ${DURATION} s runs (hello-world: one before and one after the server)."
        echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -r);"
        echo "load average before the run $LOAD_BEFORE (other jobs share the machine);"
        echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)."
        echo
        cat "$WORK/table.md"
        echo
        echo "$summary"
        echo
        cat <<'NOTES'
Where the time goes (`perf record -g -p PID` on the pinned server during the runs):

- GET: hyper's parsing and encoding and the socket system calls dominate, as in hello-world. The
  handler adds a cache lookup (no SQLite, no thread hop) and one access-log line. Logging is
  buffered (64 KiB `BufWriter`, flushed every second by a separate thread, never truncating):
  info vs warn level measured the same within noise (about 1-2%). Echoing request lines to
  stderr as well (simplelog's terminal logger writes and flushes every line) cost 5-25% of GET
  throughput with stderr on a pipe, so request lines go to server.log only.
- POST / PATCH (profile of a POST run, server on core 0, quiet machine): the tokio worker takes
  about 54% of the core, 20 points of it in the `writev` of responses (loopback TCP, whose receive
  side is charged to the sender); the writer thread about 46%, half of it writing WAL frames (two
  `pwrite`s per page: every create dirties one random page of the GUID index) and 8 points in
  fdatasync; the checkpointer under 1%. Group commit holds about 31 writes per commit at 64
  connections. So a durable create costs about 70 µs of one core against hello-world's 13 µs:
  the POST floor (0.25x, about 18k creates/s on one core) is missed on a quiet machine
  (0.19-0.22x). Earlier runs that met it did so because other jobs slowed the baseline more
  than the server. Changes that helped, in the library: rowid table (one random page per create
  instead of two), upserts in place for updates (PATCH 8.7k -> 12.7-15.8k req/s), checkpoints on
  their own thread every 10,000 rows. What is left would take halving the per-create system
  calls (a WAL writer that coalesces frame writes, or fewer, larger responses).
- The machine is a shared 2-core VM: figures move by 15-25% between runs; a run that coincides
  with another job's build can be far lower. Hence the better of two runs for every row, the
  baseline included, and the load average printed above.

NOTES
    } >"$section"
    touch BENCHMARKS.md
    # Replace our section (up to the next "## " heading), or append it.
    awk -v section="$section" '
        /^## HTTP server[[:space:]]*$/ { while ((getline line < section) > 0) print line; skipping = 1; done = 1; next }
        skipping && /^## / { skipping = 0 }
        !skipping { print }
        END { if (!done) { if (NR > 0) print ""; while ((getline line < section) > 0) print line } }
    ' BENCHMARKS.md >"$WORK/BENCHMARKS.md"
    cp "$WORK/BENCHMARKS.md" BENCHMARKS.md
    echo "recorded in BENCHMARKS.md" >&2
fi
