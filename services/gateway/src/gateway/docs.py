"""What the gateway's OpenAPI document says beyond its FastAPI routes: the movies routes (for the
document only: front.Gateway proxies these paths before routing), and what the ASGI entry adds to
every operation (X-Request-ID, 401, 413, 429)."""

from collections.abc import Callable
from typing import Annotated, Any

from crud_common.routes import add_route
from fastapi import APIRouter, FastAPI, Path, Query, Response

from .errors import GatewayError
from .schemas import Error, Movie, MovieCreate, OrderCreate


def error_doc(description: str, example: str) -> dict[str, Any]:
    return {
        "model": Error,
        "description": description,
        "content": {"application/json": {"example": {"error": example}}},
    }


def both(router: APIRouter, path: str, method: str, **kwargs: Any) -> Callable[[Any], Any]:
    """Registers a route with and without the trailing slash (the latter undocumented)."""

    def register(endpoint: Any) -> Any:
        add_route(router, path, endpoint, method, **kwargs)
        return endpoint

    return register


# --- movies: documentation only; front.Gateway proxies these paths before routing -------------
movies = APIRouter(tags=["movies"])

_UPSTREAM_ERRORS = {
    502: error_doc("Inventory unreachable", "inventory unreachable"),
    504: error_doc("Inventory did not answer in time", "inventory timed out"),
}
_NOT_FOUND = {404: error_doc("No movie with this id", "movie not found")}
_INVALID_MOVIE = {
    400: error_doc("Malformed JSON body", "malformed JSON body"),
    422: {"model": Error, "description": "Invalid movie"},
}
MovieId = Annotated[int, Path(description="Movie id (a non-integer id is 404 or 422)")]


async def _proxied() -> None:
    raise GatewayError("movies are proxied before routing")


@both(
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


@both(
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


@both(
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


@both(
    movies,
    "/api/movies/{id}",
    "GET",
    response_model=Movie,
    summary="One movie",
    responses={**_NOT_FOUND, 422: {"model": Error}, **_UPSTREAM_ERRORS},
)
async def get_movie(id: MovieId) -> None:
    await _proxied()


@both(
    movies,
    "/api/movies/{id}",
    "PUT",
    response_model=Movie,
    summary="Replace a movie",
    responses={**_NOT_FOUND, **_INVALID_MOVIE, **_UPSTREAM_ERRORS},
)
async def update_movie(movie: MovieCreate, id: MovieId) -> None:
    await _proxied()


@both(
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


def document(app: FastAPI) -> Callable[[], dict[str, Any]]:
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
