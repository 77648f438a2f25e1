# Shared helpers for the provisioning scripts. Source it; do not run it.
# Every function is idempotent: running a script twice changes nothing the second time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }

# Run a command with its output kept back; shown only when the command fails.
quietly() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$out" >&2
    rm -f "$out"
    die "$* failed (exit $rc)"
  fi
  rm -f "$out"
}

# Starts a daemon without the descriptors this shell inherited (a lock its caller holds, for
# instance `flock LOCK make test`, would otherwise stay held for as long as the daemon runs).
without_inherited_fds() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    "$@"
  )
}

require_root() { [ "$(id -u)" -eq 0 ] || die "run as root (sudo make …): PM2 and the services run under root"; }

# Real VMs boot with systemd; containers and this kind of sandbox do not.
has_systemd() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian"
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
    quietly apt-get update -q
  fi
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Node.js and npm from Debian, for PM2 and newman (kept when the machine already has them).
node_install() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
}

# Export every variable of an env file (KEY=value lines) into this shell.
load_env() {
  local file=${1:-$ROOT/.env}
  [ -f "$file" ] || die "$file is missing (run scripts/env.sh first)"
  set -a
  # shellcheck disable=SC1090
  . "$file"
  set +a
}

# Set KEY=VALUE in an env file, replacing the line of that key; a key of .env.example that an
# older file lacks is appended, any other key refused (a typo).
env_set() {
  local file=$1 pair=$2 key=${2%%=*}
  if grep -q "^$key=" "$file"; then
    sed -i "s|^$key=.*|$pair|" "$file"
  elif grep -q "^$key=" "$ROOT/.env.example"; then
    printf '%s\n' "$pair" >>"$file"
  else
    die "$key is not a variable of $file"
  fi
}

# One line on who may write through the gateway (after load_env).
writes_notice() {
  if [ -z "${GATEWAY_API_KEYS//[ ,]/}" ]; then
    log "writes are open to anyone: set GATEWAY_API_KEYS in .env to require a key"
  else
    log "writes need one of the keys of GATEWAY_API_KEYS"
  fi
}

# The address to reach a service bound to $1 from this machine (0.0.0.0: every interface).
local_address() {
  case $1 in 0.0.0.0 | "" ) echo 127.0.0.1 ;; *) echo "$1" ;; esac
}

# One line when a back end listens on every interface: only the gateway should.
warn_if_exposed() {
  [ "$2" != 0.0.0.0 ] || log "note: $1 listens on every interface ($1=0.0.0.0 in .env); 127.0.0.1 keeps it private"
}

# Poll a URL until it answers 200, with a deadline instead of a fixed sleep.
wait_http() {
  local url=$1 seconds=${2:-60} deadline=$((SECONDS + ${2:-60}))
  until curl -fs -o /dev/null --max-time 2 "$url"; do
    [ $SECONDS -lt $deadline ] || die "$url did not answer within ${seconds}s"
    sleep 0.5
  done
}

# Identifiers go into SQL and rabbitmqctl: refuse anything that is not a plain name.
check_identifier() {
  [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "'$1' is not a valid name (letters, digits, _)"
}
