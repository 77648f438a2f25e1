"""Alembic, run the same way for each service that owns a database.

A service's `migrations/env.py` calls `run(settings.database, target_metadata)`; its code and
tests migrate with `upgrade(service_dir)`. Needs the `migrations` extra (alembic, SQLAlchemy).
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from logging.config import fileConfig
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from crud_common.settings import Database

# Stable constraint names, so later migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def metadata() -> sa.MetaData:
    """A service's target metadata: empty, with the naming convention."""
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


def alembic_config(service_dir: Path) -> Config:
    """The service's `alembic.ini`, leaving the caller's logging alone."""
    config = Config(str(service_dir / "alembic.ini"))
    config.attributes["configure_logging"] = False
    return config


def upgrade(service_dir: Path, revision: str = "head") -> None:
    """`alembic upgrade head`, blocking until done.

    `run` starts its own event loop (asyncio.run), so the command runs in a worker thread: this
    works from plain code and from code that has an event loop (pytest-asyncio), whose loop it
    leaves untouched.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(command.upgrade, alembic_config(service_dir), revision).result()


def run(database: Database, target_metadata: sa.MetaData) -> None:
    """What a service's `migrations/env.py` does: offline, write the SQL; online, migrate over an
    async engine (asyncpg) that lives as long as the command."""
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logging", True):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = sa.URL.create(
        "postgresql+asyncpg",
        username=database.user,
        password=database.password.get_secret_value(),
        host=database.host,
        port=database.port,
        database=database.name,
    )
    if context.is_offline_mode():
        context.configure(
            url=url.render_as_string(hide_password=False),
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_online(url, target_metadata))


async def _run_online(url: sa.URL, target_metadata: sa.MetaData) -> None:
    def migrate(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    engine = create_async_engine(url, poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
    finally:
        await engine.dispose()
