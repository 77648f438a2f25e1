#!/usr/bin/env bash
# Role billing (billing-vm, or part of `make up`): RabbitMQ with the platform's vhost and user,
# PostgreSQL database `orders`, migrations, and the billing_app consumer under PM2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/postgres.sh"
source "$ROOT/scripts/rabbitmq.sh"
source "$ROOT/scripts/pm2.sh"

require_root
bash "$ROOT/scripts/env.sh"
load_env
python_env --inexact --package billing
pm2_install
rabbitmq_start
rabbitmq_vhost "$RABBITMQ_VHOST" "$RABBITMQ_USER" "$RABBITMQ_PASSWORD"
postgres_start
postgres_database "$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD"
(cd "$ROOT/services/billing" && "$VENV/bin/alembic" -c alembic.ini upgrade head)
pm2_start billing_app "http://127.0.0.1:$BILLING_PORT/health"
