# The set-up every benchmark script shares; sourced, not run: `source "$(dirname "$0")/lib.sh"`.
#
# After sourcing: ROOT (the checkout, also the working directory), SCRIPT (bench/http's wrk
# workload), BIN (target/release), WORK (a temporary directory, removed on exit), LOAD_BEFORE (the
# load average when the script began), and the maps PIDS, URLS and STARTUP keyed by a server's name.
# On exit every process in PIDS is killed, then the script's own `on_exit` runs if it defines one
# (to drop a database), then WORK is removed. Servers are pinned to core 0, load generators to
# core 1; only 127.0.0.1 is ever a target.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$ROOT/bench/http/workload.lua"
BIN="$ROOT/target/release"
CONNECTIONS=${CONNECTIONS:-64}
cd "$ROOT"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d)
declare -A PIDS URLS STARTUP

bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    if declare -F on_exit >/dev/null; then on_exit || true; fi
    rm -rf "$WORK"
}
trap bench_cleanup EXIT

# need TOOL...: fails unless every TOOL is on the PATH; wrk is installed with apt-get if missing.
need() {
    local tool
    for tool in "$@"; do
        if [[ "$tool" == wrk ]] && ! command -v wrk >/dev/null; then
            echo "installing wrk" >&2
            apt-get update -qq && apt-get install -y -qq wrk >/dev/null
        fi
        command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
    done
}

# start NAME COMMAND...: runs COMMAND pinned to core 0 and waits (up to 20 s) for its
# "listening on URL" line; sets PIDS[NAME], URLS[NAME] and STARTUP[NAME] (ms to that line).
start() {
    local name=$1 started; shift
    rm -f "$WORK/$name.out"
    started=$(date +%s%N)
    taskset -c 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS[$name]=$!
    for _ in $(seq 4000); do
        if grep -q '^listening on ' "$WORK/$name.out" 2>/dev/null; then
            STARTUP[$name]=$((($(date +%s%N) - started) / 1000000))
            URLS[$name]=$(sed -n 's/^listening on //p' "$WORK/$name.out")
            return
        fi
        sleep 0.005
    done
    echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

# server NAME FLAGS...: a guidstore-server (release) on 127.0.0.1, port 0, logging to
# WORK/NAME.log, started as `start` does.
server() {
    local name=$1; shift
    start "$name" "$BIN/guidstore-server" --listen 127.0.0.1:0 --log-file "$WORK/$name.log" "$@"
}

# stop NAME [EXPECTED_STATUS]: SIGTERM, then the exit status must be EXPECTED_STATUS (default 0:
# guidstore-server exits 0 on SIGTERM).
stop() {
    local status=0
    kill -TERM "${PIDS[$1]}"
    wait "${PIDS[$1]}" || status=$?
    unset "PIDS[$1]"
    if [[ "$status" != "${2:-0}" ]]; then echo "$1 exited with $status" >&2; exit 1; fi
}

# measure NAME MODE SECONDS [GUIDFILE]: one wrk run (bench/http/workload.lua, MODE get, post,
# patch, mix, hello, …; GUIDs from GUIDFILE, default WORK/guids.txt) against URLS[NAME] from
# core 1; prints "req/s p99_ms"; fails on any non-2xx answer or socket error.
measure() {
    local line rps p99 bad errors
    line=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$3"s --timeout 5s -s "$SCRIPT" "${URLS[$1]}" \
        -- "$2" "${4:-$WORK/guids.txt}" | grep '^RESULT')
    read -r _ rps p99 bad errors <<<"$line"
    if [[ "$bad" != 0 || "$errors" != 0 ]]; then
        echo "$1 $2: $bad non-2xx responses, $errors socket errors" >&2; exit 1
    fi
    echo "$rps $p99"
}

# median NUMBER...: the median of the arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# free_port: a TCP port of 127.0.0.1 free at the time of the call.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# machine_lines: the "Machine: …" and "load average … commit …" lines of a recorded section.
machine_lines() {
    echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -r);"
    echo "load average before the run $LOAD_BEFORE; commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)."
}

# record_section TITLE FILE: replaces the section "## TITLE" of BENCHMARKS.md (up to the next
# "## " heading) with FILE, which starts with that heading; appends FILE when there is none.
record_section() {
    python3 - "$1" "$2" "$ROOT/BENCHMARKS.md" <<'PY'
import re, sys
title, section_file, path = sys.argv[1:4]
section = open(section_file).read().rstrip() + "\n"
text = open(path).read()
pattern = re.compile(r"^## " + re.escape(title) + r"[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
else:
    text = text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
    echo "recorded in BENCHMARKS.md (\"## $1\")" >&2
}
