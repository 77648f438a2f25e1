"""The syntax of an order, decided once: what the gateway accepts is what billing stores.

- `user_id`, `number_of_items`: a JSON integer (or a number with no fraction, `2.0`) or a string
  of ASCII digits (`"7"`, `"007"`), from 1 to 2^31 - 1.
- `total_amount`: a JSON number or a string of ASCII digits with at most two decimals (`"20"`,
  `"20.5"`, `"20.50"`), at least 0 and below 10^10 (it is stored as NUMERIC(12,2)).

Strings carry no sign, spaces, exponent, underscores or digits of other scripts (`"+1"`,
`" 12 "`, `"1e3"`, `"1_000"`, `"١٢"` are refused); booleans are not numbers. The field functions
are plain Python, so billing's queue path applies them without building a model.
"""

import re
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, WithJsonSchema

MAX_COUNT = 2**31 - 1
MAX_AMOUNT = Decimal(10) ** 10  # NUMERIC(12,2) holds values below 10^10
CENT = Decimal("0.01")
COUNT_PATTERN = r"^[0-9]+$"
AMOUNT_PATTERN = r"^[0-9]+(\.[0-9]{1,2})?$"
_COUNT = re.compile(r"0*([0-9]+)")  # group 1: the digits without leading zeros
_AMOUNT = re.compile(AMOUNT_PATTERN)
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # to say which rule a decimal string breaks


def to_count(value: object) -> int:
    """A positive 32-bit integer from a JSON integer, integral float or digit string."""
    if isinstance(value, bool):
        raise ValueError("must be a positive integer, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        number = int(value)
    elif isinstance(value, str) and (digits := _COUNT.fullmatch(value)):
        # Any number of leading zeros; more digits than MAX_COUNT has is out of range, never
        # parsed (int() of thousands of digits is slow, and refused past 4300).
        significant = digits[1]
        number = int(significant) if len(significant) <= len(str(MAX_COUNT)) else MAX_COUNT + 1
    else:
        raise ValueError("must be a positive integer or a string of digits")
    if not 1 <= number <= MAX_COUNT:
        raise ValueError(f"must be between 1 and {MAX_COUNT}")
    return number


def to_amount(value: object) -> Decimal:
    """An amount of money, exactly, with two decimals, from a JSON number or a decimal string."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, int):
        if not 0 <= value < MAX_AMOUNT:  # compared as an int: Decimal(10**5000) is slow
            raise ValueError(_range_error(value < 0))
        return Decimal(value).quantize(CENT)
    if isinstance(value, float):
        amount = Decimal(repr(value))  # the shortest text of the float: 0.1 is 0.1
        if not amount.is_finite():
            raise ValueError("must be a finite number")
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        if value.startswith("-"):
            raise ValueError(_range_error(negative=True))  # "-0" too: strings carry no sign
        amount = Decimal(value)
    else:
        raise ValueError('must be a number or a string of digits with at most 2 decimals ("20.50")')
    if not 0 <= amount < MAX_AMOUNT:
        raise ValueError(_range_error(amount < 0))
    if isinstance(value, str):  # as written: "20.500" has 3 decimals
        exact = _AMOUNT.fullmatch(value) is not None
    else:
        exact = amount == amount.quantize(CENT)
    if not exact:
        raise ValueError("must have at most 2 decimal places")
    return abs(amount.quantize(CENT))  # abs turns -0.00 (from the float -0.0) into 0.00


def _range_error(negative: bool) -> str:
    return "must not be negative" if negative else "must be less than 10000000000"


Count = Annotated[
    int,
    BeforeValidator(to_count),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                {"type": "string", "pattern": COUNT_PATTERN},
            ]
        }
    ),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(to_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": 10**10},
                {"type": "string", "pattern": AMOUNT_PATTERN},
            ],
            "description": "≥ 0, at most 2 decimals, < 10^10",
        }
    ),
]


class OrderFields(BaseModel):
    """The three fields of an order, validated as above; unknown fields are ignored."""

    user_id: Count
    number_of_items: Count
    total_amount: Amount


def amount_text(amount: Decimal) -> str:
    """The amount on the queue and in answers: a string with two decimals ("20.50")."""
    return f"{amount:.2f}"
