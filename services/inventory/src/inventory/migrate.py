"""`alembic upgrade head` from code (tests, prestart): `python -m inventory.migrate`."""

from pathlib import Path

from alembic.config import Config
from crud_common import migrations

SERVICE_DIR = Path(__file__).resolve().parents[2]  # src/inventory/migrate.py -> services/inventory


def alembic_config() -> Config:
    return migrations.alembic_config(SERVICE_DIR)


def upgrade(revision: str = "head") -> None:
    migrations.upgrade(SERVICE_DIR, revision)


if __name__ == "__main__":
    upgrade()
