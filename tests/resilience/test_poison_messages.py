"""Messages that can never be stored, put on the queue by any publisher: dead-lettered with the
reason, listed and replayed with `python -m billing dlq list|replay` (run as a subprocess)."""

import uuid

import aio_pika
import httpx
import orjson

from billing.broker import queue_arguments
from polling import eventually
from resilience_support import (
    DLQ,
    QUEUE,
    count_orders,
    new_orders,
    publish_orders,
    queue_depth,
    run_billing_cli,
    stored_ids,
)


def _order(**fields) -> bytes:
    return orjson.dumps({"order_id": str(uuid.uuid4()), **fields})


POISON = {  # message_id: (body, what the reason must say)
    "poison-not-json": (b"{not json", "not valid JSON"),
    "poison-wrong-type": (
        _order(user_id="abc", number_of_items=1, total_amount="5"),
        "user_id",
    ),
    "poison-negative": (
        _order(user_id=1, number_of_items=2, total_amount=-5),
        "must not be negative",
    ),
    "poison-missing-field": (_order(user_id=1, total_amount="5.00"), "number_of_items"),
}
REFUSED_USER = 424242  # valid, but refused by a CHECK constraint this test adds for a while


async def test_poison_messages_are_dead_lettered_listed_and_replayed(platform, rabbit, orders_db):
    platform.start("billing")
    env = platform.envs["billing"]
    valid = new_orders(400)
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()  # publisher confirms on
        await channel.declare_queue(QUEUE, durable=True, arguments=queue_arguments(DLQ))

        async def publish(message_id: str, body: bytes) -> None:
            message = aio_pika.Message(body, message_id=message_id, delivery_mode=2)
            await channel.default_exchange.publish(message, routing_key=QUEUE)

        # Poison between valid orders, as it would arrive among real traffic.
        await publish_orders(rabbit, valid[:200])
        for message_id, (body, _) in POISON.items():
            await publish(message_id, body)
        await publish_orders(rabbit, valid[200:])

        async def settled(stored: int, dead: int) -> bool:
            return (
                await count_orders(orders_db) == stored
                and await queue_depth(channel, DLQ) == dead
                and rabbit.queue_counts(QUEUE)["messages"] == 0
            )

        await eventually(lambda: settled(len(valid), len(POISON)), within=20, interval=0.2)
        assert sorted(await stored_ids(orders_db)) == sorted(i for i, _ in valid)

        async with httpx.AsyncClient(base_url=platform.url("billing"), timeout=5) as api:
            health = (await api.get("/health")).json()
        assert (health["queue_depth"], health["dead_letters"]) == (0, len(POISON))

        # A valid order the database refuses (a constraint added for the test) is kept aside too.
        await orders_db.execute(
            f"ALTER TABLE orders ADD CONSTRAINT test_refused CHECK (user_id <> {REFUSED_USER})"
        )
        refused_id = str(uuid.uuid4())
        refused = orjson.dumps(
            {
                "order_id": refused_id,
                "user_id": REFUSED_USER,
                "number_of_items": 1,
                "total_amount": "1.00",
            }
        )
        try:
            await publish(refused_id, refused)
            await eventually(lambda: settled(len(valid), len(POISON) + 1), within=20)
        finally:
            await orders_db.execute("ALTER TABLE orders DROP CONSTRAINT test_refused")  # "fixed"

        # `dlq list` shows each one with its reason, and leaves them in the DLQ.
        code, out, err = await run_billing_cli(env, "dlq", "list")
        assert code == 0, err
        lines = {line.split("\t")[0]: line for line in out.splitlines() if "\t" in line}
        for message_id, (_, reason) in POISON.items():
            assert reason in lines[message_id], lines[message_id]
        assert "rejected by the database" in lines[refused_id]
        assert f"{len(POISON) + 1} dead letter(s) in {DLQ}" in out
        assert await queue_depth(channel, DLQ) == len(POISON) + 1

        # `dlq replay` moves them back to the queue (billing stopped, to see them there).
        platform.stop("billing")
        code, out, err = await run_billing_cli(env, "dlq", "replay")
        assert code == 0, err
        assert f"replayed {len(POISON) + 1} dead letter(s) to {QUEUE}" in out
        assert await queue_depth(channel, DLQ) == 0
        assert await queue_depth(channel, QUEUE) == len(POISON) + 1

        # Billing again: the fixed one is stored; the poison returns to the DLQ, once, and
        # is not retried forever (the queue stays empty).
        platform.start("billing")
        await eventually(lambda: settled(len(valid) + 1, len(POISON)), within=20, interval=0.2)
        row = await orders_db.fetchrow(
            "SELECT user_id FROM orders WHERE order_id = $1", uuid.UUID(refused_id)
        )
        assert row["user_id"] == REFUSED_USER
        code, out, _ = await run_billing_cli(env, "dlq", "list")
        assert set(POISON) == {line.split("\t")[0] for line in out.splitlines() if "\t" in line}
    assert platform.processes["billing"].poll() is None
