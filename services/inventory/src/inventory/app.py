"""HTTP routes of the inventory service. Routes stay thin: parse, call the repository, answer."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import asyncpg
import orjson
from crud_common.handlers import install_error_handlers
from crud_common.routes import BACKEND_APP_OPTIONS, add_route
from fastapi import FastAPI, Query, Request
from fastapi.telemetry import TelemetryConfig
from pydantic import AfterValidator, BaseModel, ValidationError
from starlette.responses import Response

from inventory import db, repository
from inventory.config import Settings, get_settings
from inventory.errors import (
    BodyTooLarge,
    MalformedJSON,
    MovieNotFound,
    ValidationFailed,
    invalid_request,
)
from inventory.observability import Observe
from inventory.responses import JSONResponse
from inventory.routing import DirectDispatch, DirectRoute
from inventory.schemas import ErrorBody, MovieCreate, MoviePublic, MovieUpdate, no_nul

MAX_ID = 2**63 - 1  # ids are BIGINT
MAX_BODY = 1 << 20  # bytes; a valid movie is far smaller
JSON = "application/json"
M = TypeVar("M", bound=BaseModel)
NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503)
}


# (path, method, endpoint, route options): registered on each app by create_app().
_ROUTES: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []


def _route(path: str, method: str, **options: Any) -> Callable[[Callable], Callable]:
    def register(endpoint: Callable) -> Callable:
        _ROUTES.append((path, method, endpoint, options))
        return endpoint

    return register


def parse_movie_id(raw: str) -> int:
    """The id in the path as a BIGINT; anything else names no movie (404, never 500)."""
    if not (raw.isdigit() and raw.isascii()) or len(raw) > 19 or int(raw) > MAX_ID:
        raise MovieNotFound(raw)
    return int(raw)


async def read_body(request: Request, model: type[M]) -> M:
    """Parse the body as JSON (whatever the Content-Type says) and validate it as `model`."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(MAX_BODY)
        chunks.append(chunk)
    try:
        data = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise MalformedJSON() from None
    if not isinstance(data, dict):
        raise ValidationFailed.from_errors([{"loc": (), "msg": "must be a JSON object"}], ("body",))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed.from_errors(exc.errors(), ("body",)) from None


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def _search_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.search_pool


def _movie(
    movie: repository.Movie, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(movie), status_code, headers, media_type=JSON)


# --- /api/movies/{movie_id} ------------------------------------------------------------------

_BY_ID = "/api/movies/{movie_id}"


@_route(
    _BY_ID, "GET", route_class_override=DirectRoute, response_model=MoviePublic, responses=_ERRORS
)
async def get_movie(request: Request, movie_id: str) -> Response:
    return _movie(await repository.get_movie(_pool(request), parse_movie_id(movie_id)))


@_route(
    _BY_ID,
    "PUT",
    route_class_override=DirectRoute,
    response_model=MoviePublic,
    responses=_ERRORS,
    openapi_extra=_body_doc(MovieUpdate),
)
async def replace_movie(request: Request, movie_id: str) -> Response:
    pk = parse_movie_id(movie_id)
    data = await read_body(request, MovieUpdate)
    return _movie(await repository.replace_movie(_pool(request), pk, data.title, data.description))


@_route(_BY_ID, "DELETE", route_class_override=DirectRoute, status_code=204, responses=_ERRORS)
async def delete_movie(request: Request, movie_id: str) -> Response:
    await repository.delete_movie(_pool(request), parse_movie_id(movie_id))
    return Response(status_code=204)


# --- /api/movies -----------------------------------------------------------------------------

SearchTitle = Annotated[
    str | None,
    Query(description="case-insensitive substring of the title; `%` and `_` are literal"),
    AfterValidator(lambda value: value if value is None else no_nul(value)),
]


@_route("/api/movies", "GET", response_model=list[MoviePublic], responses=_ERRORS)
async def list_movies(
    request: Request,
    title: SearchTitle = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Response:
    pool = _search_pool(request) if title else _pool(request)
    count_limit = request.app.state.count_limit
    page = await repository.list_movies(pool, title, limit, offset, count_limit)
    headers = {"X-Total-Count": str(page.total)}
    if not page.exact:
        headers["X-Total-Count-Exact"] = "false"
    if page.more:
        query: dict[str, Any] = {"title": title} if title else {}
        query |= {"limit": limit, "offset": offset + limit}
        headers["Link"] = f'</api/movies?{urlencode(query, quote_via=quote)}>; rel="next"'
    return Response(orjson.dumps(page.items), headers=headers, media_type=JSON)


@_route(
    "/api/movies",
    "POST",
    route_class_override=DirectRoute,
    status_code=201,
    response_model=MoviePublic,
    responses=_ERRORS,
    openapi_extra=_body_doc(MovieCreate),
)
async def create_movie(request: Request) -> Response:
    data = await read_body(request, MovieCreate)
    movie = await repository.create_movie(_pool(request), data.title, data.description)
    return _movie(movie, 201, {"Location": f"/api/movies/{movie['id']}"})


@_route("/api/movies", "DELETE", route_class_override=DirectRoute, status_code=204)
async def delete_all_movies(request: Request) -> Response:
    await repository.delete_all_movies(_pool(request))
    return Response(status_code=204)


# --- /health ---------------------------------------------------------------------------------


@_route("/health", "GET", route_class_override=DirectRoute, responses={503: {"model": ErrorBody}})
async def health(request: Request) -> Response:
    if await db.ping(_pool(request)):
        return JSONResponse({"status": "ok", "database": "ok"})
    return JSONResponse(
        {"status": "unavailable", "error": "database unreachable", "database": "unreachable"},
        status_code=503,
    )


class InventoryApp(FastAPI):
    """FastAPI wrapped, outside even its error middleware, by `Observe` (request id, metrics),
    so that every response, a 500 included, carries X-Request-ID and is counted, then by
    `DirectDispatch`, which serves the DirectRoutes without FastAPI's middleware and router."""

    def build_middleware_stack(self) -> Any:
        return Observe(DirectDispatch(super().build_middleware_stack(), self))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await db.create_pool(settings)
        # Title searches get connections of their own that plan each statement with its
        # parameters (repository.list_movies says why); opened on demand.
        app.state.search_pool = await db.create_pool(settings, custom_plans=True)
        app.state.count_limit = settings.inventory_exact_count_limit
        try:
            yield
        finally:
            await db.close_pool(app.state.search_pool)
            await db.close_pool(app.state.pool)

    app = InventoryApp(
        title="crud-master inventory",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # FastAPI's native OpenTelemetry hooks cost ~20 µs per request (environment look-ups
        # included) even with no provider configured; this service exports no telemetry.
        telemetry=NO_TELEMETRY,
        **BACKEND_APP_OPTIONS,
    )
    install_error_handlers(app, invalid=invalid_request, database_errors=db.UNAVAILABLE_ERRORS)
    for path, method, endpoint, options in _ROUTES:
        add_route(app.router, path, endpoint, method, **options)
    return app
