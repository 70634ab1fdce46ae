#!/usr/bin/env bash
# Runs the whole test suite against the real stack (RocketMQ, Postgres, Redis on 127.0.0.1),
# bringing the stack up first (installing what is missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/stack.sh up
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
# The service binaries are started by some tests as real processes.
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
