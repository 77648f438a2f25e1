"""Fixtures shared by tests/e2e and tests/api: the real platform on the test ports, and
handles on its databases and queue (all described by .env.test, loaded by the root conftest)."""

import contextlib
import os
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import httpx
import pytest

from billing.broker import queue_arguments
from platform_processes import SERVICES, Platform, base_url, broker_url, database_dsn, migrate


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    for service in ("inventory", "billing"):
        migrate(service)
    running = Platform(tmp_path_factory.mktemp("logs"))
    try:
        for service in SERVICES:
            running.start(service)
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def gateway(platform):
    async with httpx.AsyncClient(base_url=base_url("gateway"), timeout=10) as client:
        yield client


@contextlib.asynccontextmanager
async def _emptied(service: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to `service`'s database with `table` emptied, closed after the test."""
    connection = await asyncpg.connect(database_dsn(service))
    await connection.execute(f"TRUNCATE {table} RESTART IDENTITY")
    yield connection
    await connection.close()


@pytest.fixture
async def movies_db():
    async with _emptied("INVENTORY", "movies") as connection:
        yield connection


@pytest.fixture
async def orders_db():
    async with _emptied("BILLING", "orders") as connection:
        yield connection


@pytest.fixture
async def billing_queue():
    connection = await aio_pika.connect(broker_url())
    channel = await connection.channel()
    name = os.environ["BILLING_QUEUE"]
    queue = await channel.declare_queue(
        name, durable=True, arguments=queue_arguments(name + ".dlq")
    )
    await queue.purge()
    yield queue
    await connection.close()
