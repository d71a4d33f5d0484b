#!/usr/bin/env bash
# Every test of the project: the workspace's Rust tests (unit, integration, property, hostile-client,
# fault and one-cycle crash tests, the examples and walkthrough.sh), the API tests again over HTTPS,
# a short crash-durability run, the HTTP contract tests (schemathesis), and smoke runs of the
# benchmarks and fuzz targets.
# This is the README's test command; .ci/run calls it after the lints. Needs network access to
# crates.io and PyPI the first time (schemathesis is installed into target/contract/).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

step "cargo test --workspace"
cargo test --workspace --locked 2>&1 | tee "$log"

step "the API tests once more, over HTTPS (GUIDSTORE_TEST_TLS=1: certificates made by the harness)"
GUIDSTORE_TEST_TLS=1 cargo test -p guidstore-server --test api --locked 2>&1 | tee -a "$log"

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

# One closing line over every cargo test binary (unit, integration, doc tests).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "test-all: %d passed, %d failed\n", passed, failed }' "$log"
