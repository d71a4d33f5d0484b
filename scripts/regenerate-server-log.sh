#!/usr/bin/env bash
# Regenerates the top-level server.log from a real run: builds the release server, starts it on a
# free port with a fresh database, runs examples/walkthrough.sh against it, stops it with SIGTERM
# and keeps its log.
#
#   scripts/regenerate-server-log.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p guidstore-server
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -f server.log

target/release/guidstore-server --listen 127.0.0.1:0 --db "$work/guidstore.db" --log-file server.log \
  --log-level debug >"$work/stdout" 2>"$work/stderr" &
server=$!

url=""
for _ in $(seq 100); do
  url="$(sed -n 's/^listening on //p' "$work/stdout")"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start" >&2; kill "$server"; exit 1; }

status=0
examples/walkthrough.sh "$url" >"$work/walkthrough" || status=$?
kill -TERM "$server"
wait "$server" || { echo "the server exited with status $?" >&2; exit 1; }
[ "$status" -eq 0 ] || { cat "$work/walkthrough" >&2; echo "walkthrough.sh failed" >&2; exit 1; }
echo "server.log: $(wc -l <server.log) lines from $(grep -c 'expect' "$work/walkthrough") walkthrough requests"
