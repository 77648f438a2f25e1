"""Errors that carry their HTTP status, and the one set of handlers rendering them as JSON."""

import logging

from crud_common import errors as common
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from billing.db import UNAVAILABLE

log = logging.getLogger(__name__)


class BillingError(common.ServiceError):
    pass


class OrderNotFound(BillingError):
    status_code = 404
    message = "order not found"


def error_response(
    status: int, message: str, details: list[dict[str, object]] | None = None
) -> JSONResponse:
    return JSONResponse(common.error_body(message, details), status_code=status)


async def _billing_error(_: Request, exc: BillingError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code)


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    message = common.http_error_message(exc.status_code, exc.detail)
    return JSONResponse(
        common.error_body(message), status_code=exc.status_code, headers=exc.headers
    )


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    if common.is_malformed_json(exc.errors()):
        return error_response(400, common.MALFORMED_JSON)
    return error_response(422, "invalid order", common.validation_details(exc.errors()))


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unreachable: %s", exc)
    return error_response(503, "database unreachable")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, common.INTERNAL_ERROR)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BillingError, _billing_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
