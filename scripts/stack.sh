#!/usr/bin/env bash
# The local stack: RocketMQ name server and broker (the Rust implementation), Postgres and Redis,
# all on 127.0.0.1.
#
#   scripts/stack.sh up       install what is missing, start what is not running, wait until ready
#   scripts/stack.sh down     stop what `up` started (and nothing else)
#   scripts/stack.sh status   say what runs
#
# Safe to run twice. The broker's store, logs and config live under .stack/ (git-ignored).
#
# TICKET_BROKER_STORE_TMPFS=1 keeps the broker's store in /dev/shm instead (scripts/test.sh sets
# it: test messages need not outlive the machine, and a store in memory is not refused when the
# disk fills up). The broker refuses every write once the disk holding its store is 90% used;
# `up` says so before it starts a broker there.
#
# TICKET_STACK_PARTS names what `up` starts (default "postgres redis rocketmq"); a private test
# broker sets "rocketmq", so starting one never waits on a busy Postgres.
# TICKET_PG_MAX_CONNECTIONS (default 400) is written to the cluster's conf.d before `up` starts
# Postgres: the tests run up to two systems of four services side by side, each with its pools.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR=${TICKET_STACK_DIR:-$ROOT/.stack}
ROCKETMQ_VERSION=1.0.0
NAMESRV_PORT=${TICKET_NAMESRV_PORT:-9876}
BROKER_PORT=${TICKET_BROKER_PORT:-10911}
PG_PORT=5432
REDIS_PORT=6379
PG_PASSWORD=postgres
PG_MAX_CONNECTIONS=${TICKET_PG_MAX_CONNECTIONS:-400}
DATABASES=(ticket_order ticket_stock ticket_orchestrator ticket_notify)
PARTS=" ${TICKET_STACK_PARTS:-postgres redis rocketmq} "
wants() { [[ $PARTS == *" $1 "* ]]; }
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
if [ "${TICKET_BROKER_STORE_TMPFS:-0}" = 1 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  # One store per stack folder, so a private test broker never shares the main one's.
  BROKER_STORE=/dev/shm/ticket-broker-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)
else
  BROKER_STORE=$STACK_DIR/broker/store
fi
# RocketMQ's diskSpaceWarningLevelRatio: at this share of the disk used, every write is refused.
BROKER_DISK_LIMIT=90

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && return 0
    sleep 0.1
  done
  die "$1 did not listen on 127.0.0.1:$2 within $3 s (logs in $STACK_DIR/logs)"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  log "installing $* from Debian's packages"
  if [ ! -f "$STACK_DIR/.apt-updated" ]; then
    as_root apt-get update -qq
    mkdir -p "$STACK_DIR" && touch "$STACK_DIR/.apt-updated"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------- RocketMQ
install_rocketmq() {
  local missing=()
  [ -x "$CARGO_BIN/rocketmq-namesrv-rust" ] || missing+=("rocketmq-namesrv@$ROCKETMQ_VERSION")
  [ -x "$CARGO_BIN/rocketmq-broker-rust" ] || missing+=("rocketmq-broker@$ROCKETMQ_VERSION")
  [ ${#missing[@]} -eq 0 ] && return 0
  log "building ${missing[*]} with cargo install --locked (25-35 min on 2 cores, once per machine)"
  # Built outside the work tree so `cargo clean` of the project never throws it away.
  (cd / && cargo install --locked "${missing[@]}")
}

write_broker_config() {
  local delays
  delays=$(printf '1s %.0s' {1..18}); delays=${delays% }
  mkdir -p "$BROKER_STORE" "$STACK_DIR/broker" "$STACK_DIR/logs" "$STACK_DIR/namesrv"
  cat >"$STACK_DIR/broker/broker.toml" <<TOML
[broker]
namesrvAddr = "127.0.0.1:$NAMESRV_PORT"
brokerIp1 = "127.0.0.1"
listenPort = $BROKER_PORT
brokerFastFailureEnable = ${TICKET_BROKER_FAST_FAILURE:-true}
storePathRootDir = "$BROKER_STORE"

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "ticket-broker-a"
brokerClusterName = "DefaultCluster"
brokerId = 0

[store]
storePathRootDir = "$BROKER_STORE"
haListenPort = $((BROKER_PORT + 1))
mappedFileSizeCommitLog = 268435456
timerWheelEnable = true
# Eighteen 1 s retry levels: a message whose consumer keeps failing reaches %DLQ% in seconds.
messageDelayLevel = "$delays"
TOML
}

# The share of the disk holding the broker's store that is used, in percent, as the broker
# computes it: (total - available to users) / total.
disk_used_percent() {
  local total avail size
  read -r total avail size < <(stat -f -c '%b %a %S' "$1")
  echo $(((total - avail) * 100 / total))
}

check_broker_disk() {
  local used; used=$(disk_used_percent "$BROKER_STORE")
  if ((used >= BROKER_DISK_LIMIT)); then
    die "the disk holding $BROKER_STORE is $used% used; the broker refuses every write from $BROKER_DISK_LIMIT% on. Free some space (or set TICKET_BROKER_STORE_TMPFS=1 to keep the store in /dev/shm)"
  elif ((used >= BROKER_DISK_LIMIT - 5)); then
    log "warning: the disk holding $BROKER_STORE is $used% used; the broker refuses every write from $BROKER_DISK_LIMIT% on"
  fi
}

start_rocketmq() {
  if port_open "$NAMESRV_PORT"; then
    log "name server already listens on $NAMESRV_PORT"
  else
    mkdir -p "$STACK_DIR/namesrv" "$STACK_DIR/logs"
    log "starting name server on 127.0.0.1:$NAMESRV_PORT"
    (cd "$STACK_DIR/namesrv" || exit 1; HOME="$STACK_DIR/namesrv" ROCKETMQ_HOME="$STACK_DIR/namesrv" \
      nohup "$CARGO_BIN/rocketmq-namesrv-rust" --rocketmqHome "$STACK_DIR/namesrv" \
      --bindAddress 127.0.0.1 --listenPort "$NAMESRV_PORT" \
      >"$STACK_DIR/logs/namesrv.log" 2>&1 &
      echo $! >"$STACK_DIR/namesrv.pid")
    wait_port "name server" "$NAMESRV_PORT" 30
  fi
  if port_open "$BROKER_PORT"; then
    log "broker already listens on $BROKER_PORT"
  else
    write_broker_config
    check_broker_disk
    echo "$BROKER_STORE" >"$STACK_DIR/broker/store.path"
    log "starting broker on 127.0.0.1:$BROKER_PORT"
    (cd "$STACK_DIR/broker" || exit 1; HOME="$STACK_DIR/broker" ROCKETMQ_HOME="$STACK_DIR/broker" \
      nohup "$CARGO_BIN/rocketmq-broker-rust" -c "$STACK_DIR/broker/broker.toml" \
      >"$STACK_DIR/logs/broker.log" 2>&1 &
      echo $! >"$STACK_DIR/broker.pid")
    wait_port "broker" "$BROKER_PORT" 60
  fi
  # Listening is not ready: clients find the broker only once it registered with the name server.
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q "Register broker to name" "$STACK_DIR/logs/broker.log" 2>/dev/null && return 0
    [ -f "$STACK_DIR/broker.pid" ] || return 0 # a broker this script did not start: trust it
    sleep 0.1
  done
  die "the broker did not register with the name server within 60 s (see $STACK_DIR/logs/broker.log)"
}

# ---------------------------------------------------------------- Postgres
pg_cluster() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

start_postgres() {
  if ! port_open "$PG_PORT"; then
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(pg_cluster)" ]; then
      apt_install postgresql
    fi
    local version; version=$(pg_cluster)
    [ -n "$version" ] || die "no Postgres cluster under /etc/postgresql after installing postgresql"
    # Room for the connections of the services under test (Debian's default is 100).
    printf 'max_connections = %s\n' "$PG_MAX_CONNECTIONS" |
      as_root tee "/etc/postgresql/$version/main/conf.d/ticket.conf" >/dev/null
    log "starting Postgres $version on 127.0.0.1:$PG_PORT (max_connections $PG_MAX_CONNECTIONS)"
    as_root pg_ctlcluster "$version" main start
    echo "$version" >"$STACK_DIR/postgres.started"
    wait_port "Postgres" "$PG_PORT" 30
  else
    local have
    have=$(PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -U postgres -d postgres -tAc 'show max_connections' 2>/dev/null || true)
    if [ -n "$have" ] && [ "$have" -lt "$PG_MAX_CONNECTIONS" ]; then
      log "note: the running Postgres allows $have connections (want $PG_MAX_CONNECTIONS); the test suite may run out — restart it through this script"
    fi
  fi
  local i
  for ((i = 0; i < 100; i++)); do
    PGPASSWORD=$PG_PASSWORD pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.2
  done
  # Password login on 127.0.0.1 for the services and tests.
  if ! PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    log "setting the postgres user's password for local TCP logins"
    as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD '$PG_PASSWORD'\"" >/dev/null
  fi
  local db
  for db in "${DATABASES[@]}"; do
    if [ -z "$(PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname = '$db'")" ]; then
      log "creating database $db"
      PGPASSWORD=$PG_PASSWORD psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
    fi
  done
}

# ---------------------------------------------------------------- Redis
start_redis() {
  if port_open "$REDIS_PORT"; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  mkdir -p "$STACK_DIR/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --dir "$STACK_DIR/redis" --pidfile "$STACK_DIR/redis.pid" \
    --logfile "$STACK_DIR/logs/redis.log" --save "" --appendonly no
  wait_port "Redis" "$REDIS_PORT" 10
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null
}

stop_pidfile() { # name file
  [ -f "$2" ] || return 0
  local pid; pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$2"
}

status_line() { if port_open "$2"; then echo "$1: up on 127.0.0.1:$2"; else echo "$1: down"; fi; }

case "${1:-}" in
  up)
    mkdir -p "$STACK_DIR/logs"
    if wants postgres; then
      command -v psql >/dev/null || apt_install postgresql-client
      start_postgres
    fi
    if wants redis; then start_redis; fi
    if wants rocketmq; then
      install_rocketmq
      start_rocketmq
    fi
    log "ready: name server 127.0.0.1:$NAMESRV_PORT, broker 127.0.0.1:$BROKER_PORT, Postgres 127.0.0.1:$PG_PORT, Redis 127.0.0.1:$REDIS_PORT"
    ;;
  down)
    stop_pidfile broker "$STACK_DIR/broker.pid"
    # A store in memory is gone with the broker (on disk it stays for the next `up`).
    if [ -f "$STACK_DIR/broker/store.path" ]; then
      store=$(cat "$STACK_DIR/broker/store.path")
      case "$store" in /dev/shm/ticket-broker-*) rm -rf "$store" ;; esac
      rm -f "$STACK_DIR/broker/store.path"
    fi
    stop_pidfile "name server" "$STACK_DIR/namesrv.pid"
    stop_pidfile Redis "$STACK_DIR/redis.pid"
    if [ -f "$STACK_DIR/postgres.started" ]; then
      log "stopping Postgres"
      as_root pg_ctlcluster "$(cat "$STACK_DIR/postgres.started")" main stop || true
      rm -f "$STACK_DIR/postgres.started"
    fi
    ;;
  status)
    status_line "name server" "$NAMESRV_PORT"
    status_line broker "$BROKER_PORT"
    status_line Postgres "$PG_PORT"
    status_line Redis "$REDIS_PORT"
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
