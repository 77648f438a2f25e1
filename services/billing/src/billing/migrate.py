"""`alembic upgrade head` from code (tests, prestart)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

SERVICE_DIR = Path(__file__).resolve().parents[2]


def upgrade(revision: str = "head") -> None:
    config = Config(str(SERVICE_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(SERVICE_DIR / "migrations"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


if __name__ == "__main__":
    upgrade()
