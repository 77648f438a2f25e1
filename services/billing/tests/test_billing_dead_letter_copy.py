"""A dead letter is the message as it was published (billing.broker.persistent_copy, used by the
consumer's dead-lettering, `dlq replay` and `queues migrate`): body and properties kept, the
headers given, persistent. Pure functions on a delivery as aiormq hands it over; no broker."""

from datetime import UTC, datetime

import aio_pika
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from billing.consumer import ORIGINAL_QUEUE_HEADER, REASON_HEADER, dead_letter

PUBLISHED = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "priority": 3,
    "correlation_id": "req-9",
    "reply_to": "replies",
    "message_id": "poison-1",
    "timestamp": datetime(2026, 12, 3, 15, 0, tzinfo=UTC),
    "app_id": "gateway",
}


def delivered(body: bytes, **properties: object) -> DeliveredMessage:
    header = ContentHeader(body_size=len(body), properties=Basic.Properties(**properties))
    delivery = Basic.Deliver(consumer_tag="c", delivery_tag=1, routing_key="billing_queue")
    return DeliveredMessage(delivery=delivery, header=header, body=body, channel=None)  # type: ignore[arg-type]


def test_a_dead_letter_keeps_the_body_and_properties_and_adds_the_reason() -> None:
    message = delivered(
        b"poison",
        **PUBLISHED,
        message_type="order",
        headers={"x-app": "test"},
        delivery_mode=1,
        expiration="60000",
        user_id="crud_master",
    )
    dead = dead_letter(message, "not JSON", "billing_queue")
    assert dead.body == b"poison"
    assert {name: getattr(dead, name) for name in PUBLISHED} == PUBLISHED
    assert dead.type == "order"
    assert dead.headers == {
        "x-app": "test",
        REASON_HEADER: "not JSON",
        ORIGINAL_QUEUE_HEADER: "billing_queue",
    }
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    # Not carried over: an expiry would run again, and the broker checks user_id on publish.
    assert (dead.expiration, dead.user_id) == (None, None)


def test_a_long_reason_is_cut_to_1000_characters() -> None:
    dead = dead_letter(delivered(b"x"), "y" * 5000, "billing_queue")
    assert dead.headers[REASON_HEADER] == "y" * 1000
