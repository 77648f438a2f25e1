# The two commands: `make up` runs the platform on this machine, `make test` runs every test.
.PHONY: up down test lint status

up:
	bash scripts/up.sh

down:
	bash scripts/down.sh

test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

status:
	pm2 list
