#!/usr/bin/env bash
# Brings up the stack, builds and starts the four services, runs a short demo flash sale
# (`ticketctl demo`: a few hundred tickets, a few thousand buyers, some paying, some cancelling,
# some letting the payment deadline pass) and prints what happened. The services keep running
# for you to explore until Ctrl-C; with `--exit` they stop after the demo. With `--release`
# the services and the demo are release builds (the figures in the README come from one). The
# stack keeps running either way (`scripts/stack.sh down` stops it).
#
# The demo's payment deadline is 20 s (TICKET_ORCHESTRATOR_SAGA__PAYMENT_WINDOW_MS), so the
# buyers who let it pass are cancelled within the run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

exit_after=false
profile=debug
for arg in "$@"; do
  case "$arg" in
    --exit) exit_after=true ;;
    --release) profile=release ;;
    *) echo "usage: scripts/run.sh [--release] [--exit]" >&2; exit 2 ;;
  esac
done

scripts/stack.sh up
if [ "$profile" = release ]; then
  cargo build --release --workspace --bins
else
  cargo build --workspace --bins
fi
LOGS="$ROOT/.stack/logs"
mkdir -p "$LOGS"
pids=()
stop() {
  echo "stopping services"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap stop INT TERM EXIT
# The development profile: its default tokens, which `ticketctl` and docs/GRPCURL.md use
# (docs/SECURITY.md).
for prefix in TICKET_ORDER TICKET_STOCK TICKET_ORCHESTRATOR TICKET_NOTIFY; do
  export "${prefix}_PROFILE=${PROFILE:-dev}"
done
export TICKET_ORCHESTRATOR_SAGA__PAYMENT_WINDOW_MS=${TICKET_ORCHESTRATOR_SAGA__PAYMENT_WINDOW_MS:-20000}
# Notifications go to the log channel, rendered from their templates with the order (order-svc)
# and its show (stock-svc).
export TICKET_NOTIFY_ORDERS__ADDR=${TICKET_NOTIFY_ORDERS__ADDR:-http://127.0.0.1:50051}
for svc in order-svc stock-svc orchestrator notify-svc; do
  "target/$profile/$svc" >"$LOGS/$svc.log" 2>&1 &
  pids+=($!)
done
for port in 50051 50052 50053 50054; do
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
echo "demo flash sale:"
"target/$profile/ticketctl" demo
"$exit_after" && exit 0
cat <<INFO
order-svc     grpc://127.0.0.1:50051   http://127.0.0.1:9100/metrics   (log: .stack/logs/order-svc.log)
stock-svc     grpc://127.0.0.1:50052   http://127.0.0.1:9101/metrics   (log: .stack/logs/stock-svc.log)
orchestrator  grpc://127.0.0.1:50053   http://127.0.0.1:9102/metrics   (log: .stack/logs/orchestrator.log)
notify-svc    grpc://127.0.0.1:50054   http://127.0.0.1:9103/metrics   (log: .stack/logs/notify-svc.log)
try: grpcurl -plaintext 127.0.0.1:50051 list
Ctrl-C stops the services.
INFO
wait
