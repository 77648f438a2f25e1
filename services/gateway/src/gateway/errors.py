"""The gateway's errors, each carrying its HTTP status (crud_common.errors' family); its FastAPI
part answers them, and every other error, with crud_common.handlers."""

from typing import Any

import orjson
from crud_common import errors as common
from fastapi.responses import Response


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
