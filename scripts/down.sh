#!/usr/bin/env bash
# `make down`: stop the three apps (PostgreSQL and RabbitMQ keep running, data is kept).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/pm2.sh"

require_root
command -v pm2 >/dev/null || exit 0
pm2_clean stop "$ECOSYSTEM" >/dev/null 2>&1 || true
pm2_clean save --force >/dev/null
log "crud-master stopped (pm2 list shows the apps as stopped; make up starts them again)"
