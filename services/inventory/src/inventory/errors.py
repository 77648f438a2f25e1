"""Errors that carry their HTTP status, and the one set of handlers rendering them as JSON."""

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from crud_common import errors as common
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from inventory.db import UNAVAILABLE_ERRORS
from inventory.responses import JSONResponse

log = logging.getLogger(__name__)


class AppError(common.ServiceError):
    pass


class MovieNotFound(AppError):
    status_code = 404

    def __init__(self, movie_id: object) -> None:
        super().__init__(f"movie {movie_id} not found")


class MalformedJSON(AppError):
    status_code = 400

    def __init__(self) -> None:
        super().__init__(common.MALFORMED_JSON)


class BodyTooLarge(AppError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


class ValidationFailed(AppError):
    status_code = 422

    @classmethod
    def from_errors(
        cls, errors: Iterable[Any], prefix: Sequence[str | int] = ()
    ) -> "ValidationFailed":
        details = common.validation_details(errors, prefix)
        summary = "; ".join(
            f"{'.'.join(str(part) for part in d['loc']) or 'body'}: {d['msg']}" for d in details
        )
        return cls(f"invalid request: {summary}", details)


def _error(
    status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return _error(exc.status_code, exc.body())


async def _request_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if common.is_malformed_json(errors):
        return _error(400, MalformedJSON().body())
    return _error(422, ValidationFailed.from_errors(errors).body())


def _allowed_methods(request: Request) -> str:
    # Starlette's Allow header names the first route matching the path only; a path has one
    # route per method here, so gather them all.
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = common.http_error_message(exc.status_code, exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return _error(exc.status_code, common.error_body(message), headers)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable during %s %s: %r", request.method, request.url.path, exc)
    return _error(503, common.error_body("database unavailable"))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this response is sent, so the server (uvicorn)
    # logs the traceback once; logging it here too would print it twice.
    return _error(500, common.error_body(common.INTERNAL_ERROR))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(exc_type, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
