"""The publish timeout bounds a whole order, and a node that stopped confirming is left for the
next one (the real test broker behind TCP relays that can hold its answers back)."""

import asyncio
import json
import time

import pytest

ORDER = {"user_id": 4, "number_of_items": 1, "total_amount": "2.50"}


@pytest.fixture
async def two_nodes(gateway_through, unused_port, relay_factory, poll):
    """(gateway, first, second): a gateway with a 1 s publish timeout connected to the first of
    two nodes (relays to the test broker), publishing to this test's queue."""
    first, second = relay_factory(unused_port()), relay_factory(unused_port())
    await first.start()
    await second.start()
    async with gateway_through(first, second, gateway_publish_timeout=1.0) as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        yield gw, first, second
        first.flowing.set()  # a stalled node lets the gateway close


async def test_a_node_that_stops_confirming_costs_one_503_then_orders_go_to_the_next(
    two_nodes, amqp, queue_name, amqp_message
):
    gw, first, second = two_nodes
    assert first._writers and not second._writers  # publishing through the first node
    first.flowing.clear()  # its connection stays open, but no confirm comes back any more

    started = time.monotonic()
    stalled = await gw.client.post("/api/billing", json=ORDER)
    assert stalled.status_code == 503
    assert 0.9 < time.monotonic() - started < 1.9  # waited for the confirm, no longer

    started = time.monotonic()
    answers = await asyncio.gather(*(gw.client.post("/api/billing", json=ORDER) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5  # the first node is still stalled
    assert time.monotonic() - started < 1.9  # within one publish timeout
    assert second._writers  # through the second node
    # The broker did take the order answered 503 (its confirm was what got lost): a 503
    # says "not known to be taken", the client may retry. The 200s are all there.
    queue = await amqp.get_queue(queue_name, ensure=True)
    received = {json.loads((await amqp_message(queue)).body)["order_id"] for _ in range(6)}
    assert {a.json()["order_id"] for a in answers} < received


async def test_every_order_in_flight_on_a_stalled_node_is_answered_within_the_timeout(two_nodes):
    gw, first, _ = two_nodes
    first.flowing.clear()

    async def timed() -> tuple[int, float]:
        started = time.monotonic()
        response = await gw.client.post("/api/billing", json=ORDER)
        return response.status_code, time.monotonic() - started

    answers = await asyncio.gather(*(timed() for _ in range(20)))
    assert max(taken for _, taken in answers) < 1.9  # one publish timeout, not two
    assert {status for status, _ in answers} <= {200, 503}
