#!/usr/bin/env bash
# Makes sure what the test suite needs is installed and running: PostgreSQL on
# 127.0.0.1:5432 (trust auth for user postgres), Redis on 127.0.0.1:6379, python3 and node.
# Starts what is stopped, installs (Debian packages) what is missing. Safe to run again.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null \
    || { as_root apt-get update >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" && return 0; sleep 0.2; done
  log "$what did not come up"; return 1
}

ensure_postgres() {
  if postgres_up; then return; fi
  command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    as_root pg_createcluster "$version" main >/dev/null
  fi
  local conf=/etc/postgresql/$version/main
  # Tests connect over TCP as user postgres without a password.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for PostgreSQL postgres_up
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if redis_up; then return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for Redis redis_up
}

ensure_runtimes() {
  command -v python3 >/dev/null || apt_install python3
  command -v node >/dev/null || apt_install nodejs
  command -v pg_isready >/dev/null || apt_install postgresql-client
  command -v redis-cli >/dev/null || apt_install redis-tools
}

ensure_runtimes
ensure_postgres
ensure_redis
log "PostgreSQL, Redis, python3 and node are ready"
