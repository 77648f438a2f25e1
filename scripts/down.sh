#!/usr/bin/env bash
# `make down`: stop the three apps (PostgreSQL and RabbitMQ keep running, data is kept).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/pm2.sh"

require_root
command -v pm2 >/dev/null || { log "PM2 is not installed: nothing runs"; exit 0; }
pm2_daemon
pm2_clean stop "$ECOSYSTEM" >/dev/null 2>&1 || true
quietly pm2_clean save --force
pm2_summary
log "crud-master stopped (data kept; make up starts it again)"
