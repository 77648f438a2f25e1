"""Gateway test harness: the real gateway and its own HTTP server on a random port, small stand-in
upstream servers (aiohttp.web or raw TCP) on 127.0.0.1, the real RabbitMQ test vhost."""

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings, get_settings
from gateway.front import Gateway
from gateway.serving import bind, serving

from .attack_support import free_port


async def wait_until(
    predicate: Callable[[], Awaitable[bool] | bool], within: float, what: str
) -> None:
    """Poll `predicate` until true; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class RunningGateway:
    url: str
    app: Gateway
    client: httpx.AsyncClient

    @property
    def publisher(self) -> Any:
        return self.app.publisher


@contextlib.asynccontextmanager
async def run_gateway(
    keep_alive_timeout: float = 5.0, **overrides: Any
) -> AsyncIterator[RunningGateway]:
    """The gateway as server.py runs it (its own HTTP server), on a random port."""
    settings = Settings(gateway_keep_alive_timeout=keep_alive_timeout, **overrides)
    gateway = create_app(settings)
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with serving(gateway, sock):
        async with httpx.AsyncClient(base_url=url, timeout=15) as client:
            yield RunningGateway(url=url, app=gateway, client=client)


# --- a stand-in inventory (aiohttp.web) -------------------------------------------------------
@dataclass
class StandIn:
    """An aiohttp.web server on 127.0.0.1 that records what reached it."""

    app: web.Application
    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "StandIn":
        self.runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def inventory_app(standin_seen: list[dict[str, Any]]) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        standin_seen.append({"method": request.method, "raw_path": request.raw_path, "body": body})
        status = int(request.query.get("status", "200"))
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": [
                    [k.decode().lower(), v.decode("latin-1")] for k, v in request.raw_headers
                ],
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_length": len(body),
                "body": body.decode("latin-1") if len(body) < 1000 else None,
            },
            status=status,
        )

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        data = _pattern(size)
        if request.query.get("chunked"):
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, size, 256 * 1024):
                await response.write(data[start : start + 256 * 1024])
            await response.write_eof()
            return response
        return web.Response(body=data, content_type="application/octet-stream")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "5")))
        return web.json_response({"slow": True})

    async def created(request: web.Request) -> web.Response:
        response = web.json_response({"id": 7, "title": "t", "description": "d"}, status=201)
        response.headers["Location"] = "/api/movies/7"
        response.headers["X-Total-Count"] = "41"
        response.headers["Link"] = '</api/movies?offset=100>; rel="next"'
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    async def no_content(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/api/movies/big", big)
    app.router.add_route("*", "/api/movies/slow", slow)
    app.router.add_route("*", "/api/movies/created", created)
    app.router.add_route("*", "/api/movies/nothing", no_content)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def _pattern(size: int) -> bytes:
    block = hashlib.sha256(b"gateway").digest() * 2048  # 64 KiB, not compressible to nothing
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def pattern() -> Callable[[int], bytes]:
    return _pattern


@pytest.fixture
async def inventory() -> AsyncIterator[StandIn]:
    seen: list[dict[str, Any]] = []
    standin = await StandIn(inventory_app(seen), seen=seen).start()
    yield standin
    await standin.stop()


# --- a raw TCP upstream, for exact control of response bytes and connection handling ------------
Responder = Callable[[bytes, bytes, int], bytes | list[bytes] | None]


class RawUpstream:
    """Answers each request with `respond(head, body, index_on_connection)`: bytes, or a list
    of parts written 50 ms apart; None closes the connection instead."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        index = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head)
                answer = self.respond(head, body, index)
                index += 1
                if answer is None:
                    break
                for position, part in enumerate([answer] if isinstance(answer, bytes) else answer):
                    if position:
                        await asyncio.sleep(0.05)  # parts arrive separately
                    writer.write(part)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> "RawUpstream":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()


# --- a TCP relay in front of RabbitMQ: lets a test cut, pause or refuse the broker ---------------
class TcpRelay:
    def __init__(self, target_host: str, target_port: int, port: int) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.server: asyncio.Server | None = None
        self.flowing = asyncio.Event()  # cleared: broker-to-client bytes are held back
        self.flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pausable: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if pausable:
                    await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, pausable=False)),
            asyncio.create_task(self._pipe(up_reader, writer, pausable=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def cut(self) -> None:
        """Drop every relayed connection (the broker 'goes away'); keep listening."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.cut()
        for task in list(self._tasks):
            task.cancel()


# --- RabbitMQ -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
async def amqp(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    channel = await connection.channel()
    yield channel
    await connection.close()


@pytest.fixture
async def queue_name(amqp: aio_pika.abc.AbstractChannel) -> AsyncIterator[str]:
    """A queue name of this test's own, deleted afterwards.

    Gateways under test publish to it (BILLING_QUEUE) instead of billing_queue: a billing
    consumer attached to the shared test vhost would otherwise take the messages first.
    The code path is the same; the configured name is checked in test_gateway_config.py.
    """
    name = f"billing_queue.gateway-test-{uuid.uuid4().hex[:12]}"
    yield name
    await amqp.queue_delete(name)


async def next_message(
    queue: aio_pika.abc.AbstractQueue, within: float = 5.0
) -> aio_pika.abc.AbstractIncomingMessage:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    pytest.fail(f"no message on {queue.name} within {within}s")


def message_json(message: aio_pika.abc.AbstractIncomingMessage) -> Any:
    return json.loads(message.body)


# --- helpers as fixtures (test modules cannot import conftest under --import-mode=importlib) -----
@pytest.fixture
def gateway_factory() -> Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]:
    """`async with gateway_factory(inventory_urls=...) as gw:` a running gateway."""
    return run_gateway


@pytest.fixture
def unused_port() -> Callable[[], int]:
    return free_port


@pytest.fixture
def poll() -> Callable[..., Awaitable[None]]:
    return wait_until


@pytest.fixture
def raw_upstream() -> type[RawUpstream]:
    return RawUpstream


@pytest.fixture
async def relay_factory(settings: Settings) -> AsyncIterator[Callable[[int], TcpRelay]]:
    """Relays to the test RabbitMQ on a chosen local port (not started: call `.start()`)."""
    relays: list[TcpRelay] = []

    def make(port: int) -> TcpRelay:
        relay = TcpRelay(settings.rabbitmq_host, settings.rabbitmq_port, port)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        await relay.stop()


@pytest.fixture
def gateway_through(
    gateway_factory, queue_name: str
) -> Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]:
    """`async with gateway_through(first, second, **settings) as gw:` a gateway whose broker nodes
    are these relays (RABBITMQ_HOST, in order), publishing to this test's queue."""

    def run(*relays: TcpRelay, **settings: Any) -> contextlib.AbstractAsyncContextManager:
        nodes = ", ".join(f"127.0.0.1:{relay.port}" for relay in relays)  # spaces allowed
        return gateway_factory(rabbitmq_host=nodes, billing_queue=queue_name, **settings)

    return run


@pytest.fixture
def amqp_message() -> Callable[..., Awaitable[aio_pika.abc.AbstractIncomingMessage]]:
    return next_message
