"""Validation of orders and queued messages: pure functions, no services needed."""

import uuid
from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError

from billing.schemas import (
    InvalidOrder,
    OrderCreate,
    OrderPublic,
    parse_order_id,
    parse_order_message,
    to_amount,
    to_positive_int,
)

VALID = {"user_id": 7, "number_of_items": 2, "total_amount": "20.50"}


@pytest.mark.parametrize(
    ("value", "expected"), [(20, 20), ("20", 20), (" 20 ", 20), (20.0, 20), (2**31 - 1, 2**31 - 1)]
)
def test_positive_int_coerces_numbers_and_digit_strings(value: object, expected: int) -> None:
    assert to_positive_int(value) == expected


@pytest.mark.parametrize(
    "value", [0, -1, "0", "-3", 2**31, "abc", "", "2.5", 2.5, True, False, None, [1], {"a": 1}]
)
def test_positive_int_rejects_non_positive_non_integers_and_booleans(value: object) -> None:
    with pytest.raises(ValueError):
        to_positive_int(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20.50", Decimal("20.50")),
        ("20", Decimal("20.00")),
        (20, Decimal("20.00")),
        (20.5, Decimal("20.50")),
        (0, Decimal("0.00")),
        ("-0", Decimal("0.00")),
        ("9999999999.99", Decimal("9999999999.99")),
    ],
)
def test_amount_coerces_to_two_decimals(value: object, expected: Decimal) -> None:
    amount = to_amount(value)
    assert amount == expected
    assert str(amount) == str(expected)


@pytest.mark.parametrize(
    "value",
    ["-0.01", -1, "20.505", 0.001, "1e10", "10000000000", "NaN", "Infinity", "abc", "", True, None],
)
def test_amount_rejects_negatives_three_decimals_overflow_and_non_numbers(value: object) -> None:
    with pytest.raises(ValueError):
        to_amount(value)


def test_order_create_reports_every_bad_field() -> None:
    with pytest.raises(ValidationError) as info:
        OrderCreate.model_validate({"user_id": True, "total_amount": "1.234"})
    fields = {error["loc"][0] for error in info.value.errors()}
    assert fields == {"user_id", "number_of_items", "total_amount"}


def test_message_with_order_id_keeps_it_and_coerces_strings() -> None:
    order_id = uuid.uuid4()
    body = orjson.dumps({**VALID, "user_id": "7", "order_id": str(order_id)})
    order = parse_order_message(body, message_id=str(uuid.uuid4()))
    assert order == (order_id, 7, 2, Decimal("20.50"))


def test_message_without_order_id_uses_a_uuid_message_id() -> None:
    message_id = uuid.uuid4()
    assert parse_order_message(orjson.dumps(VALID), str(message_id)).order_id == message_id


def test_message_without_any_id_gets_a_fresh_one() -> None:
    first = parse_order_message(orjson.dumps(VALID), "not-a-uuid").order_id
    second = parse_order_message(orjson.dumps(VALID), None).order_id
    assert isinstance(first, uuid.UUID) and first != second


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({**VALID, "total_amount": "-1"}), "total_amount"),
        (orjson.dumps({**VALID, "number_of_items": "two"}), "number_of_items"),
        (orjson.dumps({"user_id": 7, "total_amount": "1"}), "number_of_items: Field required"),
        (orjson.dumps({**VALID, "order_id": "nope"}), "order_id"),
        (orjson.dumps({**VALID, "user_id": False}), "user_id"),
    ],
)
def test_invalid_messages_say_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidOrder, match=reason):
        parse_order_message(body, None)


def test_parse_order_id_accepts_only_uuids() -> None:
    order_id = uuid.uuid4()
    assert parse_order_id(str(order_id)) == order_id
    assert parse_order_id("42") is None
    assert parse_order_id("") is None


def test_public_order_renders_amount_as_two_decimal_string() -> None:
    order = OrderPublic(
        order_id=uuid.uuid4(),
        user_id=1,
        number_of_items=1,
        total_amount=Decimal("20.5"),
        created_at="2024-01-01T00:00:00Z",
    )
    assert orjson.loads(order.model_dump_json())["total_amount"] == "20.50"
