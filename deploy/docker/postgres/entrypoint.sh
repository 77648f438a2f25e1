#!/bin/sh
# First start (empty $PGDATA): initdb, then the service's user and database. Every start: run
# PostgreSQL in the foreground, reachable over the container network with a password only.
set -eu
: "${POSTGRES_DB:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
    --username=postgres "$PGDATA" >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  # Through stdin, so that the password never shows in a process list.
  psql -q -v ON_ERROR_STOP=1 -d postgres <<SQL
\set usr '$POSTGRES_USER'
\set pw '$POSTGRES_PASSWORD'
\set db '$POSTGRES_DB'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'usr', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'usr') \gexec
SQL
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: created database $POSTGRES_DB owned by $POSTGRES_USER"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
