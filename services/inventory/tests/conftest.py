"""Inventory test fixtures: the real test database (from .env.test), migrated once per session,
emptied before each test."""

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from inventory import db, migrate
from inventory.app import create_app
from inventory.config import Settings, get_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> None:
    migrate.upgrade()


@pytest.fixture(scope="session")
async def pool(settings: Settings, migrated: None) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    yield pool
    await db.close_pool(pool)


@pytest.fixture(autouse=True)
async def empty_movies(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE movies RESTART IDENTITY")


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an HTTP client talking to it in process."""
    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://inventory.test",
        ) as client,
    ):
        yield client


@pytest.fixture
def serve_app() -> Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]:
    return serve


@pytest.fixture(scope="session")
async def app(settings: Settings, migrated: None) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inventory.test") as c:
        yield c


@pytest.fixture
def app_with_db_at(
    settings: Settings,
) -> Callable[[int], AbstractAsyncContextManager[httpx.AsyncClient]]:
    """A fresh app whose database is at 127.0.0.1:<port>, served to a client."""

    def start(port: int) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        update = {"inventory_db_host": "127.0.0.1", "inventory_db_port": port}
        return serve(create_app(settings.model_copy(update=update)))

    return start


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local TCP port that accepts connections and never answers (a hung database)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()
