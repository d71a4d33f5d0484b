#!/usr/bin/env bash
# The hot read path against Redis (issue 16): GET of a cached record beside hyper's hello-world and
# a Redis GET, and GET again after a burst of creates that nobody reads.
#
#   bash bench/hot.sh              # 3 rounds of 5 s runs; prints the table
#   RECORD=1 bash bench/hot.sh     # also writes it into BENCHMARKS.md ("## Hot reads")
#   ROUNDS=1 DURATION=1 BURST=20000 bash bench/hot.sh   # a smoke run
#
# Needs wrk (installed with apt-get if missing), redis-server and redis-benchmark, taskset. Every
# server is pinned to core 0 (hello-world, guidstore-server with the access log on, a private
# redis-server on a free port, no persistence); the load to core 1: `wrk -t1 -c64` (bench/http's
# workload.lua, GET of random GUIDs of the RECORDS prefilled), `redis-benchmark -t get -c 64 -d 60
# -r RECORDS` on RECORDS keys SET beforehand (60-byte values; a GET of a missing key would be
# cheaper). Only 127.0.0.1 is targeted.
#
# A round: hello-world → guidstore GET → Redis GET → a burst of BURST creates (POST /guid runs
# until BURST were answered: records nobody reads, into a cache of 100,000) → hello-world →
# guidstore GET again. The hit rate of that last GET is from /metrics (guidstore_cache_hits_total and
# _misses_total before and after it); its figure is compared with the GET of the same round.
# Paired runs as in bench/http.sh: ratios are to the hello-world run just before; each figure is
# the median over ROUNDS rounds.
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-10000}
BURST=${BURST:-200000}
need wrk taskset redis-server redis-benchmark redis-cli curl

cargo build --release -q -p guidstore-server --bin guidstore-server --example hello_world --example bench_prefill

# redis_get SECONDS: prints "req/s p99_ms" of redis-benchmark GETs for about SECONDS (the request
# count is sized from the previous run's rate).
REDIS_RATE=50000
redis_get() {
    local line requests
    requests=$((REDIS_RATE * $1))
    line=$(taskset -c 1 redis-benchmark -p "$REDIS_PORT" -t get -c "$CONNECTIONS" -d 60 -r "$RECORDS" -n "$requests" \
        --csv | grep '^"GET"')
    # "GET","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    IFS=, read -r _ rps _ _ _ _ p99 _ <<<"${line//\"/}"
    REDIS_RATE=${rps%.*}
    echo "${rps%.*} $p99"
}

# created_total: creates answered 201 by guidstore-server so far.
created_total() {
    curl -fsS "${URLS[server]}/metrics" \
        | awk '/^guidstore_http_requests_total\{route="\/guid",method="POST",status="201"\}/ { n = $2 } END { print n + 0 }'
}

# metric NAME: the value of an unlabelled metric of guidstore-server.
metric() { curl -fsS "${URLS[server]}/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }

echo "prefilling $RECORDS records" >&2
"$BIN/examples/bench_prefill" "$WORK/guids.db" "$RECORDS" >"$WORK/guids.txt"

start hello "$BIN/examples/hello_world" 127.0.0.1:0
server server --db "$WORK/guids.db" --log-level info --sync normal # the burst is about the cache, not the disk
REDIS_PORT=$(free_port)
taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$WORK/redis.log" 2>&1 &
PIDS[redis]=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
taskset -c 1 redis-benchmark -p "$REDIS_PORT" -t set -c "$CONNECTIONS" -d 60 -r "$RECORDS" -n $((RECORDS * 20)) -q >/dev/null
echo "redis keys: $(redis-cli -p "$REDIS_PORT" dbsize)" >&2
# Warm-up: every server's first run is not measured; the GUIDs enter guidstore's cache.
measure hello hello 2 >/dev/null
measure server get 2 >/dev/null
redis_get 1 >/dev/null

declare -A RPS P99 RATIO
HIT_RATES=""
CREATED=""
for round in $(seq "$ROUNDS"); do
    read -r h_rps h_p99 <<<"$(measure hello hello "$DURATION")"
    read -r g_rps g_p99 <<<"$(measure server get "$DURATION")"
    read -r r_rps r_p99 <<<"$(redis_get "$DURATION")"
    # The burst: POST /guid runs (wrk cannot stop at a count), each sized from the rate so far,
    # until BURST creates have been answered.
    posts_before=$(created_total)
    created=0
    burst_rates=""
    while ((created < BURST)); do
        read -r p_rps _ <<<"$(measure server post "$(awk -v left=$((BURST - created)) -v rate="${p_rps:-10000}" \
            'BEGIN { s = int(left / rate + 0.999); print (s < 1) ? 1 : (s > 10) ? 10 : s }')")"
        burst_rates+="$p_rps "
        created=$(($(created_total) - posts_before))
    done
    read -r ah_rps ah_p99 <<<"$(measure hello hello "$DURATION")"
    hits=$(metric guidstore_cache_hits_total); misses=$(metric guidstore_cache_misses_total)
    read -r a_rps a_p99 <<<"$(measure server get "$DURATION")"
    hit_rate=$(awk -v h="$(( $(metric guidstore_cache_hits_total) - hits ))" -v m="$(( $(metric guidstore_cache_misses_total) - misses ))" \
        'BEGIN { printf "%.2f", 100 * h / (h + m) }')
    echo "  round $round: hello $h_rps, GET $g_rps ($(ratio "$g_rps" "$h_rps")x), Redis GET $r_rps; burst of $created creates \
(req/s: ${burst_rates% }); hello $ah_rps, GET $a_rps ($(ratio "$a_rps" "$ah_rps")x hello, $(ratio "$a_rps" "$g_rps")x before), hit rate $hit_rate%" >&2
    RPS[hello]+="$h_rps "; P99[hello]+="$h_p99 "
    RPS[get]+="$g_rps "; P99[get]+="$g_p99 "; RATIO[get]+="$(ratio "$g_rps" "$h_rps") "
    RPS[redis]+="$r_rps "; P99[redis]+="$r_p99 "; RATIO[redis]+="$(ratio "$r_rps" "$h_rps") "
    RPS[after]+="$a_rps "; P99[after]+="$a_p99 "; RATIO[after]+="$(ratio "$a_rps" "$ah_rps") "
    RATIO[get_redis]+="$(ratio "$g_rps" "$r_rps") "; RATIO[after_before]+="$(ratio "$a_rps" "$g_rps") "
    HIT_RATES+="$hit_rate "; CREATED+="$created "
done
logged=$(grep -c ' /guid' "$WORK/server.log" || true)
kill -TERM "${PIDS[server]}"; wait "${PIDS[server]}"; unset "PIDS[server]"
logged_after_stop=$(grep -c ' /guid' "$WORK/server.log" || true)

# shellcheck disable=SC2086 # the lists are space-separated numbers
row() { echo "| $1 | $(median ${RPS[$2]}) | $(median ${P99[$2]}) | $(median ${RATIO[$2]}) | ${RATIO[$2]% } |"; }
{
    echo "| workload | req/s | p99 (ms) | × hello-world | × hello-world, each round |"
    echo "|---|---:|---:|---:|---|"
    # shellcheck disable=SC2086
    echo "| hello-world baseline (hyper, 20-byte JSON) | $(median ${RPS[hello]}) | $(median ${P99[hello]}) | 1.00 | |"
    row "guidstore GET /guid/{guid} (random of $RECORDS cached, access log on)" get
    row "Redis GET (\`redis-benchmark -t get -c $CONNECTIONS -d 60 -r $RECORDS\`)" redis
    row "guidstore GET after a burst of $BURST creates" after
} >"$WORK/table.md"
# shellcheck disable=SC2086
floor() { awk -v r="$(median ${RATIO[$1]})" -v f="$2" 'BEGIN { exit !(r >= f) }' && echo met || echo MISSED; }
# shellcheck disable=SC2086
summary="GET × Redis GET, each round: ${RATIO[get_redis]% } (median $(median ${RATIO[get_redis]}); ≥ 1.0: $(floor get_redis 1.0)). \
GET × hello-world ≥ 0.8: $(floor get 0.8). After the burst (creates per round: ${CREATED% }): hit rate of the read set \
${HIT_RATES% } % (median $(median ${HIT_RATES})); GET × the GET before it, each round: ${RATIO[after_before]% } \
(median $(median ${RATIO[after_before]}); ≥ 0.9: $(floor after_before 0.9)). \
Request lines in server.log: $logged while running, $logged_after_stop after SIGTERM (a clean stop writes out the buffer)."
cat "$WORK/table.md"
echo
echo "$summary"

if [[ "${RECORD:-0}" == 1 ]]; then
    section="$WORK/section.md"
    {
        echo "## Hot reads"
        echo
        echo "Command: \`RECORD=1 bash bench/hot.sh\` ($ROUNDS rounds of ${DURATION} s runs, bursts of $BURST creates;"
        echo "\`ROUNDS=\`, \`DURATION=\`, \`BURST=\` to change). Servers pinned to core 0 (hello-world, guidstore-server"
        echo "with the access log on, redis-server without persistence), load from core 1 (\`wrk -t1 -c$CONNECTIONS\`,"
        echo "\`redis-benchmark -c $CONNECTIONS\`). A round: hello-world, GET, Redis GET, a burst of creates nobody reads"
        echo "(into the default cache of 100,000 records), hello-world, GET again; ratios to the hello-world run just before."
        machine_lines
        echo
        cat "$WORK/table.md"
        echo
        echo "$summary"
        echo
    } >"$section"
    record_section "Hot reads" "$section"
fi
