"""Validation of orders and queued messages: pure functions, no services needed."""

import uuid
from decimal import Decimal

import orjson
import pytest
from crud_common.orders import to_amount, to_count
from pydantic import ValidationError

from billing.schemas import (
    InvalidOrder,
    OrderCreate,
    OrderPublic,
    parse_order_id,
    parse_order_message,
)

VALID = {"user_id": 7, "number_of_items": 2, "total_amount": "20.50"}


@pytest.mark.parametrize(
    ("value", "expected"), [(20, 20), ("20", 20), (20.0, 20), (2**31 - 1, 2**31 - 1)]
)
def test_positive_int_coerces_numbers_and_digit_strings(value: object, expected: int) -> None:
    assert to_count(value) == expected


@pytest.mark.parametrize(
    "value", [0, -1, "0", "-3", 2**31, "abc", "", "2.5", 2.5, True, False, None, [1], {"a": 1}]
)
def test_positive_int_rejects_non_positive_non_integers_and_booleans(value: object) -> None:
    with pytest.raises(ValueError):
        to_count(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20.50", Decimal("20.50")),
        ("20", Decimal("20.00")),
        (20, Decimal("20.00")),
        (20.5, Decimal("20.50")),
        (0, Decimal("0.00")),
        (-0.0, Decimal("0.00")),
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


# --- boundaries: many digits, unknown fields ---------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0000000000007", 7),  # leading zeros: any number of them
        ("0" * 5000 + "42", 42),
        ("002147483647", 2**31 - 1),
    ],
)
def test_digit_strings_of_many_digits_count_by_value(value: str, expected: int) -> None:
    assert to_count(value) == expected


@pytest.mark.parametrize("value", ["2147483648", "02147483648", "9" * 11, "9" * 20, "1" * 5000])
def test_digit_strings_too_large_are_out_of_range(value: str) -> None:
    # Refused for their size (not parsed: int() of thousands of digits is slow, or refused).
    with pytest.raises(ValueError, match="must be between 1 and 2147483647"):
        to_count(value)


@pytest.mark.parametrize("value", ["0" * 30, "+", "++1", "1 2", "0x10", "1_000"])
def test_strings_that_are_no_positive_integer_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        to_count(value)


# ASCII digits only: no sign, space, exponent, fraction, underscore or digits of another script.
@pytest.mark.parametrize(
    "value", ["+1", "-0", " 12 ", "12 ", "1e3", "1_000", "\u0661\u0662", "\uff11\uff12", "12.0"]
)
def test_digit_strings_are_ascii_digits_only(value: str) -> None:
    with pytest.raises(ValueError, match="must be a positive integer or a string of digits"):
        to_count(value)


@pytest.mark.parametrize(
    "value",
    [
        "+1",
        " 12 ",
        "12\n",
        "1e3",
        "1E2",
        "1_000",
        "\u0661\u0662",
        "12.",
        ".5",
        "NaN",
    ],
)
def test_amount_strings_are_ascii_digits_with_at_most_two_decimals(value: str) -> None:
    with pytest.raises(ValueError, match="string of digits with at most 2 decimals"):
        to_amount(value)


@pytest.mark.parametrize("value", ["-0", "-5", "-20.50", -1, -0.01])
def test_a_negative_amount_is_refused_as_negative(value: object) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        to_amount(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0000000000020.50", Decimal("20.50")),
        ("0" * 5000 + "9999999999.99", Decimal("9999999999.99")),
        ("0.0", Decimal("0.00")),
    ],
)
def test_amounts_of_many_digits_count_by_value(value: str, expected: Decimal) -> None:
    assert str(to_amount(value)) == str(expected)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("9" * 30, "must be less than 10000000000"),
        ("10000000000.00", "must be less than 10000000000"),
        ("20.500", "at most 2 decimal places"),
        ("1.005", "at most 2 decimal places"),
        pytest.param(10**400, "must be less than 10000000000", id="10**400"),
        pytest.param(-(10**400), "must not be negative", id="-10**400"),
        (1e300, "must be less than 10000000000"),
        (20.501, "at most 2 decimal places"),
        (1e-7, "at most 2 decimal places"),
    ],
)
def test_amounts_of_many_digits_out_of_bounds_say_why(value: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        to_amount(value)


def test_a_message_with_many_digit_strings_is_stored_by_value() -> None:
    body = {**VALID, "user_id": "0" * 100 + "7", "number_of_items": "00002"}
    assert parse_order_message(orjson.dumps(body), None)[1:] == (7, 2, Decimal("20.50"))
    with pytest.raises(InvalidOrder, match="user_id: must be between 1 and 2147483647"):
        parse_order_message(orjson.dumps({**VALID, "user_id": "9" * 40}), None)


UNKNOWN_FIELDS = {"currency": "EUR", "id": 99, "created_at": "1999-01-01T00:00:00Z", "x": [1]}


def test_an_order_body_with_unknown_fields_is_taken_without_them() -> None:
    # Ignored, not refused: a client (or a newer gateway) adding a field does not lose orders.
    order = OrderCreate.model_validate({**VALID, **UNKNOWN_FIELDS})
    assert order.model_dump() == OrderCreate.model_validate(VALID).model_dump()


@pytest.mark.parametrize(
    "order_id",
    [str(uuid.UUID(int=5)), uuid.UUID(int=5).hex, None],  # canonical: the fast path; hex: the model
)
def test_a_queued_message_with_unknown_fields_is_stored_without_them(order_id) -> None:
    fields = {**VALID, "order_id": order_id} if order_id else VALID
    message_id = str(uuid.UUID(int=6))
    expected = parse_order_message(orjson.dumps(fields), message_id)
    with_unknown = parse_order_message(orjson.dumps({**fields, **UNKNOWN_FIELDS}), message_id)
    stored_id = uuid.UUID(int=5) if order_id else uuid.UUID(int=6)
    assert with_unknown == expected == (stored_id, 7, 2, Decimal("20.50"))


@pytest.mark.parametrize("value", [1, "1", "01", 1.0])
def test_one_is_the_smallest_positive_integer(value: object) -> None:
    assert to_count(value) == 1


def test_a_boolean_amount_is_refused_as_a_boolean() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        to_amount(True)


def test_a_new_order_keeps_its_order_id_or_gets_a_fresh_one() -> None:
    order_id = uuid.uuid4()
    kept = OrderCreate.model_validate({**VALID, "order_id": str(order_id)}).to_new_order()
    assert kept == (order_id, 7, 2, Decimal("20.50"))
    first = OrderCreate.model_validate(VALID).to_new_order()
    second = OrderCreate.model_validate(VALID).to_new_order()
    assert isinstance(first.order_id, uuid.UUID) and first.order_id != second.order_id
    assert first[1:] == (7, 2, Decimal("20.50"))
