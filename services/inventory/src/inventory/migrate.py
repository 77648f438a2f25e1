"""Run this service's Alembic migrations from code (tests, prestart scripts)."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

# src/inventory/migrate.py -> services/inventory/alembic.ini
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def alembic_config() -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logging"] = False  # leave the caller's logging alone
    return config


def upgrade(revision: str = "head") -> None:
    """`alembic upgrade head`, blocking until done.

    migrations/env.py runs its own event loop (asyncio.run), so the command runs in a worker
    thread: this works from plain code and from code that has an event loop (pytest-asyncio),
    whose loop it leaves untouched.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(command.upgrade, alembic_config(), revision).result()


if __name__ == "__main__":
    upgrade()
