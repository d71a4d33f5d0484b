#!/usr/bin/env bash
# Every test of the project: the workspace's Rust tests (unit, integration, property, hostile-client,
# fault and one-cycle crash tests, the store suite on SQLite, PostgreSQL and MariaDB, several servers
# on one database, the examples and walkthrough.sh), the API and CLI tests again on PostgreSQL and on
# MariaDB, the API tests again over HTTPS, a short crash-durability run, the HTTP contract tests
# (schemathesis), and smoke runs of the benchmarks and fuzz targets.
#
# Services: PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and MariaDB on 127.0.0.1:3306 (root,
# no password) — see the README. A test whose service is missing is skipped with a loud line (and
# listed at the end); GUIDSTORE_REQUIRE_SERVICES=1 (set by .ci/run) makes it fail instead.
# This is the README's test command; .ci/run calls it after the lints. Needs network access to
# crates.io and PyPI the first time (schemathesis is installed into target/contract/).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
rm -f "$target/skipped-backend-tests.txt"

step "cargo test --workspace"
cargo test --workspace --locked 2>&1 | tee "$log"

step "the API tests once more, over HTTPS (GUIDSTORE_TEST_TLS=1: certificates made by the harness)"
GUIDSTORE_TEST_TLS=1 cargo test -p guidstore-server --test api --locked 2>&1 | tee -a "$log"

for backend in postgres mysql; do
    step "the API and CLI tests once more, on $backend (GUIDSTORE_TEST_BACKEND=$backend: a fresh database per test)"
    GUIDSTORE_TEST_BACKEND=$backend cargo test -p guidstore-server --test api --locked 2>&1 | tee -a "$log"
    GUIDSTORE_TEST_BACKEND=$backend cargo test -p guidstore-cli --test cli --locked 2>&1 | tee -a "$log"
done

step "library benchmark, smoke run (figures are not checked here)"
GUIDSTORE_BENCH_SECS=0.2 cargo bench -p guidstore --bench store --locked

step "reliability: crash-test (kill -9 x3, SIGTERM x2), 2,000 idle connections"
cargo build --locked -p guidstore-server -p guidstore-reliability
target/debug/crash-test --cycles 3 --server target/debug/guidstore-server
target/debug/crash-test --cycles 2 --sigterm --server target/debug/guidstore-server
target/debug/idle-connections --connections 2000 --server target/debug/guidstore-server

step "contract: schemathesis against docs/openapi.yaml"
GUIDSTORE_SERVER_BIN=target/debug/guidstore-server bash tests/contract/run.sh

step "fuzz targets still compile (stable toolchain; fuzzing itself: fuzz/run-all.sh)"
cargo check --manifest-path fuzz/Cargo.toml --target-dir target/fuzz-check

# Which backend tests ran (by name: sqlite::, postgres::, mysql::) and which were skipped.
for backend in sqlite postgres mysql; do
    ran=$(grep -cE "^test ([a-z_]+::)*$backend::[a-z_0-9]+ \.\.\. ok$" "$log" || true)
    echo "backend suite on $backend: $ran tests passed"
done
if [[ -s "$target/skipped-backend-tests.txt" ]]; then
    echo "SKIPPED (service unreachable): $(wc -l <"$target/skipped-backend-tests.txt") backend tests:"
    sort "$target/skipped-backend-tests.txt" | uniq -c
fi
# One closing line over every cargo test binary (unit, integration, doc tests).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "test-all: %d passed, %d failed\n", passed, failed }' "$log"
