"""The queue contract between the gateway (publisher) and billing (consumer).

Each side keeps its own definition (services never import each other); this test imports both
and fails when they drift: every order the gateway accepts must be a message billing stores with
the same values, and both must name and declare the same queue.
"""

import asyncio
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
from billing.schemas import parse_order_message
from gateway.config import Settings as GatewaySettings
from gateway.publisher import OrderPublisher
from gateway.publisher import queue_arguments as gateway_queue_arguments
from gateway.schemas import OrderCreate, order_message
from platform_processes import broker_url


def gateway_body(order_id: str, order: OrderCreate) -> bytes:
    """What gateway.publisher.OrderPublisher.publish puts on the wire."""
    return orjson.dumps(order_message(order_id, order))


def assert_same_order(raw: dict, order_id: str) -> None:
    order = OrderCreate.model_validate(raw)
    stored = parse_order_message(gateway_body(order_id, order), message_id=order_id)
    assert stored.order_id == uuid.UUID(order_id)
    assert (stored.user_id, stored.number_of_items) == (order.user_id, order.number_of_items)
    assert stored.total_amount == order.total_amount
    assert stored.total_amount == stored.total_amount.quantize(Decimal("0.01"))


@pytest.mark.parametrize(
    "raw",
    [
        {"user_id": 3, "number_of_items": 5, "total_amount": 20.5},
        {"user_id": "3", "number_of_items": "5", "total_amount": "20.50"},
        {"user_id": " 7 ", "number_of_items": 1.0, "total_amount": "0"},
        {"user_id": 2**31 - 1, "number_of_items": 1, "total_amount": "9999999999.99"},
        {"user_id": "1e3", "number_of_items": 1, "total_amount": "1e2"},
        {"user_id": 1, "number_of_items": 1, "total_amount": "-0"},
        {"user_id": 1, "number_of_items": 1, "total_amount": 0.1},
    ],
)
def test_an_order_the_gateway_accepts_is_stored_by_billing_unchanged(raw):
    assert_same_order(raw, str(uuid.uuid4()))


edgy = st.one_of(
    st.integers(-10, 2**32),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, places=3, min_value=-10, max_value=10**10).map(str),
    st.text(alphabet="0123456789.-+e ", max_size=14),
    st.booleans(),
    st.none(),
)
counts = st.one_of(  # what clients send: mostly plausible, sometimes odd
    st.integers(1, 2**31 - 1),
    st.integers(1, 2**31 - 1).map(lambda n: f" {n}"),
    st.integers(1, 2**31 - 1).map(float),
    edgy,
)
amounts = st.one_of(
    st.integers(0, 10**10 - 1),
    st.decimals(places=2, min_value=0, max_value=10**10 - 1).map(str),
    st.decimals(places=2, min_value=0, max_value=10**6).map(float),
    edgy,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_id=counts, number_of_items=counts, total_amount=amounts)
def test_nothing_the_gateway_accepts_is_dead_lettered_by_billing(
    user_id, number_of_items, total_amount
):
    raw = {"user_id": user_id, "number_of_items": number_of_items, "total_amount": total_amount}
    try:
        OrderCreate.model_validate(raw)
    except ValidationError:
        return  # refused with 422 by the gateway: never queued
    assert_same_order(raw, str(uuid.uuid4()))


def test_both_sides_name_the_same_queue_and_dead_letter_queue(monkeypatch):
    gateway_default = GatewaySettings.model_fields["BILLING_QUEUE"].default
    billing_default = BillingSettings.model_fields["billing_queue"].default
    assert gateway_default == billing_default == "billing_queue"
    # Configured once, in the same variable, for both.
    monkeypatch.setenv("BILLING_QUEUE", "orders_elsewhere")
    monkeypatch.setenv("RABBITMQ_PASSWORD", "x")
    monkeypatch.setenv("BILLING_DB_PASSWORD", "x")
    gateway = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    billing = BillingSettings(_env_file=None)  # type: ignore[call-arg]
    assert gateway.BILLING_QUEUE == billing.billing_queue == "orders_elsewhere"
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
    order_id = uuid.UUID(int=uuid.uuid4().int)
    try:
        assert await publisher.wait_connected(10)
        order = OrderCreate.model_validate(
            {"user_id": "41", "number_of_items": 3, "total_amount": "12.3"}
        )
        await publisher.publish(order_message(str(order_id), order))  # declared by the gateway
        consumer.start()  # declares the same queue (and its DLQ), then stores the order

        async def stored() -> asyncpg.Record | None:
            return await pool.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while (row := await stored()) is None:
            assert consumer.stats.dead_lettered == 0, "billing dead-lettered the gateway's order"
            assert loop.time() < deadline, "the order was not stored"
            await asyncio.sleep(0.05)
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
