#!/usr/bin/env bash
# Role inventory (inventory-vm, or part of `make up`): PostgreSQL database `movies`, migrations,
# and the inventory_app under PM2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/postgres.sh"
source "$ROOT/scripts/pm2.sh"
source "$ROOT/scripts/firewall.sh"

require_root
bash "$ROOT/scripts/env.sh"
load_env
python_env --inexact --package inventory
pm2_install
firewall_apply "$INVENTORY_PORT"
postgres_start
postgres_database "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
log "migrating the movies database"
(cd "$ROOT/services/inventory" && quietly "$VENV/bin/alembic" -c alembic.ini upgrade head)
warn_if_exposed INVENTORY_HOST "$INVENTORY_HOST"
pm2_start inventory_app "http://$(local_address "$INVENTORY_HOST"):$INVENTORY_PORT/health"
