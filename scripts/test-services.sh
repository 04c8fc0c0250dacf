#!/usr/bin/env bash
# Makes sure the services the test suite talks to are installed and running:
# Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 with a role
# "labfleet" (password "labfleet", CREATEDB) for the per-test databases.
# Safe to run again: it only installs or starts what is missing.
set -euo pipefail

log() { printf '[test-services] %s\n' "$*"; }

apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "cannot install $* here: no apt-get; install it yourself and run again"; exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  if command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then
    log "redis: running"; return
  fi
  command -v redis-server >/dev/null || { log "redis: installing"; apt_install redis-server redis-tools; }
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do [ "$(redis-cli -h 127.0.0.1 ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  log "redis: started"
}

ensure_postgres() {
  if ! command -v pg_isready >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    log "postgresql: installing"; apt_install postgresql
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
    log "postgresql: started ($version)"
  else
    log "postgresql: running"
  fi
  # The role the tests use; works with trust or password authentication on 127.0.0.1.
  local sql="DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='labfleet') THEN
      CREATE ROLE labfleet LOGIN CREATEDB PASSWORD 'labfleet'; END IF; END\$\$;"
  if command -v runuser >/dev/null && id postgres >/dev/null 2>&1; then
    runuser -u postgres -- psql -q -d postgres -c "$sql" >/dev/null
  else
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "$sql" >/dev/null
  fi
  log "postgresql: role labfleet ready"
}

ensure_redis
ensure_postgres
