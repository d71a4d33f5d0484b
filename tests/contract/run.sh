#!/usr/bin/env bash
# Contract test: schemathesis checks a live guidstore-server against docs/openapi.yaml.
#
#   bash tests/contract/run.sh            # bounded run (EXAMPLES=100 per operation, about 30 s)
#   EXAMPLES=200 bash tests/contract/run.sh
#
# Installs schemathesis (pinned) into a venv under target/contract/ once and reuses it; builds
# guidstore-server (debug) unless GUIDSTORE_SERVER_BIN names a binary; starts it on a free
# 127.0.0.1 port with a temporary database; runs every check (no 5xx, status codes, content types,
# headers, response schemas, 405/Allow, negative data rejected, resources gone after DELETE).
# Fails on any failure, and if the server logged a panic or did not exit 0 on SIGTERM.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
venv="$target/contract/venv"
schemathesis_version=4.32.5
examples=${EXAMPLES:-100}
seed=${SEED:-20261125}

if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$schemathesis_version"; then
    echo "contract: installing schemathesis $schemathesis_version into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Debian splits venv support out of python3.
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

server=${GUIDSTORE_SERVER_BIN:-}
if [ -z "$server" ]; then
    cargo build -q -p guidstore-server
    server="$target/debug/guidstore-server"
fi

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A long poll of /events waits at most 1 s: schemathesis waits for every answer.
"$server" --listen 127.0.0.1:0 --db "$work/guidstore.db" --log-file "$work/server.log" --events-max-wait 1s \
    >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 300); do
    grep -q '^listening on http://' "$work/stdout" && break
    kill -0 "$pid" 2>/dev/null || { echo "contract: server exited"; cat "$work/stderr"; exit 1; }
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/stdout" | head -n 1)
[ -n "$url" ] || { echo "contract: server printed no listening line"; exit 1; }
echo "contract: schemathesis $schemathesis_version against $url, $examples examples per operation, seed $seed"

# One worker: with two, hypothesis parses lambda sources (ast.parse) on two threads at once, and
# CPython 3.11.7 (this machine's python3) can then raise "SystemError: AST constructor recursion
# depth mismatch" inside schemathesis (CPython gh-106905, fixed in later releases) — a CI failure
# that says nothing about the server.
status=0
"$venv/bin/st" --no-color --config-file tests/contract/schemathesis.toml run docs/openapi.yaml \
    --url "$url" \
    --checks all \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --report junit --report-dir "$target/contract/report" \
    || status=$?

kill -TERM "$pid"
exit_status=0
wait "$pid" || exit_status=$?
pid=
if grep -Ei 'panicked|\[ERROR\]' "$work/server.log" >/dev/null; then
    echo "contract: server.log has errors:"
    grep -Ei 'panicked|\[ERROR\]' "$work/server.log" | head -20
    status=1
fi
if [ "$exit_status" -ne 0 ]; then
    echo "contract: server exited with $exit_status after SIGTERM"
    status=1
fi
if [ -f "$target/contract/report/junit.xml" ]; then
    echo "contract: junit report in $target/contract/report/junit.xml"
fi
if [ "$status" -eq 0 ]; then echo "contract: passed"; else echo "contract: FAILED"; fi
exit "$status"
