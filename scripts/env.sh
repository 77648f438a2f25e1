#!/usr/bin/env bash
# Create an env file from .env.example when it is absent, with a fresh random value for every
# `generate-me`. Extra KEY=VALUE arguments override the example (used for the test environment).
#   scripts/env.sh [FILE] [KEY=VALUE ...]        FILE defaults to .env
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target=${1:-$ROOT/.env}
shift || true
[ -f "$target" ] && exit 0

tmp=$(mktemp)
while IFS= read -r line; do
  if [[ $line == *=generate-me ]]; then
    line="${line%=generate-me}=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  fi
  printf '%s\n' "$line"
done <"$ROOT/.env.example" >"$tmp"
for pair in "$@"; do env_set "$tmp" "$pair"; done
chmod 600 "$tmp"
mv "$tmp" "$target"
log "created $target with random secrets"
