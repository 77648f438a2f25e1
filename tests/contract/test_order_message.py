"""The queue contract between the gateway (publisher) and billing (consumer).

Each side keeps its own definition (services never import each other); this test imports both
and fails when they drift: every order the gateway accepts must be a message billing stores with
the same values, and both must name and declare the same queue.
"""

import asyncio
import json
import re
import uuid
from decimal import Decimal

import aio_pika
import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing import broker, migrate
from billing.config import Settings as BillingSettings
from billing.config import get_settings as billing_settings
from billing.consumer import Consumer
from billing.db import create_pool
from billing.observability import REGISTRY
from billing.schemas import parse_order_message
from gateway.config import Settings as GatewaySettings
from gateway.publisher import OrderPublisher
from gateway.publisher import queue_arguments as gateway_queue_arguments
from gateway.schemas import OrderCreate, order_message
from platform_processes import broker_url
from polling import eventually


def gateway_body(order_id: str, order: OrderCreate) -> bytes:
    """What gateway.publisher.OrderPublisher.publish puts on the wire."""
    return orjson.dumps(order_message(order_id, order))


def assert_stored_unchanged(body: bytes) -> bool:
    """False when the gateway refuses `body` (422: never queued); else billing must store the
    message the gateway publishes for it, with the values the client wrote."""
    try:
        order = OrderCreate.model_validate_json(body)
    except ValidationError:
        return False
    order_id = str(uuid.uuid4())
    stored = parse_order_message(gateway_body(order_id, order), message_id=order_id)
    sent = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    assert stored.order_id == uuid.UUID(order_id)
    assert stored.user_id == Decimal(sent["user_id"]) == order.user_id
    assert stored.number_of_items == Decimal(sent["number_of_items"]) == order.number_of_items
    assert stored.total_amount == Decimal(sent["total_amount"]) == order.total_amount
    assert stored.total_amount == stored.total_amount.quantize(Decimal("0.01"))
    return True


def body_of(user_id: str, number_of_items: str, total_amount: str) -> bytes:
    """An order body from its values' JSON texts, as a client writes them."""
    return (
        f'{{"user_id": {user_id}, "number_of_items": {number_of_items}, '
        f'"total_amount": {total_amount}}}'
    ).encode()


@pytest.mark.parametrize(
    "values",
    [
        ("3", "5", "20.5"),
        ('"3"', '"5"', '"20.50"'),
        ('"007"', "1.0", '"0"'),
        (str(2**31 - 1), "1", '"9999999999.99"'),
        ("1", "1", "1e2"),  # a JSON number may have an exponent; a string may not
        ("1", "1", "-0.0"),
        ("1", "1", "0.1"),
    ],
)
def test_an_order_the_gateway_accepts_is_stored_by_billing_unchanged(values):
    assert assert_stored_unchanged(body_of(*values))


@pytest.mark.parametrize(
    "values",
    [
        ('" 7 "', "1", "1"),
        ('"+7"', "1", "1"),
        ('"1e3"', "1", "1"),
        ('"1_000"', "1", "1"),
        ('"\u0661\u0662"', "1", "1"),  # Arabic-Indic digits, as a JSON escape
        ("1", "1", '"-0"'),
        ("1", "1", '"1e2"'),
        ("1", "1", '" 12 "'),
        ("1", "1", '"20.500"'),
    ],
)
def test_numeric_strings_other_than_ascii_digits_are_refused_by_the_gateway(values):
    assert not assert_stored_unchanged(body_of(*values))


# JSON texts of values, as clients write them: mostly plausible, often odd.
number_texts = st.from_regex(  # JSON numbers of at most 15 significant digits (a float's)
    r"-?(0|[1-9][0-9]{0,9})(\.[0-9]{1,4})?([eE][-+]?[0-9]{1,2})?", fullmatch=True
)
digit_strings = st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,3})?", fullmatch=True)
odd_strings = st.text(alphabet="0123456789.+-eE_ \t\n\u0661\u0662\uff11\u0967", max_size=14)
plausible = st.one_of(
    st.integers(1, 2**31 - 1).map(str),
    st.decimals(min_value=0, max_value=10**10 - 1, places=2).map(str),  # as a JSON number
    st.one_of(st.integers(1, 2**31 - 1).map(str), digit_strings).map(json.dumps),
)
value_texts = st.one_of(
    plausible,
    plausible,
    number_texts,
    st.integers(-10, 2**32).map(str),
    odd_strings.map(json.dumps),
    st.sampled_from(["true", "false", "null", "NaN", "-Infinity", "[]", "{}", '""']),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_id=value_texts, number_of_items=value_texts, total_amount=value_texts)
def test_every_order_body_the_gateway_accepts_billing_stores_unchanged(
    user_id, number_of_items, total_amount
):
    body = body_of(user_id, number_of_items, total_amount)
    if assert_stored_unchanged(body):
        for text in (user_id, number_of_items, total_amount):  # strings: ASCII digits only
            assert not text.startswith('"') or re.fullmatch(r'"[0-9]+(\.[0-9]{1,2})?"', text)


def test_both_sides_name_the_same_queue_and_dead_letter_queue(monkeypatch):
    gateway_default = GatewaySettings.model_fields["billing_queue"].default
    billing_default = BillingSettings.model_fields["billing_queue"].default
    assert gateway_default == billing_default == "billing_queue"
    # Configured once, in the same variable, for both.
    monkeypatch.setenv("BILLING_QUEUE", "orders_elsewhere")
    monkeypatch.setenv("RABBITMQ_PASSWORD", "x")
    monkeypatch.setenv("BILLING_DB_PASSWORD", "x")
    gateway = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    billing = BillingSettings(_env_file=None)  # type: ignore[call-arg]
    assert gateway.billing_queue == billing.billing_queue == "orders_elsewhere"
    assert billing.dead_letter_queue == "orders_elsewhere.dlq"  # CONTRACT.md: <queue>.dlq


@pytest.mark.parametrize("queue", ["billing_queue", "orders_elsewhere"])
def test_both_sides_declare_the_same_quorum_queue(queue):
    billing = BillingSettings(  # type: ignore[call-arg]
        _env_file=None, billing_queue=queue, rabbitmq_password="x", billing_db_password="x"
    )
    arguments = broker.queue_arguments(billing.dead_letter_queue)
    assert gateway_queue_arguments(queue) == arguments
    assert arguments["x-queue-type"] == "quorum"
    # What billing cannot settle goes to the DLQ, itself a quorum queue.
    assert arguments["x-dead-letter-routing-key"] == f"{queue}.dlq"
    assert arguments["x-dead-letter-exchange"] == ""  # the default exchange: queue by name
    assert broker.DLQ_ARGUMENTS == {"x-queue-type": "quorum"}


async def test_the_real_publisher_and_consumer_agree_on_the_broker():
    """Gateway's publisher and billing's consumer on one (fresh) queue of the test vhost: both
    declare it without a precondition conflict, and the published order is stored as sent."""
    queue = f"contract_{uuid.uuid4().hex[:8]}"
    settings_ = billing_settings().model_copy(update={"billing_queue": queue})
    await asyncio.to_thread(migrate.upgrade)
    publisher = OrderPublisher(broker_url(), queue, publish_timeout=5)
    publisher.start()
    pool = await create_pool(settings_)
    consumer = Consumer(settings_, pool)
    dead_lettered_before = REGISTRY.get_sample_value("orders_dead_lettered_total")
    order_id = uuid.UUID(int=uuid.uuid4().int)
    try:
        assert await publisher.wait_connected(10)
        order = OrderCreate.model_validate(
            {"user_id": "41", "number_of_items": 3, "total_amount": "12.3"}
        )
        await publisher.publish(order_message(str(order_id), order))  # declared by the gateway
        consumer.start()  # declares the same queue (and its DLQ), then stores the order

        async def stored() -> asyncpg.Record | None:
            dead_lettered = REGISTRY.get_sample_value("orders_dead_lettered_total")
            assert dead_lettered == dead_lettered_before, "billing dead-lettered the order"
            return await pool.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)

        row = await eventually(stored, within=15, message="the order stored")
        assert (row["user_id"], row["number_of_items"]) == (41, 3)
        assert row["total_amount"] == Decimal("12.30")
        await _assert_quorum(queue, broker.queue_arguments(f"{queue}.dlq"))
        await _assert_quorum(f"{queue}.dlq", broker.DLQ_ARGUMENTS)
    finally:
        await consumer.stop()
        await publisher.close()
        await pool.execute("DELETE FROM orders WHERE order_id = $1", order_id)
        await pool.close()
        await _delete_queues(queue)


async def _assert_quorum(queue: str, arguments: dict) -> None:
    """The queue exists with exactly these arguments: declaring it so is accepted, and as a
    classic queue refused (RabbitMQ compares a re-declaration with the queue as it is)."""
    connection = await aio_pika.connect(broker_url())
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=arguments)
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await (await connection.channel()).declare_queue(queue, durable=True)


async def _delete_queues(queue: str) -> None:
    connection = await aio_pika.connect(broker_url())
    async with connection, connection.channel() as channel:
        for name in (queue, f"{queue}.dlq"):
            await channel.queue_delete(name)
