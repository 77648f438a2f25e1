"""Alembic environment (async template). The URL comes from the inventory Settings."""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    Text,
    pool,
)
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from inventory.config import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Stable constraint names, so later migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
target_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# The schema the migrations build, for `alembic check` / `revision --autogenerate` only: the
# service itself queries with plain SQL (inventory.repository), not through these objects.
Table(
    "movies",
    target_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("title", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Index(
        "ix_movies_title_trgm",
        "title",
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    ),
)


def database_url() -> URL:
    settings = get_settings()
    return URL.create(
        "postgresql+asyncpg",
        username=settings.inventory_db_user,
        password=settings.inventory_db_password.get_secret_value(),
        host=settings.inventory_db_host,
        port=settings.inventory_db_port,
        database=settings.inventory_db_name,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=database_url().render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    connectable = async_engine_from_config(
        {"sqlalchemy.url": database_url()}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
