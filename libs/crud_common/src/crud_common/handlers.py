"""The exception handlers of the three services' FastAPI apps: every error answered in
crud_common.errors' JSON shape, never an HTML page or a bare 500."""

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match, Route

from crud_common import errors

log = logging.getLogger(__name__)

Details = list[dict[str, Any]]


def install_error_handlers(
    app: FastAPI,
    *,
    invalid: Callable[[Details], str],
    database_errors: tuple[type[BaseException], ...],
) -> None:
    """`invalid(details)`: the `error` of a 422; `database_errors`: what a request meets while
    the database cannot be reached (503, not 500)."""

    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.ServiceError)
        return JSONResponse(exc.body(), exc.status_code)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if errors.is_malformed_json(exc.errors()):
            return JSONResponse(errors.error_body(errors.MALFORMED_JSON), 400)
        details = errors.validation_details(exc.errors())
        return JSONResponse(errors.error_body(invalid(details), details), 422)

    app.add_exception_handler(errors.ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for exc_type in database_errors:
        app.add_exception_handler(exc_type, _database_unreachable)
    app.add_exception_handler(Exception, _unexpected)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = errors.http_error_message(exc.status_code, exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(errors.error_body(message), exc.status_code, headers)


def _allowed_methods(request: Request) -> str:
    # Starlette's Allow header names the first route matching the path only; a path may have one
    # route per method, so gather them all.
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable during %s %s: %r", request.method, request.url.path, exc)
    return JSONResponse(errors.error_body("database unreachable"), 503)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # One line carrying the request id; the traceback is the server's (uvicorn logs it once,
    # as Starlette re-raises the exception after this answer is sent).
    log.error("unhandled error", extra={"error": repr(exc)})
    return JSONResponse(errors.error_body(errors.INTERNAL_ERROR), 500)
