"""API-level tests: external tools (newman, schemathesis, chromium) against the real platform.

The `platform` fixture (the three services as processes on the test ports) lives in
tests/conftest.py, shared with tests/e2e.
"""

import os
import time

import aio_pika
import asyncpg
import pytest

from platform_processes import base_url, broker_url, database_dsn
from polling import eventually


@pytest.fixture(scope="session")
def gateway_url(platform) -> str:
    return base_url("gateway")


@pytest.fixture
async def orders_settle(platform):
    """After a test that posts orders in bulk, wait until billing has stored them all: no
    message left in the queue and the orders table unchanged for a second. Later tests (the
    e2e ones count rows) then start from a quiet platform."""
    yield
    connection = await asyncpg.connect(database_dsn("BILLING"))
    broker = await aio_pika.connect(broker_url())
    try:
        channel = await broker.channel()
        last, stable_since = None, time.monotonic()

        async def quiet() -> bool:
            nonlocal last, stable_since
            queue = await channel.declare_queue(os.environ["BILLING_QUEUE"], passive=True)
            count = await connection.fetchval("SELECT count(*) FROM orders")
            if queue.declaration_result.message_count or count != last:
                last, stable_since = count, time.monotonic()
                return False
            return time.monotonic() - stable_since >= 1.0

        await eventually(quiet, within=60, interval=0.2, message="billing drained the orders")
    finally:
        await broker.close()
        await connection.close()
