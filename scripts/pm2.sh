#!/usr/bin/env bash
# Node.js and PM2 (root's daemon, so `sudo pm2 list` shows the apps), and starting one app.
# PM2_HOME selects the daemon (default: root's, /root/.pm2); tests give a private one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ECOSYSTEM="$ROOT/deploy/pm2/ecosystem.config.js"
PM2_HOME=${PM2_HOME:-/root/.pm2}
PM2_APPS=(inventory_app billing_app api_gateway)

pm2_install() {
  node_install
  if ! command -v pm2 >/dev/null; then
    log "installing PM2 from npm"
    quietly npm install -g --no-fund --no-audit pm2
  fi
}

# PM2 runs with a clean environment: the services read .env themselves, and an environment
# captured by PM2 would outlive later edits of .env.
pm2_clean() {
  env -i PATH="$PATH" HOME=/root PM2_HOME="$PM2_HOME" pm2 "$@"
}

# The daemon, started quietly when it is not running (after every boot): otherwise the first
# pm2 command prints its "Spawning PM2 daemon" lines on stdout, ahead of its real answer.
pm2_daemon() {
  quietly pm2_clean ping
}

# One app's status (online, stopped, errored…), "absent" when PM2 does not know it, "elsewhere"
# when it runs from another checkout that registered the same name.
pm2_status() {
  pm2_daemon
  pm2_clean jlist 2>/dev/null | APP="$1" ROOT="$ROOT" python3 -c '
import json, os, sys
# jlist prints its JSON on one line; anything PM2 says before it is not JSON.
lines = [line for line in sys.stdin.read().splitlines() if line.startswith("[")]
apps = [p for p in json.loads(lines[-1]) if p["name"] == os.environ["APP"]] if lines else []
if not apps:
    print("absent")
elif not apps[0]["pm2_env"].get("pm_cwd", "").startswith(os.environ["ROOT"] + "/"):
    print("elsewhere")
else:
    print(apps[0]["pm2_env"]["status"])
'
}

pm2_is_online() {
  [ "$(pm2_status "$1")" = online ]
}

# Start an app of the ecosystem unless it already runs, then wait for its /health. A stopped
# app, or one of another checkout, is deleted first: PM2 would restart its old definition.
# Where systemd boots the machine, PM2 is registered with it so the apps come back after a reboot.
pm2_start() {
  local app=$1 health_url=$2
  if pm2_is_online "$app"; then
    log "$app already running"
  else
    log "starting $app under PM2"
    pm2_clean delete "$app" >/dev/null 2>&1 || true
    quietly without_inherited_fds pm2_clean start "$ECOSYSTEM" --only "$app"
    quietly pm2_clean save --force
  fi
  if has_systemd; then
    quietly pm2_clean startup systemd -u root --hp /root
    quietly pm2_clean save --force
  fi
  wait_http "$health_url" 90
  log "$app online ($health_url)"
}

# One line: the status of the three apps.
pm2_summary() {
  local app line=""
  for app in "${PM2_APPS[@]}"; do line+="$app $(pm2_status "$app"), "; done
  log "${line%, }"
}
