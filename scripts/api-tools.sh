#!/usr/bin/env bash
# Tools of the API tests (tests/api): newman (npm) runs the Postman collection, Debian's chromium
# renders Swagger UI headless. Installs only what is absent; running it twice changes nothing.
#   source scripts/api-tools.sh && api_tools_install     or     bash scripts/api-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

api_tools_install() {
  apt_install chromium fonts-liberation
  node_install
  if ! command -v newman >/dev/null; then
    log "installing newman from npm"
    npm install -g --no-fund --no-audit --loglevel=error newman >/dev/null
  fi
  command -v newman >/dev/null || die "newman is not on PATH after npm install -g"
  command -v chromium >/dev/null || die "chromium is not on PATH after apt-get install"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  api_tools_install
fi
