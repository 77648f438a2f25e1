#!/usr/bin/env bash
# PostgreSQL from Debian: install, start, and create a database owned by a dedicated user.
#   scripts/postgres.sh DB_NAME DB_USER DB_PASSWORD    (password read from the caller's env file)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

postgres_start() {
  apt_install postgresql postgresql-contrib
  if has_systemd; then
    systemctl enable --now postgresql >/dev/null
  else
    local version cluster
    while read -r version cluster _; do
      pg_ctlcluster "$version" "$cluster" status >/dev/null 2>&1 || {
        log "starting PostgreSQL $version/$cluster"
        quietly without_inherited_fds pg_ctlcluster "$version" "$cluster" start
      }
    done < <(pg_lsclusters --no-header)
  fi
  local deadline=$((SECONDS + 60))
  until runuser -u postgres -- pg_isready -q; do
    [ $SECONDS -lt $deadline ] || die "PostgreSQL did not start within 60s"
    sleep 0.5
  done
}

# Role and database, created when absent; the password always follows the env file.
postgres_database() {
  local db=$1 user=$2 password=$3
  check_identifier "$db"; check_identifier "$user"
  # Through stdin, so the password never shows in the process list.
  runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres <<SQL
\set db '$db'
\set usr '$user'
\set pw '$password'
SELECT format('CREATE ROLE %I LOGIN', :'usr') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'usr') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'usr', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'usr') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  postgres_start
  [ $# -eq 0 ] || postgres_database "$@"
fi
