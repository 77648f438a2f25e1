#!/usr/bin/env bash
# `make test-multihost`: what the three hosts need installed on this machine (they have no route
# to the package registries), then tests/multihost/three_hosts.py.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/pm2.sh"

require_root
python_env
apt_install postgresql postgresql-contrib rabbitmq-server nftables iproute2 util-linux
pm2_install
cd "$ROOT"
exec "$VENV/bin/pytest" -p no:cacheprovider -rP tests/multihost/three_hosts.py "$@"
