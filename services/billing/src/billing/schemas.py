"""Order shapes and their validation: pure functions, shared by the HTTP API and the consumer.

Numbers may arrive as JSON numbers or strings ("20" -> 20); booleans are never numbers.
"""

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NamedTuple
from uuid import UUID

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

MAX_INT = 2**31 - 1
MAX_AMOUNT = Decimal(10) ** 10  # NUMERIC(12,2) holds values below 10^10
CENT = Decimal("0.01")
_INTEGER = re.compile(r"[+]?\d{1,12}")


class InvalidOrder(ValueError):
    """A message that can never be stored; the text says what is wrong."""


def to_positive_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a positive integer, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError("must be a positive integer")
    if not 0 < number <= MAX_INT:
        raise ValueError(f"must be between 1 and {MAX_INT}")
    return number


def to_amount(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("must be a decimal number, not a boolean")
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int | str):
        text = str(value).strip()
    else:
        raise ValueError("must be a decimal number")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError("must be a decimal number") from None
    if not amount.is_finite():
        raise ValueError("must be a finite decimal number")
    if amount < 0:
        raise ValueError("must not be negative")
    if amount >= MAX_AMOUNT:
        raise ValueError("must be less than 10000000000")
    if amount != amount.quantize(CENT):
        raise ValueError("must have at most 2 decimal places")
    return abs(amount.quantize(CENT))  # abs turns -0.00 into 0.00


PositiveInt = Annotated[int, BeforeValidator(to_positive_int)]
Amount = Annotated[Decimal, BeforeValidator(to_amount)]


class NewOrder(NamedTuple):
    order_id: UUID
    user_id: int
    number_of_items: int
    total_amount: Decimal


class OrderCreate(BaseModel):
    """What a client or a message sends; `order_id` is optional."""

    model_config = ConfigDict(extra="ignore")

    user_id: PositiveInt
    number_of_items: PositiveInt
    total_amount: Amount
    order_id: UUID | None = None

    def to_new_order(self, fallback_id: UUID | None = None) -> NewOrder:
        order_id = self.order_id or fallback_id or uuid.uuid4()
        return NewOrder(order_id, self.user_id, self.number_of_items, self.total_amount)


class OrderPublic(BaseModel):
    """The wire format of a stored order (total_amount as a 2-decimal string)."""

    order_id: UUID
    user_id: int
    number_of_items: int
    total_amount: Annotated[Decimal, PlainSerializer(lambda d: f"{d:.2f}", return_type=str)]
    created_at: datetime


def error_details(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors in plain form: [{"loc": "body.user_id", "msg": "..."}]."""
    return [
        {
            "loc": ".".join(str(part) for part in error["loc"]),
            "msg": str(error["msg"]).removeprefix("Value error, "),
        }
        for error in errors
    ]


def parse_order_id(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def parse_order_message(body: bytes, message_id: str | None = None) -> NewOrder:
    """Validate a queued message body; raise InvalidOrder saying why it can never be stored.

    The order id comes from the body, else from the AMQP message_id when it is a UUID, else a
    new one: only publishers that set an id get idempotent redelivery.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidOrder("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidOrder("body is not a JSON object")
    try:
        order = OrderCreate.model_validate(data)
    except ValidationError as exc:
        reason = "; ".join(f"{d['loc']}: {d['msg']}" for d in error_details(exc.errors()))
        raise InvalidOrder(reason) from None
    return order.to_new_order(parse_order_id(message_id) if message_id else None)
