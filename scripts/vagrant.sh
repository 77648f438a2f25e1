#!/usr/bin/env bash
# Vagrant provisioner: point this VM's copy of .env at the other VMs, then run its role script —
# the same script `make up` runs on one machine.
#   scripts/vagrant.sh ROLE [KEY=VALUE ...]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

role=$1
shift
bash "$ROOT/scripts/env.sh"
for pair in "$@"; do env_set "$ROOT/.env" "$pair"; done
exec bash "$ROOT/scripts/$role.sh"
