# The two commands: `make up` runs the platform on this machine, `make test` runs every test.
.PHONY: up down test test-docker test-multihost vagrant-smoke lint status openapi mutation

up:
	bash scripts/up.sh

down:
	bash scripts/down.sh

test:
	bash scripts/test.sh

# Three hosts on this machine (network namespaces on a bridge), each provisioned by
# scripts/vagrant.sh as the Vagrantfile does; the audit flow, partitions, reboots and exposure.
test-multihost:
	bash scripts/test-multihost.sh

# Build the images and run the Compose stack for real (own Docker engine), checked end to end.
test-docker:
	bash tests/deploy/docker-stack.sh

# The Vagrantfile for real: three libvirt VMs from a box built here, the audit flow through the
# forwarded gateway port, a reboot, destroy (not in CI: emulated CPUs, slow; README "Three VMs").
vagrant-smoke:
	nice -n 10 bash scripts/vagrant-smoke.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

status:
	pm2 list

# Rewrite docs/openapi.json from the gateway's code (placeholder settings are enough).
openapi:
	set -a && . ./.env.example && set +a && .venv/bin/python -m gateway.openapi > docs/openapi.json

# Mutation testing of the guard, billing's schemas and repository, inventory's repository
# (bench/mutation.py; not in CI: tens of minutes, niced, under the shared test lock).
mutation:
	.venv/bin/python bench/mutation.py
