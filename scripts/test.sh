#!/usr/bin/env bash
# `make test`: start what the tests need, apart from anything `make up` runs, then run every test.
# Own databases (movies_test, orders_test), own RabbitMQ vhost and user, own ports (1808x).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/postgres.sh"
source "$ROOT/scripts/rabbitmq.sh"
source "$ROOT/scripts/api-tools.sh"
source "$ROOT/scripts/pm2.sh"

require_root
python_env
postgres_start
rabbitmq_start
api_tools_install
pm2_install

bash "$ROOT/scripts/env.sh" "$ROOT/.env.test" \
  INVENTORY_PORT=18080 BILLING_PORT=18081 GATEWAY_PORT=18082 \
  INVENTORY_HOST=127.0.0.1 BILLING_HOST=127.0.0.1 GATEWAY_HOST=127.0.0.1 \
  INVENTORY_URLS=http://127.0.0.1:18080 BILLING_URL=http://127.0.0.1:18081 \
  INVENTORY_DB_NAME=movies_test INVENTORY_DB_USER=movies_test \
  BILLING_DB_NAME=orders_test BILLING_DB_USER=orders_test \
  RABBITMQ_VHOST=crud_master_test RABBITMQ_USER=crud_master_test
load_env "$ROOT/.env.test"
postgres_database "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
postgres_database "$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD"
rabbitmq_vhost "$RABBITMQ_VHOST" "$RABBITMQ_USER" "$RABBITMQ_PASSWORD"

cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
log "pytest"
exec "$VENV/bin/pytest" "$@"
