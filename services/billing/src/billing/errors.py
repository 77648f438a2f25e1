"""Errors that carry their HTTP status, and the one set of handlers rendering them as JSON."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from billing.db import UNAVAILABLE
from billing.schemas import error_details

log = logging.getLogger(__name__)


class BillingError(Exception):
    status_code = 500
    message = "internal error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class OrderNotFound(BillingError):
    status_code = 404
    message = "order not found"


def error_response(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _billing_error(_: Request, exc: BillingError) -> JSONResponse:
    return error_response(exc.status_code, exc.message)


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    if any(error.get("type") == "json_invalid" for error in exc.errors()):
        return error_response(400, "malformed JSON body")
    return error_response(422, "invalid order", details=error_details(exc.errors()))


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unreachable: %s", exc)
    return error_response(503, "database unreachable")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal error")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BillingError, _billing_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
