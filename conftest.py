"""Loads the test environment (.env.test, written by `make test`) before any service settings,
and the network guard (tests/netguard/netguard.py): no test reaches beyond this machine."""

import os
from pathlib import Path

pytest_plugins = ["netguard"]  # importable through pyproject's pytest `pythonpath`
ENV_TEST = Path(__file__).parent / ".env.test"


def _load_env_file(path: Path) -> None:
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            os.environ.setdefault(key, value)


if ENV_TEST.exists():
    _load_env_file(ENV_TEST)
