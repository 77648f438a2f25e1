"""The queue consumer against the real broker and database: batches, idempotence, dead letters,
outages of either dependency."""

import uuid
from collections.abc import Awaitable
from decimal import Decimal

import aio_pika
import asyncpg
import orjson
import pytest

from billing.config import Settings
from billing.consumer import ORIGINAL_QUEUE_HEADER, REASON_HEADER
from billing.observability import REGISTRY

pytestmark = pytest.mark.usefixtures("clean")


def order(**changes: object) -> dict[str, object]:
    return {
        "order_id": str(uuid.uuid4()),
        "user_id": 7,
        "number_of_items": 2,
        "total_amount": "20.50",
        **changes,
    }


async def count_rows(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM orders")


async def equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def count(name: str) -> float:
    """A counter of billing's registry (process-wide: tests compare it before and after)."""
    return REGISTRY.get_sample_value(f"{name}_total")


def stored(pool: asyncpg.Pool, body: dict[str, object]) -> Awaitable[int | None]:
    return pool.fetchval(
        "SELECT 1 FROM orders WHERE order_id = $1", uuid.UUID(str(body["order_id"]))
    )


async def test_every_valid_message_becomes_exactly_one_row_and_is_acked(
    pool, settings, publish, depth, eventually, start_consumer
) -> None:
    sent = [order(user_id=i, total_amount=f"{i}.25") for i in range(1, 1201)]  # > one batch
    consumed_before = count("orders_consumed")
    consumer = await start_consumer(settings)
    for body in sent:
        await publish(body)

    await eventually(lambda: equals(count_rows(pool), len(sent)))
    stored = await pool.fetch("SELECT order_id, user_id, total_amount FROM orders")
    assert {(str(r["order_id"]), r["user_id"], r["total_amount"]) for r in stored} == {
        (b["order_id"], b["user_id"], Decimal(b["total_amount"])) for b in sent
    }
    await consumer.stop()  # anything unacked would now return to the queue
    assert await depth(settings.billing_queue) == 0
    assert count("orders_consumed") - consumed_before == len(sent)


async def test_a_redelivered_message_never_makes_a_second_row(
    pool, settings, publish, depth, eventually, start_consumer
) -> None:
    body = order()
    await publish(body)
    await publish(body)
    consumer = await start_consumer(settings)
    await eventually(lambda: equals(count_rows(pool), 1))
    await publish(body)  # once more, in a later batch
    await publish(marker := order())
    await eventually(lambda: stored(pool, marker))
    assert await count_rows(pool) == 2
    await consumer.stop()
    assert await depth(settings.billing_queue) == 0
    assert await depth(settings.dead_letter_queue) == 0  # duplicates are not errors


async def test_message_id_is_the_order_id_when_the_body_has_none(
    pool, settings, publish, depth, eventually, start_consumer
) -> None:
    message_id = str(uuid.uuid4())
    body = {"user_id": "3", "number_of_items": "1", "total_amount": 5}
    await publish(body, message_id=message_id)
    await publish(body, message_id=message_id)
    await start_consumer(settings)
    row = await eventually(lambda: pool.fetchrow("SELECT * FROM orders"))
    assert str(row["order_id"]) == message_id
    assert (row["user_id"], row["number_of_items"], row["total_amount"]) == (3, 1, Decimal("5.00"))
    await publish(order())
    await eventually(lambda: equals(count_rows(pool), 2))
    assert await depth(settings.dead_letter_queue) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (orjson.dumps(["a", "list"]), "not a JSON object"),
        (orjson.dumps(order(total_amount="-5")), "total_amount: must not be negative"),
        (orjson.dumps(order(total_amount="1.005")), "total_amount: must have at most 2 decimal"),
        (orjson.dumps(order(user_id=True)), "user_id: must be a positive integer"),
        (orjson.dumps(order(number_of_items="abc")), "number_of_items: must be a positive"),
        (orjson.dumps({"user_id": 1, "total_amount": "1"}), "number_of_items: Field required"),
    ],
)
async def test_poison_messages_go_to_the_dlq_with_a_reason_and_are_acked(
    settings, channel, publish, depth, eventually, start_consumer, body, reason
) -> None:
    await publish(body, message_id="poison-1", correlation_id="req-9", headers={"x-app": "test"})
    consumer = await start_consumer(settings)
    await eventually(lambda: equals(depth(settings.dead_letter_queue), 1))
    await consumer.stop()
    assert await depth(settings.billing_queue) == 0  # acked, not back in the queue

    dlq = await channel.declare_queue(settings.dead_letter_queue, passive=True)
    dead = await dlq.get(timeout=5)
    assert dead.body == body
    assert reason in dead.headers[REASON_HEADER]
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == settings.billing_queue
    assert dead.headers["x-app"] == "test"
    assert (dead.message_id, dead.correlation_id) == ("poison-1", "req-9")
    assert dead.delivery_mode == 2  # persistent
    await dead.ack()


async def test_the_consumer_carries_on_after_a_poison_message(
    pool, settings, publish, depth, eventually, start_consumer
) -> None:
    await publish(order())
    await publish(b"poison")
    await publish(order())
    await start_consumer(settings)
    await eventually(lambda: equals(count_rows(pool), 2))
    await eventually(lambda: equals(depth(settings.dead_letter_queue), 1))
    await publish(later := order())  # in a later batch
    await eventually(lambda: stored(pool, later))


async def test_messages_queued_while_billing_was_stopped_are_stored_at_start(
    pool, settings, publish, depth, eventually, start_consumer
) -> None:
    for _ in range(50):
        await publish(order())
    assert await depth(settings.billing_queue) == 50
    await start_consumer(settings)
    await eventually(lambda: equals(count_rows(pool), 50))
    await eventually(lambda: equals(depth(settings.billing_queue), 0))


async def test_a_backlog_is_stored_in_batches_not_row_by_row(
    pool, settings, publish, eventually, start_consumer
) -> None:
    for _ in range(1000):
        await publish(order())
    batches_before = count("orders_batches")
    await start_consumer(settings)
    await eventually(lambda: equals(count_rows(pool), 1000))
    batches = count("orders_batches") - batches_before
    assert 2 <= batches <= 50  # batch size 500, bounded by prefetch 500


async def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    pool, settings, publish, depth, eventually, start_consumer
) -> None:
    # A rule the validation does not know about (as if schema and code had drifted).
    await pool.execute("ALTER TABLE orders ADD CONSTRAINT ck_test_no_13 CHECK (user_id <> 13)")
    try:
        for user_id in (1, 13, 2):
            await publish(order(user_id=user_id))
        consumer = await start_consumer(settings)
        await eventually(lambda: equals(depth(settings.dead_letter_queue), 1))
        await eventually(lambda: equals(count_rows(pool), 2))
        assert {r["user_id"] for r in await pool.fetch("SELECT user_id FROM orders")} == {1, 2}
        await consumer.stop()
        assert await depth(settings.billing_queue) == 0
    finally:
        await pool.execute("ALTER TABLE orders DROP CONSTRAINT ck_test_no_13")


async def test_database_down_nothing_is_acked_then_stored_once_it_is_back(
    pool, settings: Settings, publish, depth, eventually, start_consumer, closed_port
) -> None:
    for _ in range(20):
        await publish(order())
    broken = settings.model_copy(update={"billing_db_port": closed_port})
    retries_before = count("orders_store_retries")
    consumer = await start_consumer(broken, own_pool=True)

    # It received the messages (none ready any more) and is retrying, not crashing.
    await eventually(lambda: equals(depth(settings.billing_queue), 0))
    await eventually(lambda: count("orders_store_retries") - retries_before >= 2)
    assert not consumer._task.done()
    await consumer.stop()
    # Nothing was acked: all of them back (a quorum queue takes the return a moment later).
    await eventually(lambda: equals(depth(settings.billing_queue), 20))
    assert await count_rows(pool) == 0

    await start_consumer(settings)
    await eventually(lambda: equals(count_rows(pool), 20))
    await eventually(lambda: equals(depth(settings.billing_queue), 0))


async def test_consumer_starts_while_the_broker_is_down_and_connects_when_it_is_up(
    pool, settings: Settings, publish, eventually, start_consumer, broker_proxy
) -> None:
    await publish(body := order())
    attempts_before = count("billing_consumer_connect_attempts")
    consumer = await start_consumer(
        settings.model_copy(update={"rabbitmq_port": broker_proxy.port})
    )
    await eventually(lambda: count("billing_consumer_connect_attempts") - attempts_before >= 2)
    assert not consumer.connected and not consumer._task.done()

    await broker_proxy.start()
    await eventually(lambda: stored(pool, body), within=20)
    assert await count_rows(pool) == 1


async def test_consumer_reconnects_and_consumes_again_after_a_broker_outage(
    pool, settings: Settings, publish, eventually, start_consumer, broker_proxy
) -> None:
    await broker_proxy.start()
    consumer = await start_consumer(
        settings.model_copy(update={"rabbitmq_port": broker_proxy.port})
    )
    await publish(order())
    await eventually(lambda: equals(count_rows(pool), 1))

    await broker_proxy.stop()  # connections cut, new ones refused
    await eventually(lambda: not consumer.connected)
    for _ in range(5):
        await publish(order())  # straight to the broker: it queues them meanwhile
    await broker_proxy.start()
    await eventually(lambda: equals(count_rows(pool), 6), within=30)
    assert consumer.connected


async def test_with_prefetch_above_the_batch_size_every_message_is_settled_once(
    pool, settings: Settings, publish, depth, eventually, start_consumer
) -> None:
    # The next batch arrives while one commits; dead letters are acked one by one in between.
    # A second ack of a delivery would kill the channel: its committed batch would come back.
    duplicates_before = count("orders_duplicates")
    consumed_before = count("orders_consumed")
    sent = [order() if i % 97 else b"poison" for i in range(1, 2001)]
    for body in sent:
        await publish(body)
    valid = sum(isinstance(body, dict) for body in sent)
    consumer = await start_consumer(
        settings.model_copy(update={"billing_prefetch": 1000, "billing_batch_size": 300})
    )
    await eventually(lambda: equals(count_rows(pool), valid))
    await eventually(lambda: equals(depth(settings.dead_letter_queue), len(sent) - valid))
    await consumer.stop()
    assert await depth(settings.billing_queue) == 0
    assert count("orders_consumed") - consumed_before == valid
    assert count("orders_duplicates") == duplicates_before


async def test_consumer_consumes_again_after_the_broker_cancelled_it(
    pool, settings: Settings, amqp, channel, publish, eventually, start_consumer
) -> None:
    await start_consumer(settings)
    await publish(first := order())
    await eventually(lambda: stored(pool, first))

    await channel.queue_delete(settings.billing_queue)  # the broker cancels its consumers

    async def consumed_again() -> bool:  # billing declared the queue again and consumes it
        probe = await amqp.channel()
        try:
            queue = await probe.declare_queue(settings.billing_queue, passive=True)
            return queue.declaration_result.consumer_count == 1
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            if not probe.is_closed:
                await probe.close()

    await eventually(consumed_again)
    await publish(later := order())
    await eventually(lambda: stored(pool, later))
