"""The gateway: raw ASGI handlers (movies proxy, order intake) in front of a small FastAPI app
(order look-ups, health, docs)."""

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any

import aiohttp
from crud_common.routes import add_route
from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi_offline import FastAPIOffline

from .billing_client import BillingClient
from .config import Settings, get_settings
from .errors import GatewayError, install_error_handlers, json_response
from .front import Gateway
from .metrics import Metrics
from .proxy import MoviesProxy
from .publisher import OrderPublisher
from .schemas import (
    Error,
    Health,
    Movie,
    MovieCreate,
    Order,
    OrderAccepted,
    OrderCreate,
)

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 1.5  # seconds for inventory's /health: /health itself answers within ~2 s


def _err(description: str, example: str) -> dict[str, Any]:
    return {
        "model": Error,
        "description": description,
        "content": {"application/json": {"example": {"error": example}}},
    }


def _both(router: APIRouter, path: str, method: str, **kwargs: Any) -> Callable[[Any], Any]:
    """Registers a route with and without the trailing slash (the latter undocumented)."""

    def register(endpoint: Any) -> Any:
        add_route(router, path, endpoint, method, **kwargs)
        return endpoint

    return register


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


@_both(
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
        400: _err("Malformed JSON body", "malformed JSON body"),
        422: _INVALID_ORDER,
        503: _err("RabbitMQ unreachable or did not confirm", "message broker unavailable"),
    },
)
async def post_order() -> None:
    """Documentation only: front.Gateway serves POST /api/billing[/] before routing."""
    raise GatewayError("orders are taken before routing")


@_both(
    orders,
    "/api/billing/{order_id}",
    "GET",
    response_model=Order,
    summary="An order billing has stored",
    responses={
        404: _err("Unknown order (it may still be queued)", "order not found"),
        502: _err("Billing answered with an error", "billing answered with an error"),
        503: _err("Billing unreachable", "billing unreachable"),
        504: _err("Billing did not answer in time", "billing timed out"),
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


@_both(
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


# --- movies: documentation only; front.Gateway proxies these paths before routing -------------
movies = APIRouter(tags=["movies"])

_UPSTREAM_ERRORS = {
    502: _err("Inventory unreachable", "inventory unreachable"),
    504: _err("Inventory did not answer in time", "inventory timed out"),
}
_NOT_FOUND = {404: _err("No movie with this id", "movie not found")}
_INVALID_MOVIE = {
    400: _err("Malformed JSON body", "malformed JSON body"),
    422: {"model": Error, "description": "Invalid movie"},
}
MovieId = Annotated[int, Path(description="Movie id (a non-integer id is 404 or 422)")]


async def _proxied() -> None:
    raise GatewayError("movies are proxied before routing")


@_both(
    movies,
    "/api/movies",
    "GET",
    response_model=list[Movie],
    summary="List movies",
    responses={
        200: {
            "description": "Movies, ordered by id",
            "headers": {
                "X-Total-Count": {
                    "description": "Number of movies matching the filter; exact up to "
                    "INVENTORY_EXACT_COUNT_LIMIT (10 000) matches",
                    "schema": {"type": "integer"},
                },
                "X-Total-Count-Exact": {
                    "description": "`false` when X-Total-Count is a lower bound (search) or an "
                    "estimate (full list) because more than INVENTORY_EXACT_COUNT_LIMIT match",
                    "schema": {"type": "string", "enum": ["false"]},
                },
                "Link": {
                    "description": 'Present when more remain: `<…?offset=…>; rel="next"`',
                    "schema": {"type": "string"},
                },
            },
        },
        422: {"model": Error, "description": "Invalid query parameter"},
        **_UPSTREAM_ERRORS,
    },
)
async def list_movies(
    title: Annotated[
        str | None, Query(description="Case-insensitive substring; % and _ are literal")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> None:
    await _proxied()


@_both(
    movies,
    "/api/movies",
    "POST",
    status_code=201,
    response_model=Movie,
    summary="Create a movie",
    responses={
        201: {
            "description": "The created movie",
            "headers": {
                "Location": {"description": "URL of the movie", "schema": {"type": "string"}}
            },
        },
        **_INVALID_MOVIE,
        **_UPSTREAM_ERRORS,
    },
)
async def create_movie(movie: MovieCreate) -> None:
    await _proxied()


@_both(
    movies,
    "/api/movies",
    "DELETE",
    status_code=204,
    response_class=Response,
    summary="Delete every movie",
    responses={204: {"description": "All movies deleted"}, **_UPSTREAM_ERRORS},
)
async def delete_movies() -> None:
    await _proxied()


@_both(
    movies,
    "/api/movies/{id}",
    "GET",
    response_model=Movie,
    summary="One movie",
    responses={**_NOT_FOUND, 422: {"model": Error}, **_UPSTREAM_ERRORS},
)
async def get_movie(id: MovieId) -> None:
    await _proxied()


@_both(
    movies,
    "/api/movies/{id}",
    "PUT",
    response_model=Movie,
    summary="Replace a movie",
    responses={**_NOT_FOUND, **_INVALID_MOVIE, **_UPSTREAM_ERRORS},
)
async def update_movie(movie: MovieCreate, id: MovieId) -> None:
    await _proxied()


@_both(
    movies,
    "/api/movies/{id}",
    "DELETE",
    status_code=204,
    response_class=Response,
    summary="Delete a movie",
    responses={
        204: {"description": "Deleted"},
        **_NOT_FOUND,
        422: {"model": Error},
        **_UPSTREAM_ERRORS,
    },
)
async def delete_movie(id: MovieId) -> None:
    await _proxied()


_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_REQUEST_ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}
_REQUEST_ID_PARAMETER = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Trace id (1-128 of `A-Z a-z 0-9 . _ : -`); another value or none: the gateway "
    "makes one. Passed to inventory/billing and into the order's AMQP correlation id.",
    "schema": _REQUEST_ID_SCHEMA,
}
_REQUEST_ID_HEADER = {
    "description": "The request's trace id: the client's, or the one the gateway made",
    "required": True,
    "schema": _REQUEST_ID_SCHEMA,
}
_WRITES = ("post", "put", "patch", "delete")


def _error(description: str, message: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": _ERROR_REF, "example": {"error": message}}},
    }


def _document_protections(schema: dict[str, Any]) -> None:
    """What the ASGI entry adds to every operation: X-Request-ID in and out; under /api 429 when
    rate-limited, 401 for a write without a valid key (when keys are configured), 413 for a body
    over the limit."""
    components = schema.setdefault("components", {})
    components.setdefault("parameters", {})["RequestId"] = _REQUEST_ID_PARAMETER
    components.setdefault("headers", {})["RequestId"] = _REQUEST_ID_HEADER
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "Needed for writes only when the gateway is configured with "
        "GATEWAY_API_KEYS; reads are always open.",
    }
    for path, path_item in schema["paths"].items():
        for method, operation in path_item.items():
            operation.setdefault("parameters", []).append(
                {"$ref": "#/components/parameters/RequestId"}
            )
            responses = operation["responses"]
            if path.startswith("/api/"):
                responses["429"] = _error(
                    "Too many requests from this client (when rate limiting is on)",
                    "too many requests",
                    **{
                        "Retry-After": {
                            "description": "Seconds to wait",
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    },
                )
                if method in _WRITES:
                    operation["security"] = [{"apiKey": []}, {}]
                    responses["401"] = _error(
                        "Missing or invalid API key (only when GATEWAY_API_KEYS is set)",
                        "missing or invalid API key",
                        **{"WWW-Authenticate": {"schema": {"type": "string"}}},
                    )
            if "requestBody" in operation:
                responses["413"] = _error(
                    "Request body larger than GATEWAY_MAX_BODY_BYTES", "request body too large"
                )
            for response in responses.values():
                response.setdefault("headers", {})["X-Request-ID"] = {
                    "$ref": "#/components/headers/RequestId"
                }


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The generated document, adjusted: FastAPI documents its own 422 shape on every route with
    parameters; ours is `Error`, declared where a 422 can happen, so the generated default is
    dropped. The protections of the ASGI entry are added (`_document_protections`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path_item in schema["paths"].values():
                for operation in path_item.values():
                    responses = operation.get("responses", {})
                    if "HTTPValidationError" in str(responses.get("422", "")):
                        del responses["422"]
            schemas = schema.get("components", {}).get("schemas", {})
            # The order intake reads the body itself (any Content-Type): its schema is added here.
            schemas["OrderCreate"] = OrderCreate.model_json_schema()
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            _document_protections(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


# --- the app ---------------------------------------------------------------------------------
def create_app(settings: Settings | None = None) -> Gateway:
    """The gateway: the front door (front.Gateway) with its FastAPI part as `.app`."""
    settings = settings or get_settings()
    proxy = MoviesProxy(settings.inventory_urls)
    metrics = Metrics()
    publisher = OrderPublisher(
        settings.amqp_url,
        settings.BILLING_QUEUE,
        publish_timeout=settings.GATEWAY_PUBLISH_TIMEOUT,
        connect_timeout=max(settings.GATEWAY_CONNECT_TIMEOUT, 2.0),
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
    install_error_handlers(app)
    for router in (movies, orders, meta):
        app.include_router(router)

    app.openapi = _openapi(app)  # type: ignore[method-assign]
    # /docs/, /redoc/, /openapi.json/ too: every route answers with and without the trailing slash.
    for route in list(app.routes):
        path = getattr(route, "path", None)
        if path in ("/docs", "/redoc", app.openapi_url):
            app.add_route(path + "/", route.endpoint, include_in_schema=False)  # type: ignore[attr-defined]
    return Gateway(settings, app, metrics)
