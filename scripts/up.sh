#!/usr/bin/env bash
# `make up`: the whole platform on this machine — the three roles, in dependency order.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/pm2.sh"

require_root
for role in inventory billing gateway; do
  bash "$ROOT/scripts/$role.sh"
done
load_env
pm2_summary
log "crud-master is up: http://localhost:$GATEWAY_PORT  (API docs: http://localhost:$GATEWAY_PORT/docs)"
