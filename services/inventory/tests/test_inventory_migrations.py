"""The Alembic migrations build the schema the service relies on."""

import asyncio

import asyncpg
import pytest
from alembic import command

from inventory import migrate


async def test_migrations_match_the_declared_schema(migrated: None) -> None:
    # `alembic check` raises when the database differs from migrations/env.py's metadata.
    await asyncio.to_thread(command.check, migrate.alembic_config())


async def test_upgrade_is_idempotent(pool: asyncpg.Pool) -> None:
    await asyncio.to_thread(migrate.upgrade)
    assert await pool.fetchval("SELECT version_num FROM alembic_version") == "0001"


async def test_title_has_a_trigram_gin_index(pool: asyncpg.Pool) -> None:
    definition = await pool.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'movies' AND indexname = $1",
        "ix_movies_title_trgm",
    )
    assert definition is not None and "USING gin (title gin_trgm_ops)" in definition


async def test_primary_key_has_a_stable_name(pool: asyncpg.Pool) -> None:
    name = await pool.fetchval(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'movies'::regclass AND contype = 'p'"
    )
    assert name == "pk_movies"


async def test_ids_are_generated_always(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.GeneratedAlwaysError):
        await pool.execute("INSERT INTO movies (id, title, description) VALUES (5, 't', 'd')")


async def test_columns_are_required(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.NotNullViolationError):
        await pool.execute("INSERT INTO movies (title) VALUES ('t')")
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await pool.execute("INSERT INTO movies (title, description) VALUES ($1, '')", "t" * 256)
