"""HTTP API of billing; its lifespan owns the database pool and the queue consumer."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from crud_common.errors import ServiceError
from crud_common.handlers import install_error_handlers
from crud_common.routes import BACKEND_APP_OPTIONS, add_route
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from billing import repository
from billing.config import Settings, get_settings
from billing.consumer import Consumer
from billing.db import UNAVAILABLE, create_pool, transaction
from billing.observability import Observe
from billing.schemas import OrderCreate, OrderPublic, parse_order_id

log = logging.getLogger(__name__)
HEALTH_TIMEOUT = 1.5


class OrderNotFound(ServiceError):
    status_code = 404
    message = "order not found"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings or get_settings()
    pool = await create_pool(settings)  # lazy: no connection yet, so a down database is fine
    consumer = Consumer(settings, pool)
    consumer.start()
    app.state.pool, app.state.consumer = pool, consumer
    try:
        yield
    finally:
        await consumer.stop()
        try:
            await asyncio.wait_for(pool.close(), 5)
        except TimeoutError:
            pool.terminate()


# --- routes -------------------------------------------------------------------------------
async def create_order(order: OrderCreate, request: Request, response: Response) -> OrderPublic:
    async with transaction(request.app.state.pool) as conn:
        row, created = await repository.insert_order(conn, order.to_new_order())
    if not created:
        response.status_code = 200  # same order_id again: the stored order, idempotently
    return OrderPublic.model_validate(dict(row))


async def get_order(order_id: str, request: Request) -> OrderPublic:
    parsed = parse_order_id(order_id)
    if parsed is None:
        raise OrderNotFound()
    async with request.app.state.pool.acquire(timeout=5) as conn:
        row = await repository.get_order(conn, parsed)
    if row is None:
        raise OrderNotFound()
    return OrderPublic.model_validate(dict(row))


async def _within(call: Awaitable[Any], seconds: float) -> tuple[bool, Any]:
    """Run `call` for at most `seconds` without waiting on a hung cancellation."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nothing unretrieved
        return False, "timeout"
    if task.exception() is not None:
        return False, task.exception()
    return True, task.result()


async def _ping(pool: asyncpg.Pool) -> None:
    async with pool.acquire(timeout=HEALTH_TIMEOUT) as conn:
        await conn.fetchval("SELECT 1", timeout=HEALTH_TIMEOUT)


async def health(request: Request) -> JSONResponse:
    state = request.app.state
    (db_ok, db_error), (broker_ok, depths) = await asyncio.gather(
        _within(_ping(state.pool), HEALTH_TIMEOUT),
        _within(state.consumer.queue_depths(), HEALTH_TIMEOUT),
    )
    body: dict[str, Any] = {
        "status": "ok" if db_ok and broker_ok else "unavailable",
        "database": "ok" if db_ok else "unreachable",
        "broker": "ok" if broker_ok else "unreachable",
        "queue_depth": depths[0] if broker_ok else None,
        "dead_letters": depths[1] if broker_ok else None,
    }
    failing = [name for name, ok in (("database", db_ok), ("broker", broker_ok)) if not ok]
    if failing:
        log.warning("health: %s unreachable (db: %r, broker: %r)", failing, db_error, depths)
        return JSONResponse({**body, "error": f"{' and '.join(failing)} unreachable"}, 503)
    return JSONResponse(body)


class BillingApp(FastAPI):
    """FastAPI wrapped, outside even its error middleware, by `Observe` (request id, metrics),
    so that every response, a 500 included, carries X-Request-ID and is counted."""

    def build_middleware_stack(self) -> Any:
        return Observe(super().build_middleware_stack())


def create_app(settings: Settings | None = None) -> FastAPI:
    app = BillingApp(title="billing", version="0.1.0", lifespan=lifespan, **BACKEND_APP_OPTIONS)
    app.state.settings = settings
    install_error_handlers(app, invalid=lambda _: "invalid order", database_errors=UNAVAILABLE)
    add_route(app.router, "/api/orders", create_order, "POST", status_code=201)
    add_route(app.router, "/api/orders/{order_id}", get_order, "GET")
    add_route(app.router, "/health", health, "GET")
    return app
