"""`alembic upgrade head` from code (tests, prestart): `python -m billing.migrate`."""

from pathlib import Path

from crud_common import migrations

SERVICE_DIR = Path(__file__).resolve().parents[2]  # src/billing/migrate.py -> services/billing


def upgrade(revision: str = "head") -> None:
    migrations.upgrade(SERVICE_DIR, revision)


if __name__ == "__main__":
    upgrade()
