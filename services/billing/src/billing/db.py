"""The asyncpg pool and the transaction boundary."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from billing.config import Settings

# Errors meaning "the database is not there right now" (as opposed to "it refused this data").
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,  # refused, unreachable, timed out
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A lazy pool (min_size=0): the service starts even while the database is down."""
    return await asyncpg.create_pool(
        **settings.database.connect_args(),
        min_size=0,
        max_size=10,
        timeout=3,  # connect timeout
        command_timeout=10,
    )


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """Commit on success, roll back on error: the only place that commits."""
    async with pool.acquire(timeout=5) as conn, conn.transaction():
        yield conn
