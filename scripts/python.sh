#!/usr/bin/env bash
# Python side: uv (from PyPI) and the workspace's locked dependencies in .venv.
#   scripts/python.sh [uv sync options]   default: every service plus the dev tools
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

python_env() {
  apt_install python3 python3-venv ca-certificates curl
  if ! command -v uv >/dev/null; then
    log "installing uv from PyPI into /opt/uv"
    python3 -m venv /opt/uv
    /opt/uv/bin/pip install -q uv
    ln -sf /opt/uv/bin/uv /usr/local/bin/uv
  fi
  (cd "$ROOT" && uv sync --locked --quiet "${@:---all-packages}")
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  python_env "$@"
fi
