#!/usr/bin/env bash
# Role gateway (gateway-vm, or part of `make up`): the api_gateway under PM2. Run it after the
# inventory and billing roles: its /health needs the broker and inventory.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/pm2.sh"

require_root
bash "$ROOT/scripts/env.sh"
load_env
python_env --inexact --package gateway
pm2_install
pm2_start api_gateway "http://$(local_address "$GATEWAY_HOST"):$GATEWAY_PORT/health"
writes_notice
