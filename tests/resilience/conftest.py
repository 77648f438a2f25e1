"""Resilience tests: real processes on a private RabbitMQ node and a private PostgreSQL.

The nodes are this session's own (ports, data and cookie under /tmp/crud-master-*), so a test may
stop, kill or restart them without disturbing the system broker and database, nor a platform that
`make up` runs on the same machine. Each test starts the services it needs as processes
(`python server.py`, as PM2 does) with their environment pointed at the private nodes.
"""

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from platform_processes import ROOT, Platform
from private_nodes import PostgresNode, RabbitNode, owned, private_root
from resilience_support import DLQ, QUEUE, services_env


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode]:
    with owned(RabbitNode(private_root("rabbitmq"))) as node:
        node.start()
        yield node


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresNode]:
    with owned(PostgresNode(private_root("postgres"))) as node:
        subprocess.run(
            [str(ROOT / ".venv/bin/alembic"), "-c", "alembic.ini", "upgrade", "head"],
            cwd=ROOT / "services/billing",
            env={**os.environ, **node.settings_env()},
            check=True,
            capture_output=True,
        )
        yield node


@pytest.fixture
async def nodes(rabbit: RabbitNode, postgres: PostgresNode) -> AsyncIterator[None]:
    """Both nodes up, empty queues and an empty orders table; nodes up again after the test."""
    for node in (rabbit, postgres):
        if not node.running:
            node.start()
    connection = await aio_pika.connect(rabbit.url)
    async with connection, connection.channel() as channel:
        for name in (QUEUE, DLQ):
            await channel.queue_delete(name)
    db = await asyncpg.connect(postgres.dsn)
    await db.execute("TRUNCATE orders RESTART IDENTITY")
    await db.close()
    yield
    for node in (rabbit, postgres):
        if not node.running:
            node.start()


@pytest.fixture
def platform(
    tmp_path: Path, rabbit: RabbitNode, postgres: PostgresNode, nodes: None
) -> Iterator[Platform]:
    """Services on free ports, pointed at the private nodes; `start("billing")`,
    `start("gateway")`, more billing instances with `start("billing", name=..., env=...)`."""
    env = services_env(
        rabbit.settings_env(),
        postgres.settings_env(),
        BILLING_BATCH_SIZE="500",
        BILLING_BATCH_LINGER="0.02",
    )
    running = Platform(tmp_path, env=env)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def orders_db(postgres: PostgresNode, nodes: None) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres.dsn)
    yield connection
    if not connection.is_closed():
        await connection.close()
