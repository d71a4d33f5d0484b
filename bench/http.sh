#!/usr/bin/env bash
# HTTP benchmark of guidstore-server against a minimal hyper hello-world (the ceiling).
#
#   bash bench/http.sh            # 5 rounds of 5 s runs; prints the table
#   RECORD=1 bash bench/http.sh   # also writes it into BENCHMARKS.md ("## HTTP server")
#   TLS=1 bash bench/http.sh      # adds GET and POST over HTTPS (a third server, with TLS)
#
# Needs wrk (installed with apt-get if missing) and taskset (util-linux). Servers are pinned to
# core 0 and wrk (one thread, 64 connections) to core 1; only 127.0.0.1 is targeted.
# Workloads: GET of random live GUIDs (10,000 prefilled records), POST /guid (durable creates,
# synchronous=FULL), PATCH, and a 90/10 GET/PATCH mix; request logging on (server.log, info).
# With TLS=1, GET and POST also go to a guidstore-server with --tls-cert/--tls-key (a copy of the
# same prefilled database; a P-256 certificate made with openssl): wrk speaks HTTP/1.1 over TLS with
# keep-alive, so the TLS cost is the record encryption, plus 64 handshakes at the start of a run.
#
# Paired runs: both servers stay up (idle when not measured), and every workload run comes right
# after a hello-world run; its ratio is to that run. On a shared machine the speed of the core
# drifts by tens of percent within minutes; a ratio of two adjacent runs is far steadier than one
# of runs minutes apart. Each figure is the median over ROUNDS rounds.
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
RECORDS=${RECORDS:-10000}
TLS=${TLS:-0}
need wrk taskset
if [[ "$TLS" == 1 ]]; then need openssl; fi

cargo build --release -q -p guidstore-server --bin guidstore-server --example hello_world --example bench_prefill

echo "prefilling $RECORDS records" >&2
"$BIN/examples/bench_prefill" "$WORK/guids.db" "$RECORDS" >"$WORK/guids.txt"

start hello "$BIN/examples/hello_world" 127.0.0.1:0
server server --db "$WORK/guids.db" --log-level info --sync full
measure hello hello 2 >/dev/null
measure server get 2 >/dev/null

# A run is SERVER:MODE; its figures are kept under that key.
RUNS=(server:get server:post server:patch server:mix)
if [[ "$TLS" == 1 ]]; then
    # A CA and a server certificate for 127.0.0.1 signed by it (as in the README's TLS section).
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
        -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$WORK/tls-key.pem" -out "$WORK/tls.csr" 2>/dev/null
    openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" -CAcreateserial -days 2 \
        -copy_extensions copy -out "$WORK/tls.pem" 2>/dev/null
    for file in "$WORK"/guids.db "$WORK"/guids.db-wal; do
        if [[ -f "$file" ]]; then cp "$file" "${file/guids.db/guids-tls.db}"; fi
    done
    start tls "$BIN/guidstore-server" --listen 127.0.0.1:0 --db "$WORK/guids-tls.db" --log-file "$WORK/server-tls.log" \
        --log-level info --sync full --tls-cert "$WORK/tls.pem" --tls-key "$WORK/tls-key.pem"
    curl -fsS --cacert "$WORK/ca.pem" "${URLS[tls]}/healthz" >/dev/null
    measure tls get 2 >/dev/null
    RUNS+=(tls:get tls:post)
fi

declare -A RPS P99 RATIO
for round in $(seq "$ROUNDS"); do
    for run in "${RUNS[@]}"; do
        read -r h_rps h_p99 <<<"$(measure hello hello "$DURATION")"
        read -r w_rps w_p99 <<<"$(measure "${run%%:*}" "${run#*:}" "$DURATION")"
        ratio=$(ratio "$w_rps" "$h_rps")
        echo "  round $round: hello $h_rps req/s, $run $w_rps req/s: ${ratio}x" >&2
        RPS[hello]+="$h_rps "; P99[hello]+="$h_p99 "
        RPS[$run]+="$w_rps "; P99[$run]+="$w_p99 "; RATIO[$run]+="$ratio "
    done
done
if [[ "$TLS" == 1 ]]; then stop tls; fi
stop server
stop hello 143 # no signal handler: killed by SIGTERM
logged=$(grep -c ' /guid' "$WORK/server.log" || true)

# row LABEL MODE: a table row of medians, with each round's ratio.
row() {
    # shellcheck disable=SC2086 # the lists are space-separated numbers
    echo "| $1 | $(median ${RPS[$2]}) | $(median ${P99[$2]}) | $(median ${RATIO[$2]}) | ${RATIO[$2]% } |"
}
# shellcheck disable=SC2086
hello_rps=$(median ${RPS[hello]})
{
    echo "| workload | req/s | p99 (ms) | × hello-world | × hello-world, each round |"
    echo "|---|---:|---:|---:|---|"
    # shellcheck disable=SC2086
    echo "| hello-world baseline (hyper, 20-byte JSON) | $hello_rps | $(median ${P99[hello]}) | 1.00 | |"
    row "GET /guid/{guid} (random of $RECORDS live)" server:get
    row "POST /guid (durable create, synchronous=FULL)" server:post
    row "PATCH /guid/{guid} (durable update)" server:patch
    row "90% GET / 10% PATCH" server:mix
    if [[ "$TLS" == 1 ]]; then
        row "GET /guid/{guid} over HTTPS (HTTP/1.1 over TLS, keep-alive)" tls:get
        row "POST /guid over HTTPS (HTTP/1.1 over TLS, keep-alive)" tls:post
    fi
} >"$WORK/table.md"

# shellcheck disable=SC2086
floor() { awk -v r="$(median ${RATIO[$1]})" -v f="$2" 'BEGIN { exit !(r >= f) }' && echo met || echo MISSED; }
summary="Floors: GET ≥ 0.65× hello-world: $(floor server:get 0.65); POST ≥ 0.25×: $(floor server:post 0.25). \
Request lines written to server.log during the runs: $logged."
if [[ "$TLS" == 1 ]]; then
    # HTTPS over plain HTTP, from the medians of the two rows.
    # shellcheck disable=SC2086
    over() { awk -v a="$(median ${RPS[tls:$1]})" -v b="$(median ${RPS[server:$1]})" 'BEGIN { printf "%.2f", a / b }'; }
    summary+=" HTTPS throughput over plain HTTP: GET $(over get)×, POST $(over post)×."
fi
cat "$WORK/table.md"
echo
echo "$summary"

if [[ "${RECORD:-0}" == 1 ]]; then
    section="$WORK/section.md"
    {
        echo "## HTTP server"
        echo
        echo "Command: \`RECORD=1 TLS=$TLS bash bench/http.sh\` ($ROUNDS rounds of ${DURATION} s runs; \`ROUNDS=\`, \`DURATION=\` to change)."
        if [[ "$TLS" == 1 ]]; then
            echo "The HTTPS rows: a third server with \`--tls-cert\`/\`--tls-key\` (P-256 certificate, rustls with ring) over a"
            echo "copy of the same database; wrk speaks HTTP/1.1 over TLS with keep-alive."
        fi
        echo "Servers pinned to core 0 (\`taskset -c 0\`), load from \`taskset -c 1 wrk -t1 -c$CONNECTIONS\`,"
        echo "$RECORDS records prefilled, request logging on (one info line per request to server.log)."
        echo "Both servers stay up; every workload run comes right after a hello-world run, and its ratio"
        echo "is to that run. Figures are medians over the rounds; the last column has every round's ratio."
        machine_lines
        echo
        cat "$WORK/table.md"
        echo
        echo "$summary"
        echo
        cat <<'NOTES'
Where the time goes (`perf record -g -p PID`, `perf trace -s -p PID` on the pinned server):

- GET: hyper's parsing and encoding and the socket system calls dominate, as in hello-world. The
  handler adds a cache lookup (no SQLite, no thread hop) and one access-log line. Logging is
  buffered (64 KiB `BufWriter`, flushed every second by a separate thread, never truncating).
  Echoing request lines to stderr as well (simplelog's terminal logger writes and flushes every
  line) cost 5-25% of GET throughput with stderr on a pipe, so request lines go to server.log only.
- POST (profile of a POST run on core 0): the tokio worker takes about 55-60% of the core, 22
  points of it in the `writev` of responses (loopback TCP, whose receive side and the wake-up of
  wrk are charged to the sender); the writer thread 26-38% (SQLite's B-tree work, one `pwrite`
  per commit, `fdatasync` about 7 points); the core is idle 10-14% of the time, while every
  connection's request waits for an `fdatasync`. A durable create costs about 4x a hello-world
  request: the floor sits at the edge of what the hardware gives, and a run's ratio moves with
  the machine (see each round's ratio).
- What moved POST, each change measured: the WAL now starts over after every checkpoint (it grew
  by about 40 MB a second under creates, to 800 MB in 20 s, because a passive checkpoint never
  caught up); the write connection writes a commit's WAL frames in one call through its own VFS
  (SQLite writes two per page: 28,173 `pwrite` calls in 3 s became 1,206; the writer's share of
  the core fell from 47% to 26%); the checkpointer syncs the database file before the step that
  holds writes off, which shrank that pause from 24-33 ms to 2-7 ms every ~0.7 s. Earlier: a rowid table (one random page per create instead of
  two), updates in place, checkpoints on their own thread.
- Tried and dropped: syncing on a separate thread and answering after the sync, so the next
  batch is written during the flush (idle fell by 2-3 points, throughput did not move: the extra
  thread's context switches ate it); a 64 MiB page cache for the writer (no more `pread` of index
  pages, but SQLite scans the whole cache's hash table at every commit: 14% of the core at
  300,000 records, POST fell from 15.7k to 10.2k req/s); `mmap_size` on the writer; glibc malloc
  tunables; a larger or no checkpoint interval. With SQLite's default 2 MiB cache the writer
  spends about 7% of the core in `pread` of index pages once the index outgrows it.
- The machine is a shared 2-core VM whose speed drifts by tens of percent within minutes, hence
  the paired runs and medians; the load average before the run is printed above.

NOTES
    } >"$section"
    record_section "HTTP server" "$section"
fi
