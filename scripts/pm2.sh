#!/usr/bin/env bash
# Node.js and PM2 (root's daemon, so `sudo pm2 list` shows the apps), and starting one app.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ECOSYSTEM="$ROOT/deploy/pm2/ecosystem.config.js"

pm2_install() {
  node_install
  if ! command -v pm2 >/dev/null; then
    log "installing PM2 from npm"
    npm install -g --no-fund --no-audit pm2 >/dev/null
  fi
}

# PM2 runs with a clean environment: the services read .env themselves, and an environment
# captured by PM2 would outlive later edits of .env.
pm2_clean() {
  env -i PATH="$PATH" HOME=/root PM2_HOME=/root/.pm2 pm2 "$@"
}

# Online, and run from this checkout (not from another clone that registered the same name).
pm2_is_online() {
  pm2_clean jlist 2>/dev/null | APP="$1" ROOT="$ROOT" python3 -c \
    'import json,os,sys; sys.exit(0 if any(p["name"]==os.environ["APP"] and p["pm2_env"]["status"]=="online" and p["pm2_env"].get("pm_cwd","").startswith(os.environ["ROOT"] + "/") for p in json.load(sys.stdin)) else 1)'
}

# Start an app of the ecosystem unless it already runs, then wait for its /health. A stopped
# app, or one of another checkout, is deleted first: PM2 would restart its old definition.
pm2_start() {
  local app=$1 health_url=$2
  if pm2_is_online "$app"; then
    log "$app already running"
  else
    log "starting $app under PM2"
    pm2_clean delete "$app" >/dev/null 2>&1 || true
    pm2_clean start "$ECOSYSTEM" --only "$app" >/dev/null
    pm2_clean save --force >/dev/null
  fi
  wait_http "$health_url" 90
}
