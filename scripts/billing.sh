#!/usr/bin/env bash
# Role billing (billing-vm, or part of `make up`): RabbitMQ with the platform's vhost and user,
# PostgreSQL database `orders`, migrations, and the billing_app consumer under PM2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/postgres.sh"
source "$ROOT/scripts/rabbitmq.sh"
source "$ROOT/scripts/pm2.sh"
source "$ROOT/scripts/firewall.sh"

require_root
bash "$ROOT/scripts/env.sh"
load_env
python_env --inexact --package billing
pm2_install
firewall_apply "$BILLING_PORT" "$RABBITMQ_PORT"
rabbitmq_start
rabbitmq_vhost "$RABBITMQ_VHOST" "$RABBITMQ_USER" "$RABBITMQ_PASSWORD"
postgres_start
postgres_database "$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD"
log "migrating the orders database"
(cd "$ROOT/services/billing" && quietly "$VENV/bin/alembic" -c alembic.ini upgrade head)
log "billing_queue and its dead letters as quorum queues"
(cd "$ROOT/services/billing" && quietly "$VENV/bin/python" -m billing queues migrate)
warn_if_exposed BILLING_HOST "$BILLING_HOST"
pm2_start billing_app "http://$(local_address "$BILLING_HOST"):$BILLING_PORT/health"
