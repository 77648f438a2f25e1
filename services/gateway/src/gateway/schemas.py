"""Wire formats: the order the gateway accepts and publishes, its answers, the movie docs."""

from typing import Any

from crud_common.orders import OrderFields, amount_text
from pydantic import BaseModel, ConfigDict, Field


# The fields and their syntax are crud_common.orders', which billing applies to the message.
class OrderCreate(OrderFields):
    """An order as a client posts it: numbers may arrive as strings ("20")."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": 7, "number_of_items": "2", "total_amount": "20.50"}]
        }
    )


def order_message(order_id: str, order: OrderCreate) -> dict[str, Any]:
    """The queue contract's body: integers, and the amount as a 2-decimal string."""
    return {
        "order_id": order_id,
        "user_id": order.user_id,
        "number_of_items": order.number_of_items,
        "total_amount": amount_text(order.total_amount),
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
