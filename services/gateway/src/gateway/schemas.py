"""Wire formats: the order the gateway accepts and publishes, its answers, the movie docs."""

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

INT32_MAX = 2**31 - 1
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal(10) ** 10


def _to_decimal(value: Any) -> Decimal:
    """A JSON number or numeric string as an exact Decimal; booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be a number or a numeric string")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError("must be a number or a numeric string") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _positive_int(value: Any) -> int:
    number = _to_decimal(value)
    if not 1 <= number <= INT32_MAX:  # checked first: int() of 1e999999 would be huge
        raise ValueError(f"must be between 1 and {INT32_MAX}")
    if number != number.to_integral_value():
        raise ValueError("must be an integer")
    return int(number)


def _amount(value: Any) -> Decimal:
    number = _to_decimal(value)
    if number < 0:
        raise ValueError("must be greater than or equal to 0")
    if number >= MAX_AMOUNT:
        raise ValueError("must be less than 10000000000")
    if number != number.quantize(CENT, rounding="ROUND_DOWN"):
        raise ValueError("must have at most 2 decimal places")
    return abs(number).quantize(CENT)


PositiveInt32 = Annotated[
    int,
    BeforeValidator(_positive_int),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": INT32_MAX},
                {"type": "string", "pattern": r"^\s*[0-9]+\s*$"},
            ]
        }
    ),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": 10**10},
                {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]{1,2})?\s*$"},
            ],
            "description": "≥ 0, at most 2 decimals, < 10^10",
        }
    ),
]


class OrderCreate(BaseModel):
    """An order as a client posts it: numbers may arrive as strings ("20")."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": 7, "number_of_items": "2", "total_amount": "20.50"}]
        }
    )

    user_id: PositiveInt32
    number_of_items: PositiveInt32
    total_amount: Amount


def order_message(order_id: str, order: OrderCreate) -> dict[str, Any]:
    """The queue contract's body: integers, and the amount as a 2-decimal string."""
    return {
        "order_id": order_id,
        "user_id": order.user_id,
        "number_of_items": order.number_of_items,
        "total_amount": f"{order.total_amount:.2f}",
    }


class OrderAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"message": "Message posted", "order_id": "0b6f3c1e-5e0a-4a7e-9d1b-2f3c4d5e6f70"}
            ]
        }
    )
    message: str = "Message posted"
    order_id: str


class Order(BaseModel):
    """An order as billing stored it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "0b6f3c1e-5e0a-4a7e-9d1b-2f3c4d5e6f70",
                    "user_id": 7,
                    "number_of_items": 2,
                    "total_amount": "20.50",
                    "created_at": "2024-01-01T12:00:00Z",
                }
            ]
        }
    )
    order_id: str
    user_id: int
    number_of_items: int
    total_amount: str
    created_at: str


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class Error(BaseModel):
    error: str = Field(examples=["what is wrong"])
    details: list[ErrorDetail] | None = None


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    broker: str = Field(examples=["ok"])
    inventory: str = Field(examples=["ok"])
    error: str | None = None


class MovieCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"title": "Alien", "description": "In space…"}]}
    )
    title: str = Field(min_length=1, max_length=255, description="1 to 255 chars after trimming")
    description: str = Field(max_length=10_000)


class Movie(MovieCreate):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": 1, "title": "Alien", "description": "In space…"}]}
    )
    id: int
