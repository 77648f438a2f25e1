"""Billing killed with SIGKILL mid-drain, and three billing processes on one queue: every
accepted (broker-confirmed) order ends in `orders` exactly once."""

import random
import signal

import aio_pika

from polling import eventually
from private_nodes import free_port
from resilience_support import (
    QUEUE,
    count_orders,
    new_orders,
    publish_new_orders,
    publish_orders,
    queue_depth,
    stored_and_acked,
    stored_at_least,
    stored_ids,
)


async def assert_exactly_once(orders_db, order_ids: list[str]) -> None:
    stored = await stored_ids(orders_db)
    assert len(stored) == len(set(stored)), "an order was stored twice"
    missing = set(order_ids) - set(stored)
    assert not missing, f"{len(missing)} accepted orders were lost, e.g. {sorted(missing)[:3]}"
    assert set(stored) == set(order_ids)


async def test_billing_killed_while_draining_stores_every_order_exactly_once(
    platform, rabbit, orders_db
):
    ids = await publish_new_orders(rabbit, 20_000)

    # Kill it twice while it drains, each time inside a transaction storing a batch (inserted,
    # not committed yet): the moment an ack sent before the commit would lose orders.
    for progress in (1_000, 8_000):
        platform.start("billing", wait=False)
        await eventually(lambda n=progress: stored_at_least(orders_db, n), within=60, interval=0.01)
        await eventually(lambda: _inserting(orders_db), within=30, interval=0.001)
        platform.stop("billing", signal.SIGKILL)
    stored_at_kill = await count_orders(orders_db)
    assert stored_at_kill < len(ids), "billing drained everything before the kills"

    # Ack after commit: whatever was not committed is still on the queue (the unacked deliveries
    # of the dead connection are requeued), so nothing is missing at this point.
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()

        async def nothing_missing() -> bool:
            stored = await count_orders(orders_db)
            return stored + await queue_depth(channel, QUEUE) >= len(ids)

        await eventually(nothing_missing, within=15, message="stored + queued covers every order")

        platform.start("billing")
        await stored_and_acked(orders_db, rabbit, len(ids), 90, "all orders stored")
    await assert_exactly_once(orders_db, ids)
    assert await count_orders(orders_db) == len(ids)


async def test_three_consumers_store_every_order_exactly_once(platform, rabbit, orders_db):
    names = ["billing-1", "billing-2", "billing-3"]
    for name in names:  # each its own HTTP port, all on the same queue and database
        platform.start("billing", name=name, env={"BILLING_PORT": str(free_port())})
    await eventually(lambda: rabbit.queue_counts(QUEUE)["consumers"] == 3, within=15)

    orders = new_orders(24_000)
    ids = [order_id for order_id, _ in orders]
    # Some orders twice, as a publisher retrying after a lost confirm would send them.
    duplicates = random.Random(3).sample(orders, 2_000)
    messages = orders + duplicates
    random.Random(4).shuffle(messages)
    assert await publish_orders(rabbit, messages) == len(messages)

    # One of the three dies mid-way; the other two finish its share.
    await eventually(lambda: stored_at_least(orders_db, 4_000), within=60, interval=0.01)
    platform.stop("billing-2", signal.SIGKILL)
    await stored_and_acked(orders_db, rabbit, len(orders), 90, "all orders stored")
    await assert_exactly_once(orders_db, ids)
    for name in ("billing-1", "billing-3"):
        assert platform.processes[name].poll() is None, f"{name} died"


async def _inserting(orders_db) -> bool:
    """A billing transaction has inserted orders and not committed them yet."""
    return await orders_db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        " AND state IN ('active', 'idle in transaction') AND query LIKE '%INSERT INTO orders%'"
    )
