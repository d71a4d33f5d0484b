#!/usr/bin/env bash
# Every test of the project: the workspace's Rust tests, then the runnable examples.
# This is the README's test command; .ci/run calls it after the lints.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "cargo test --workspace"
cargo test --workspace --locked

step "library benchmark, smoke run (figures are not checked here)"
GUIDSTORE_BENCH_SECS=0.2 cargo bench -p guidstore --bench store --locked
