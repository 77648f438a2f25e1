"""The asyncpg pool of one worker process: opened in the lifespan, closed at shutdown."""

import asyncio
import logging

import asyncpg

from inventory.config import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds to open one connection
COMMAND_TIMEOUT = 30.0  # seconds any single statement may run
HEALTH_TIMEOUT = 1.5  # seconds /health waits for the database
CLOSE_TIMEOUT = 10.0  # seconds shutdown waits for busy connections
WARM_UP_TIMEOUT = 2.0  # seconds start-up spends opening the first connections

# What a request meets when PostgreSQL cannot be reached: answered 503, not 500.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


async def create_pool(settings: Settings, custom_plans: bool = False) -> asyncpg.Pool:
    """Create the pool without requiring the database to be up.

    The pool starts empty (so the service starts, and /health reports 503, while PostgreSQL is
    down), then opens `inventory_db_pool_min_size` connections if it can. Idle connections are
    kept for good (max_inactive_connection_lifetime=0): a closed one is reopened on demand.
    `custom_plans`: its connections plan every prepared statement with the parameters given
    (plan_cache_mode=force_custom_plan; ~10 µs of planning each) and none open at start-up.
    """
    pool = await asyncpg.create_pool(
        **settings.database.connect_args(),
        min_size=0,
        max_size=settings.inventory_db_pool_max_size,
        max_inactive_connection_lifetime=0,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        server_settings={"application_name": "inventory"}
        | ({"plan_cache_mode": "force_custom_plan"} if custom_plans else {}),
        reset=_keep_session,
    )
    await _warm_up(pool, 0 if custom_plans else settings.inventory_db_pool_min_size)
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset on release (`RESET ALL; UNLISTEN *; ...`): one round trip
    per request saved. Safe because this service never changes session state (no SET, LISTEN,
    advisory locks or cursors); asyncpg still rolls back a transaction left open."""


async def _warm_up(pool: asyncpg.Pool, count: int) -> None:
    if count == 0:
        return
    connections = []
    try:
        async with asyncio.timeout(WARM_UP_TIMEOUT):
            for _ in range(count):
                connections.append(await pool.acquire())
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
        log.warning("database not reachable at start-up, connecting on demand: %r", exc)
    finally:
        for connection in connections:
            await pool.release(connection)


async def close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
    except TimeoutError:
        log.warning("database connections still busy after %ss, terminating", CLOSE_TIMEOUT)
        pool.terminate()


async def ping(pool: asyncpg.Pool) -> bool:
    """True when the database answers a trivial query within HEALTH_TIMEOUT."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            return await pool.fetchval("SELECT 1") == 1
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("database health check failed: %r", exc)
        return False
