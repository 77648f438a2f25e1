"""The gateway: raw ASGI handlers (movies proxy, order intake) in front of a small FastAPI app
(order look-ups, health, docs)."""

import asyncio
import logging
from typing import Annotated

import aiohttp
from crud_common.handlers import install_error_handlers
from fastapi import APIRouter, Path, Request, Response
from fastapi_offline import FastAPIOffline

from .billing_client import BillingClient
from .config import Settings, get_settings
from .docs import both, document, error_doc, movies
from .errors import GatewayError, json_response
from .front import Gateway
from .metrics import Metrics
from .proxy import MoviesProxy
from .publisher import OrderPublisher
from .schemas import (
    Error,
    Health,
    Order,
    OrderAccepted,
)

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 1.5  # seconds for inventory's /health: /health itself answers within ~2 s


# --- orders ------------------------------------------------------------------------------------
orders = APIRouter(tags=["billing"])

_INVALID_ORDER = {
    "model": Error,
    "description": "Invalid order",
    "content": {
        "application/json": {
            "example": {
                "error": "invalid request",
                "details": [{"loc": ["body", "user_id"], "msg": "Value error, must be an integer"}],
            }
        }
    },
}


@both(
    orders,
    "/api/billing",
    "POST",
    response_model=OrderAccepted,
    summary="Queue an order for billing",
    description="Answers 200 only after RabbitMQ confirmed the persistent message; works while "
    'billing is stopped. Numbers may be strings (`"20"`).',
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/OrderCreate"}}
            },
        }
    },
    responses={
        400: error_doc("Malformed JSON body", "malformed JSON body"),
        422: _INVALID_ORDER,
        503: error_doc("RabbitMQ unreachable or did not confirm", "message broker unavailable"),
    },
)
async def post_order() -> None:
    """Documentation only: front.Gateway serves POST /api/billing[/] before routing."""
    raise GatewayError("orders are taken before routing")


@both(
    orders,
    "/api/billing/{order_id}",
    "GET",
    response_model=Order,
    summary="An order billing has stored",
    responses={
        404: error_doc("Unknown order (it may still be queued)", "order not found"),
        502: error_doc("Billing answered with an error", "billing answered with an error"),
        503: error_doc("Billing unreachable", "billing unreachable"),
        504: error_doc("Billing did not answer in time", "billing timed out"),
    },
)
async def get_order(
    request: Request, order_id: Annotated[str, Path(description="UUID")]
) -> Response:
    billing: BillingClient = request.app.state.billing
    return Response(await billing.get_order(order_id), media_type="application/json")


# --- health ------------------------------------------------------------------------------------
meta = APIRouter(tags=["health"])


async def _inventory_ok(session: aiohttp.ClientSession, upstreams: list[str]) -> bool:
    async def one(base: str) -> bool:
        try:
            async with session.get(
                base + "/health", timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT)
            ) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    return any(await asyncio.gather(*(one(u) for u in upstreams)))


@both(
    meta,
    "/health",
    "GET",
    response_model=Health,
    summary="Gateway health and its dependencies",
    responses={
        503: {
            "model": Health,
            "description": "A dependency is down",
            "content": {
                "application/json": {
                    "example": {
                        "status": "unavailable",
                        "error": "broker unreachable",
                        "broker": "unreachable",
                        "inventory": "ok",
                    }
                }
            },
        }
    },
)
async def health(request: Request) -> Response:
    state = request.app.state
    broker_ok = state.publisher.connected
    inventory_ok = await _inventory_ok(state.session, state.proxy.upstreams)
    body = {
        "status": "ok",
        "broker": "ok" if broker_ok else "unreachable",
        "inventory": "ok" if inventory_ok else "unreachable",
    }
    failing = [name for name in ("broker", "inventory") if body[name] != "ok"]
    if failing:
        body["status"] = "unavailable"
        body["error"] = ", ".join(f"{name} unreachable" for name in failing)
        return json_response(body, 503)
    return json_response(body)


# --- the app ---------------------------------------------------------------------------------
def create_app(settings: Settings | None = None) -> Gateway:
    """The gateway: the front door (front.Gateway) with its FastAPI part as `.app`."""
    settings = settings or get_settings()
    proxy = MoviesProxy(settings.inventory_url_list)
    metrics = Metrics()
    publisher = OrderPublisher(
        settings.amqp_url,
        settings.billing_queue,
        publish_timeout=settings.gateway_publish_timeout,
        connect_timeout=max(settings.gateway_connect_timeout, 2.0),
    )
    app = FastAPIOffline(
        title="crud-master gateway",
        version="1.0.0",
        description="Public entry of crud-master: movies (proxied verbatim to inventory) and "
        "orders (queued to billing through RabbitMQ).",
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.proxy = proxy
    app.state.publisher = publisher
    app.state.metrics = metrics
    install_error_handlers(app, invalid=lambda _: "invalid request", database_errors=())
    for router in (movies, orders, meta):
        app.include_router(router)

    app.openapi = document(app)  # type: ignore[method-assign]
    # /docs/, /redoc/, /openapi.json/ too: every route answers with and without the trailing slash.
    for route in list(app.routes):
        path = getattr(route, "path", None)
        if path in ("/docs", "/redoc", app.openapi_url):
            app.add_route(path + "/", route.endpoint, include_in_schema=False)  # type: ignore[attr-defined]
    return Gateway(settings, app, metrics)
