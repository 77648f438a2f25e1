"""Order shapes and their validation: pure functions, shared by the HTTP API and the consumer.

The fields' syntax is crud_common.orders' (the gateway's too): numbers may arrive as JSON
numbers or digit strings ("20" -> 20); booleans are never numbers.
The queue's hot path (`parse_order_message`) applies the same field functions without building a
pydantic model, and leaves anything unusual (and every error) to the model, so both paths accept,
coerce and reject exactly alike.
"""

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NamedTuple
from uuid import UUID

import orjson
from crud_common.orders import OrderFields, amount_text, to_amount, to_count
from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError

# The canonical text form of a UUID: for it, UUID(text) is what the model's UUID field gives.
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class InvalidOrder(ValueError):
    """A message that can never be stored; the text says what is wrong."""


class NewOrder(NamedTuple):
    order_id: UUID
    user_id: int
    number_of_items: int
    total_amount: Decimal


class OrderCreate(OrderFields):
    """What a client or a message sends; `order_id` is optional."""

    model_config = ConfigDict(extra="ignore")

    order_id: UUID | None = None

    def to_new_order(self) -> NewOrder:
        order_id = self.order_id or uuid.uuid4()
        return NewOrder(order_id, self.user_id, self.number_of_items, self.total_amount)


class OrderPublic(BaseModel):
    """The wire format of a stored order (total_amount as a 2-decimal string)."""

    order_id: UUID
    user_id: int
    number_of_items: int
    total_amount: Annotated[Decimal, PlainSerializer(amount_text, return_type=str)]
    created_at: datetime


def _reason(errors: Iterable[Mapping[str, Any]]) -> str:
    """Why a message can never be stored: "user_id: must be ...; number_of_items: ..."."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: "
        f"{str(error['msg']).removeprefix('Value error, ')}"
        for error in errors
    )


def parse_order_id(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _order_fields(data: dict[str, Any]) -> tuple[UUID | None, int, int, Decimal] | None:
    """The fields of a well-formed message, or None to let the model decide (errors included).

    Calls the model's own field validators, so a value passing here gets the model's result.
    """
    order_id = data.get("order_id")
    if order_id is not None:
        if not (type(order_id) is str and _CANONICAL_UUID.fullmatch(order_id)):
            return None
        order_id = UUID(order_id)
    try:
        return (
            order_id,
            to_count(data["user_id"]),
            to_count(data["number_of_items"]),
            to_amount(data["total_amount"]),
        )
    except (KeyError, ValueError):
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
    fields = _order_fields(data)
    if fields is None:
        try:
            order = OrderCreate.model_validate(data)
        except ValidationError as exc:
            raise InvalidOrder(_reason(exc.errors())) from None
        fields = (order.order_id, order.user_id, order.number_of_items, order.total_amount)
    order_id, user_id, number_of_items, total_amount = fields
    if order_id is None:
        order_id = (parse_order_id(message_id) if message_id else None) or uuid.uuid4()
    return NewOrder(order_id, user_id, number_of_items, total_amount)
