"""Errors that carry their HTTP status, and the one handler set that renders them as JSON."""

import logging
from typing import Any

import orjson
from crud_common import errors as common
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class GatewayError(common.ServiceError):
    pass


class BrokerUnavailable(GatewayError):
    status_code = 503
    message = "message broker unavailable"


class OrderNotFound(GatewayError):
    status_code = 404
    message = "order not found"


class BillingUnreachable(GatewayError):
    status_code = 503
    message = "billing unreachable"


class BillingTimedOut(GatewayError):
    status_code = 504
    message = "billing timed out"


class BillingBadAnswer(GatewayError):
    status_code = 502
    message = "billing answered with an error"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> Response:
    return json_response(common.error_body(message, details), status)


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return json_response(exc.body(), exc.status_code)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if common.is_malformed_json(errors):
        return error_response(400, common.MALFORMED_JSON)
    return error_response(422, "invalid request", common.validation_details(errors))


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(
        exc.status_code, common.http_error_message(exc.status_code, exc.detail)
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, common.INTERNAL_ERROR)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
