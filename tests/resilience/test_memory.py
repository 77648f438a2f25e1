"""A 150 000-order backlog: billing's memory stays bounded (prefetch, batches) as it drains."""

import asyncio
import time

import aio_pika

from polling import eventually
from private_nodes import free_port
from resilience_support import (
    QUEUE,
    count_orders,
    publish_new_orders,
    queue_depth,
    stored_and_acked,
    vm_rss_kib,
)

BACKLOG = 150_000
LIMIT_MIB = 200  # the bound
GROWTH_MIB = 64  # above an idle billing: memory must not grow with the backlog


async def test_draining_a_150k_backlog_keeps_rss_under_200_mib(platform, rabbit, orders_db):
    # An idle billing (same code, an empty queue of its own) gives the baseline RSS.
    probe = {"BILLING_QUEUE": "idle_probe", "BILLING_PORT": str(free_port())}
    idle = platform.start("billing", name="idle", env=probe)
    idle_mib = vm_rss_kib(idle.pid) / 1024
    platform.stop("idle")

    await publish_new_orders(rabbit, BACKLOG)

    billing = platform.start("billing", wait=False)  # watched from its first instant
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(vm_rss_kib(billing.pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    connection = await aio_pika.connect(rabbit.url)
    try:
        channel = await connection.channel()

        async def drained() -> bool:  # cheap to poll: no count(*) over a growing table
            peak = max(samples, default=0) / 1024
            assert peak < LIMIT_MIB, f"billing RSS reached {peak:.0f} MiB while draining"
            return await queue_depth(channel, QUEUE) == 0

        await eventually(drained, within=80, interval=0.25, message="backlog delivered")
        await stored_and_acked(orders_db, rabbit, BACKLOG, 20, "all stored")
    finally:
        done.set()
        await sampler
        await connection.close()
    elapsed = time.monotonic() - started
    assert await count_orders(orders_db) == BACKLOG

    peak_mib = max(samples) / 1024
    print(f"drained {BACKLOG} in {elapsed:.1f}s, RSS peak {peak_mib:.0f} MiB (idle {idle_mib:.0f})")
    assert len(samples) > 20  # it was watched during the whole drain, not once
    assert peak_mib < LIMIT_MIB, f"billing RSS reached {peak_mib:.0f} MiB"
    assert peak_mib - idle_mib < GROWTH_MIB, f"RSS grew from {idle_mib:.0f} to {peak_mib:.0f} MiB"
