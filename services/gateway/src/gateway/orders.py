"""POST /api/billing[/]: the order intake, served by the gateway itself (the route in app.py only
documents it).

The answers are those of a FastAPI body route: the body is read as JSON whatever its Content-Type
(`curl -d` sends a form type) and validated by `OrderCreate` itself (schemas.py: the documented
schema is the one applied); malformed JSON → 400 `{"error": "malformed JSON body"}`, an invalid
order → 422 `{"error": "invalid request", "details": [{"loc": ["body", field], "msg": …}]}`; a
valid one gets a new order id, is published with the request id as correlation id, and is
answered 200 once RabbitMQ confirmed it, 503 when the broker is down, did not confirm in time or
returned it.
"""

import logging
from uuid import uuid4

import orjson
from crud_common.errors import MALFORMED_JSON, error_body, is_malformed_json, validation_details
from pydantic import ValidationError

from .errors import BrokerUnavailable, GatewayError
from .metrics import Metrics
from .publisher import OrderPublisher
from .schemas import OrderCreate, order_message

log = logging.getLogger(__name__)

MALFORMED = orjson.dumps(error_body(MALFORMED_JSON))
BROKER_DOWN = orjson.dumps(BrokerUnavailable().body())
INTERNAL = orjson.dumps(GatewayError().body())


def invalid_order(exc: ValidationError) -> tuple[int, bytes]:
    """400 for malformed JSON, else 422 with each error's location in the body and message."""
    errors = exc.errors(include_url=False)
    if is_malformed_json(errors):
        return 400, MALFORMED
    details = validation_details(errors, ("body",))
    return 422, orjson.dumps(error_body("invalid request", details))


class OrderIntake:
    def __init__(self, publisher: OrderPublisher, metrics: Metrics) -> None:
        self.publisher = publisher
        self.metrics = metrics

    async def accept(self, body: bytes, correlation_id: str) -> tuple[int, bytes]:
        """(status, JSON answer) for an order's body."""
        try:
            order = OrderCreate.model_validate_json(body)
        except ValidationError as exc:
            return invalid_order(exc)
        order_id = str(uuid4())
        try:
            await self.publisher.publish(order_message(order_id, order), correlation_id)
        except BrokerUnavailable:
            self.metrics.published_unavailable.inc()
            return 503, BROKER_DOWN
        except Exception:  # a bug: answered like FastAPI's handler (errors.py) would
            log.exception("unhandled error")
            return 500, INTERNAL
        self.metrics.published_ok.inc()
        return 200, b'{"message":"Message posted","order_id":"%s"}' % order_id.encode()
