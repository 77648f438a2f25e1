"""Billing test fixtures: the real test database and the real RabbitMQ test vhost (.env.test)."""

import asyncio
import functools
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aio_pika
import asyncpg
import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager

import polling
from billing import broker, migrate
from billing.app import create_app
from billing.config import Settings, get_settings
from billing.consumer import Consumer
from billing.db import create_pool


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The .env.test settings with a queue of this session's own: other suites (the gateway's,
    the e2e tests) use `billing_queue` on the same vhost and may run at the same time."""
    queue = f"billing_queue_test_{uuid.uuid4().hex[:8]}"
    return get_settings().model_copy(update={"billing_queue": queue})


@pytest.fixture(scope="session")
def migrated() -> None:
    migrate.upgrade()


@pytest.fixture(scope="session")
async def pool(settings: Settings, migrated: None) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def amqp(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """The tests' own plain connection (the code under test is not used to set it up)."""
    connection = await aio_pika.connect(
        host=settings.rabbitmq_host,
        port=settings.rabbitmq_port,
        login=settings.rabbitmq_user,
        password=settings.rabbitmq_password.get_secret_value(),
        virtualhost=settings.rabbitmq_vhost,
    )
    yield connection
    async with connection.channel() as channel:
        for name in (settings.billing_queue, settings.dead_letter_queue):
            await channel.queue_delete(name)
    await connection.close()


def queue_arguments(settings: Settings) -> dict[str, dict[str, object]]:
    """The quorum queues as billing and the gateway declare them (checked in tests/contract)."""
    dlq = settings.dead_letter_queue
    return {dlq: broker.DLQ_ARGUMENTS, settings.billing_queue: broker.queue_arguments(dlq)}


@pytest.fixture
async def channel(amqp, settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    channel = await amqp.channel()
    for name, arguments in queue_arguments(settings).items():
        await channel.declare_queue(name, durable=True, arguments=arguments)
    yield channel
    await channel.close()


@pytest.fixture
async def clean(pool: asyncpg.Pool, channel, settings: Settings) -> None:
    """A clean slate per test: empty table, empty queues."""
    await pool.execute("TRUNCATE orders RESTART IDENTITY")
    for name in queue_arguments(settings):
        queue = await channel.declare_queue(name, passive=True)
        await queue.purge()


@pytest.fixture
def publish(channel, settings: Settings) -> Callable[..., Awaitable[None]]:
    """Publish like the gateway does: persistent, confirmed, message_id = order_id."""

    async def _publish(body: dict[str, Any] | bytes, **properties: Any) -> None:
        if isinstance(body, dict):
            properties.setdefault("message_id", body.get("order_id"))
            body = orjson.dumps(body)
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            **properties,
        )
        await channel.default_exchange.publish(message, routing_key=settings.billing_queue)

    return _publish


@pytest.fixture
def depth(channel) -> Callable[[str], Awaitable[int]]:
    """Ready messages in a queue (passive declare)."""

    async def _depth(name: str) -> int:
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0

    return _depth


@pytest.fixture
def eventually() -> Callable[..., Awaitable[Any]]:
    """`polling.eventually` (tests/e2e/polling.py, shared by every test suite), within 10 s
    unless told otherwise: `await eventually(check)` polls `check` (sync or async) until truthy."""
    return functools.partial(polling.eventually, within=10.0)


@pytest.fixture
async def start_consumer(pool: asyncpg.Pool) -> AsyncIterator[Callable[..., Awaitable[Consumer]]]:
    """Start consumers (optionally with other settings / pool); all are stopped at the end."""
    started: list[tuple[Consumer, asyncpg.Pool | None]] = []

    async def _start(settings: Settings, own_pool: bool = False) -> Consumer:
        consumer_pool = await create_pool(settings) if own_pool else pool
        consumer = Consumer(settings, consumer_pool)
        consumer.start()
        started.append((consumer, consumer_pool if own_pool else None))
        return consumer

    yield _start
    for consumer, own in started:
        await consumer.stop()
        if own is not None:
            await own.close()


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """A local TCP relay to RabbitMQ: stopping it looks like a broker outage to the client."""

    def __init__(self, host: str, port: int, listen_port: int) -> None:
        self.target = (host, port)
        self.port = listen_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a broker going down."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def broker_proxy(settings: Settings, closed_port: int) -> AsyncIterator[TcpProxy]:
    """A proxy (not started yet) on a free port, relaying to the test broker."""
    proxy = TcpProxy(settings.rabbitmq_host, settings.rabbitmq_port, closed_port)
    yield proxy
    await proxy.stop()


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[Settings], Awaitable[httpx.AsyncClient]]]:
    """An HTTP client on a billing app (lifespan running: pool and consumer) with given settings."""
    async with AsyncExitStack() as stack:

        async def _client(settings: Settings) -> httpx.AsyncClient:
            manager = await stack.enter_async_context(LifespanManager(create_app(settings)))
            transport = httpx.ASGITransport(app=manager.app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://billing")
            )

        yield _client


@pytest.fixture
async def client(client_for, settings: Settings, clean: None) -> httpx.AsyncClient:
    return await client_for(settings)


@pytest.fixture
async def client_without_broker(
    client_for, settings: Settings, closed_port: int, clean: None
) -> httpx.AsyncClient:
    """A client on a billing app whose broker is down (RabbitMQ's port: one nothing listens on)."""
    return await client_for(settings.model_copy(update={"rabbitmq_port": closed_port}))
