#!/usr/bin/env bash
# Role inventory (inventory-vm, or part of `make up`): PostgreSQL database `movies`, migrations,
# and the inventory_app under PM2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/postgres.sh"
source "$ROOT/scripts/pm2.sh"

require_root
bash "$ROOT/scripts/env.sh"
load_env
python_env --inexact --package inventory
pm2_install
postgres_start
postgres_database "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
(cd "$ROOT/services/inventory" && "$VENV/bin/alembic" -c alembic.ini upgrade head)
pm2_start inventory_app "http://127.0.0.1:$INVENTORY_PORT/health"
