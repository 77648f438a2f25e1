"""The order syntax at its bounds (crud_common.orders): what the OpenAPI document's schema says
is what the validators apply, and an out-of-range value says on which side it is. Pure
functions, no services needed."""

from decimal import Decimal

import pytest
from crud_common.orders import CENT, OrderFields, to_amount, to_count

SCHEMA = OrderFields.model_json_schema()["properties"]


def documented(field: str, json_type: str) -> dict:
    """The schema's branch for JSON numbers (the other branch is a string pattern)."""
    return next(branch for branch in SCHEMA[field]["anyOf"] if branch["type"] == json_type)


@pytest.mark.parametrize("field", ["user_id", "number_of_items"])
def test_a_count_schema_documents_the_validators_bounds(field: str) -> None:
    bounds = documented(field, "integer")
    least, most = bounds["minimum"], bounds["maximum"]
    assert (to_count(least), to_count(most)) == (least, most)
    assert (to_count(str(least)), to_count(str(most))) == (least, most)
    for outside in (least - 1, most + 1, str(most + 1)):
        with pytest.raises(ValueError):
            to_count(outside)


def test_the_amount_schema_documents_the_validators_bounds() -> None:
    bounds = documented("total_amount", "number")
    least, beyond = Decimal(bounds["minimum"]), Decimal(bounds["exclusiveMaximum"])
    assert to_amount(bounds["minimum"]) == least
    assert to_amount(str(beyond - CENT)) == beyond - CENT  # the largest amount
    for outside in (str(least - CENT), bounds["exclusiveMaximum"], str(beyond)):
        with pytest.raises(ValueError):
            to_amount(outside)


@pytest.mark.parametrize("value", [-1, -0.01, "-0.01", "-0", "-5"])
def test_a_negative_amount_says_it_is_negative(value: object) -> None:
    with pytest.raises(ValueError, match=r"^must not be negative$"):
        to_amount(value)


@pytest.mark.parametrize("value", [10**10, 1e10, "10000000000", "10000000000.00"])
def test_a_too_large_amount_says_its_limit(value: object) -> None:
    with pytest.raises(ValueError, match=r"^must be less than 10000000000$"):
        to_amount(value)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_float_that_is_no_number_says_so(value: float) -> None:
    # Not a range error: infinity is no amount (NaN is not even comparable).
    with pytest.raises(ValueError, match=r"^must be a finite number$"):
        to_amount(value)
