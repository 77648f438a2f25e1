"""The private broker restarted and the private database stopped under the running services."""

import asyncio
import os
import re
import signal
import time

import asyncpg
import httpx

from polling import eventually
from resilience_support import (
    QUEUE,
    post_order,
    publish_new_orders,
    start_gateway,
    stored_and_acked,
    stored_at_least,
    stored_ids,
)

PUBLISH_TIMEOUT = 5.0  # GATEWAY_PUBLISH_TIMEOUT of the gateway started below


async def test_broker_restart_keeps_queued_orders_and_everything_reconnects(
    platform, rabbit, orders_db
):
    billing = platform.start("billing")
    platform.env["GATEWAY_PUBLISH_TIMEOUT"] = str(PUBLISH_TIMEOUT)
    start_gateway(platform)
    gateway = platform.processes["gateway"]
    accepted: list[str] = []
    async with (
        httpx.AsyncClient(base_url=platform.url("gateway"), timeout=15) as client,
        httpx.AsyncClient(base_url=platform.url("billing"), timeout=5) as billing_api,
    ):

        async def post_accepted(n: int) -> None:
            response = await post_order(client, n)
            assert response.status_code == 200, response.text
            accepted.append(response.json()["order_id"])

        await post_accepted(1)
        await stored_and_acked(orders_db, rabbit, 1, 10, "consumer works")

        # Orders queued (billing frozen: they wait on the queue or unacked in its socket) ...
        os.kill(billing.pid, signal.SIGSTOP)
        try:
            for start in range(0, 300, 30):
                await asyncio.gather(*(post_accepted(n) for n in range(start, start + 30)))
            await eventually(lambda: rabbit.queue_counts(QUEUE)["messages"] == 300, within=15)
            # ... when the broker goes down.
            rabbit.stop()
        finally:
            os.kill(billing.pid, signal.SIGCONT)

        # While it is down: 503, never 200, and both processes stay up. Once the gateway knows
        # (its /health says so), a POST is refused at once, not after its publish timeout.
        async def gateway_reports_broker_down() -> bool:
            health = await client.get("/health")
            return (health.status_code, health.json()["broker"]) == (503, "unreachable")

        await eventually(gateway_reports_broker_down, within=10, message="gateway sees it")
        statuses = []
        for n in range(30):
            started = time.monotonic()
            response = await post_order(client, n)
            statuses.append(response.status_code)
            waited = time.monotonic() - started
            assert waited < PUBLISH_TIMEOUT, "a POST waited for a broker known to be down"
        assert set(statuses) == {503}, statuses
        assert response.json()["error"]

        async def billing_reports_broker_down() -> bool:
            answer = await billing_api.get("/health")
            return answer.status_code == 503 and answer.json()["broker"] == "unreachable"

        await eventually(billing_reports_broker_down, within=10, message="billing sees the outage")
        assert gateway.poll() is None and billing.poll() is None

        # Broker back: both reconnect by themselves (same processes), within seconds.
        rabbit.start()
        back = time.monotonic()

        async def post_succeeds() -> bool:
            response = await post_order(client, 7)
            if response.status_code == 200:
                accepted.append(response.json()["order_id"])
            return response.status_code == 200

        await eventually(post_succeeds, within=15, interval=0.2, message="gateway reconnected")
        gateway_back = time.monotonic() - back
        for n in range(20):
            await post_accepted(n)

        async def billing_healthy() -> bool:
            return (await billing_api.get("/health")).status_code == 200

        await eventually(billing_healthy, within=15, interval=0.2, message="billing reconnected")
        await eventually(
            lambda: stored_at_least(orders_db, len(accepted)),
            within=20,
            message="all orders stored",
        )
        consumer_back = time.monotonic() - back

    stored = await stored_ids(orders_db)
    assert sorted(stored) == sorted(accepted)  # none lost, none twice
    assert gateway.poll() is None and billing.poll() is None  # neither was restarted
    assert platform.processes["gateway"].pid == gateway.pid
    assert platform.processes["billing"].pid == billing.pid
    print(f"gateway 200 again {gateway_back:.1f}s, all stored {consumer_back:.1f}s after restart")


RETRY = re.compile(r"database unavailable .*; retrying (\d+) orders in ([\d.]+)s")


async def test_database_down_nothing_is_acked_the_consumer_backs_off_and_resumes(
    platform, rabbit, postgres, orders_db
):
    billing = platform.start("billing")
    first = await publish_new_orders(rabbit, 1)
    await stored_and_acked(orders_db, rabbit, 1, 10, "consumer works")
    await orders_db.close()

    postgres.stop("fast")  # every open connection is cut
    orders = await publish_new_orders(rabbit, 3_000)

    def delays() -> list[float]:
        return [float(match[2]) for match in RETRY.finditer(platform.log("billing"))]

    # It backs off (0.5 s, 1 s, 2 s ...): a few retries, not a tight loop, and no crash.
    await eventually(lambda: any(d >= 2 for d in delays()), within=20, message="backoff to 2s")
    assert delays() == sorted(delays()) and len(delays()) <= 5, delays()
    assert billing.poll() is None and platform.processes["billing"].pid == billing.pid

    # Nothing acked that is not committed: every order is still on the queue (ready or held).
    def all_still_queued() -> dict[str, int] | None:
        counts = rabbit.queue_counts(QUEUE)
        # ... and the batch it keeps retrying is held unacknowledged
        held = counts["messages"] == len(orders) and counts["messages_unacknowledged"] > 0
        return counts if held else None

    counts = await eventually(all_still_queued, within=15, message="every order still queued")

    async with httpx.AsyncClient(base_url=platform.url("billing"), timeout=5) as billing_api:
        health = await billing_api.get("/health")
        body = health.json()
        assert health.status_code == 503
        assert (body["database"], body["broker"]) == ("unreachable", "ok")
        assert body["error"] == "database unreachable"
        assert body["queue_depth"] == counts["messages_ready"]

        postgres.start()
        db = await asyncpg.connect(postgres.dsn)
        try:
            await stored_and_acked(db, rabbit, len(orders) + 1, 30, "resumed, all stored")
            assert sorted(await stored_ids(db)) == sorted(first + orders)
            assert (await billing_api.get("/health")).status_code == 200
        finally:
            await db.close()
    assert billing.poll() is None and platform.processes["billing"].pid == billing.pid
