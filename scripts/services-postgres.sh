#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster for the tests.
#
#   scripts/services-postgres.sh start ENVFILE   # install if missing, start, wait, write ENVFILE
#   scripts/services-postgres.sh stop ENVFILE    # stop what ENVFILE's start started, remove its data
#
# `start` writes `export VAR=value` lines to ENVFILE (use a file of its own,
# not the one scripts/services.sh writes); source it before the tests:
#   FSX_TEST_PG_URL   postgres://fsx:PASSWORD@127.0.0.1:PORT/postgres
#   FSX_PG_PID        the postmaster's pid
#   FSX_PG_DIR        the cluster's temporary directory (data, socket, log)
#
# The cluster is created with initdb in a fresh temporary directory, listens
# on a free port of 127.0.0.1 only, and has one superuser role `fsx` with a
# random password (scram-sha-256, as a real deployment would). PostgreSQL
# refuses to run as root, so as root it runs as the `postgres` user.
# Durability of this throwaway data is not under test: fsync is off.
# Readiness is a real password login polled with a deadline, never a fixed
# sleep. Idempotent: `start` with an ENVFILE whose cluster still answers does
# nothing; `stop` of a stopped cluster succeeds.
set -Eeuo pipefail

usage() {
  echo "usage: $0 start|stop ENVFILE" >&2
  exit 2
}

[ $# -eq 2 ] || usage
action=$1
envfile=$2

log() { echo "services-postgres: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The newest installed server's bin directory.
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && echo "$d"
}

install_missing() {
  if ! pg_bin >/dev/null; then
    log "installing postgresql"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pg_bin >/dev/null || { log "no initdb/postgres under /usr/lib/postgresql/*/bin after install"; return 1; }
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Run a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# login_probe BIN PORT PASSWORD: a real password login and query.
login_probe() {
  PGPASSWORD=$3 PGCONNECT_TIMEOUT=3 "$1/psql" -X -q -h 127.0.0.1 -p "$2" -U fsx -d postgres -tAc 'SELECT 1' 2>/dev/null |
    grep -qx 1
}

# The postmaster's pid from its pid file, if the server wrote it.
postmaster_pid() {
  [ -f "$1/data/postmaster.pid" ] && head -1 "$1/data/postmaster.pid"
}

already_running() {
  [ -f "$envfile" ] || return 1
  (
    # shellcheck disable=SC1090
    . "$envfile"
    [ -n "${FSX_PG_PID:-}" ] && kill -0 "$FSX_PG_PID" 2>/dev/null || exit 1
    [ -n "${FSX_TEST_PG_URL:-}" ] || exit 1
    bin=$(pg_bin) || exit 1
    # postgres://fsx:PASSWORD@127.0.0.1:PORT/postgres
    rest=${FSX_TEST_PG_URL#postgres://fsx:}
    password=${rest%%@*}
    port=${rest#*@127.0.0.1:}
    port=${port%%/*}
    login_probe "$bin" "$port" "$password"
  )
}

start() {
  if already_running; then
    log "the cluster from $envfile is already running"
    return 0
  fi
  # A stale ENVFILE (cluster gone or half started): clean up what it names.
  stop_quietly
  install_missing
  local bin dir password port pid launcher deadline
  bin=$(pg_bin)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/fsx-pg.XXXXXX")
  # ENVFILE is written as we go, so that `stop` can always clean up what a
  # failed or interrupted `start` left behind.
  echo "export FSX_PG_DIR=$dir" >"$envfile"
  password="fsx-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$password" >"$dir/pw"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$dir"; fi
  if ! as_owner "$bin/initdb" -D "$dir/data" -U fsx --pwfile="$dir/pw" --auth=scram-sha-256 \
    -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    tail -20 "$dir/initdb.log" >&2 || true
    stop_quietly
    return 1
  fi
  rm -f "$dir/pw"
  port=$(free_port)
  as_owner "$bin/postgres" -D "$dir/data" -k "$dir" -p "$port" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c max_connections=200 >"$dir/postgres.log" 2>&1 &
  launcher=$!
  # Bounded polling: the pid file names the postmaster (the launcher may be
  # runuser), and a real login proves the server, the role and the password.
  deadline=$((SECONDS + 60))
  until login_probe "$bin" "$port" "$password"; do
    pid=$(postmaster_pid "$dir" || true)
    if [ -n "$pid" ] && ! grep -q "FSX_PG_PID" "$envfile"; then
      echo "export FSX_PG_PID=$pid" >>"$envfile"
    fi
    if ! kill -0 "$launcher" 2>/dev/null; then
      log "postgres exited during startup"
      tail -20 "$dir/postgres.log" >&2 || true
      stop_quietly
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "postgres not accepting logins after 60s"
      tail -20 "$dir/postgres.log" >&2 || true
      stop_quietly
      return 1
    fi
    sleep 0.1
  done
  pid=$(postmaster_pid "$dir")
  grep -q "FSX_PG_PID" "$envfile" || echo "export FSX_PG_PID=$pid" >>"$envfile"
  echo "export FSX_TEST_PG_URL=postgres://fsx:$password@127.0.0.1:$port/postgres" >>"$envfile"
  log "postgres pid $pid on 127.0.0.1:$port, data in $dir"
}

# Fast shutdown (SIGINT) of a pid whose command line mentions postgres (so
# a stale ENVFILE never kills an unrelated process that reused the pid);
# SIGKILL if it has not stopped after 20 s.
stop_pid() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- postgres || return 0
  kill -INT "$pid" 2>/dev/null || return 0
  for i in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop_quietly() {
  [ -f "$envfile" ] || return 0
  local fields pid dir
  # Read the file in a subshell: its exports must not leak into this shell.
  fields=$(
    # shellcheck disable=SC1090
    . "$envfile"
    echo "${FSX_PG_PID:--} ${FSX_PG_DIR:--}"
  )
  read -r pid dir <<<"$fields"
  # The pid file is the truth if start was interrupted before recording it.
  if [ "$pid" = - ] && [ "$dir" != - ]; then pid=$(postmaster_pid "$dir" || echo -); fi
  [ "$pid" = - ] || stop_pid "$pid"
  case "$dir" in
    */fsx-pg.*) rm -rf "$dir" ;;
  esac
  rm -f "$envfile"
}

case "$action" in
  start) start ;;
  stop) stop_quietly ;;
  *) usage ;;
esac
