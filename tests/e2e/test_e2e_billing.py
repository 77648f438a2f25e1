"""Orders through the gateway, RabbitMQ and the billing consumer, all real processes."""

import json
import uuid

from polling import eventually


async def stored_order(orders_db, order_id: str):
    return await orders_db.fetchrow("SELECT * FROM orders WHERE order_id = $1", uuid.UUID(order_id))


async def test_an_order_is_stored_and_can_be_looked_up(gateway, orders_db, billing_queue):
    response = await gateway.post(
        "/api/billing", json={"user_id": "3", "number_of_items": "5", "total_amount": "20.5"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Message posted"
    order_id = body["order_id"]

    async def looked_up():
        found = await gateway.get(f"/api/billing/{order_id}/")
        return found if found.status_code == 200 else None

    order = (await eventually(looked_up, within=10, message="order visible")).json()
    assert order["user_id"] == 3
    assert order["number_of_items"] == 5
    assert order["total_amount"] == "20.50"
    row = await stored_order(orders_db, order_id)
    assert str(row["total_amount"]) == "20.50"


async def test_orders_sent_while_billing_is_down_are_stored_when_it_returns(
    platform, gateway, orders_db, billing_queue
):
    platform.stop("billing")
    try:
        response = await gateway.post(
            "/api/billing/", json={"user_id": 1, "number_of_items": 2, "total_amount": 9.99}
        )
        assert response.status_code == 200
        order_id = response.json()["order_id"]
        assert await stored_order(orders_db, order_id) is None
        assert (await gateway.get(f"/api/billing/{order_id}")).status_code == 503
    finally:
        platform.start("billing")

    async def stored():
        return await stored_order(orders_db, order_id)

    row = await eventually(stored, within=15, message="queued order stored after restart")
    assert (row["user_id"], row["number_of_items"], str(row["total_amount"])) == (1, 2, "9.99")
    assert await orders_db.fetchval("SELECT count(*) FROM orders") == 1


async def test_unknown_order_is_404(gateway, orders_db):
    response = await gateway.get(f"/api/billing/{uuid.uuid4()}")
    assert response.status_code == 404
    assert "error" in response.json()


INVALID_ORDERS = [
    {"number_of_items": 1, "total_amount": 5},
    {"user_id": "abc", "number_of_items": 1, "total_amount": 5},
    {"user_id": 1, "number_of_items": 0, "total_amount": 5},
    {"user_id": 1, "number_of_items": 1, "total_amount": -1},
    {"user_id": 1, "number_of_items": 1, "total_amount": "1.001"},
]


async def test_invalid_orders_are_refused_and_never_queued(
    platform, gateway, orders_db, billing_queue
):
    # With billing stopped nothing consumes the queue: what the gateway publishes stays there,
    # in order. A valid sentinel goes last and the queue is read up to it, so a refused order
    # that was published anyway is read before it (messages, not a count the broker may report
    # late).
    sentinel_order = {"user_id": 7, "number_of_items": 1, "total_amount": "1.00"}
    platform.stop("billing")
    try:
        for body in INVALID_ORDERS:
            response = await gateway.post("/api/billing", json=body)
            assert response.status_code == 422, body
            assert isinstance(response.json()["error"], str)
        sentinel = await gateway.post("/api/billing", json=sentinel_order)
        assert sentinel.status_code == 200
        order_id = sentinel.json()["order_id"]
        queued = await messages_up_to(billing_queue, order_id, within=15)
        published = [json.loads(message.body) for message in queued]
        try:
            assert published == [{"order_id": order_id, **sentinel_order}]
        finally:
            for message in queued:  # back on the queue, for billing
                await message.nack(requeue=True)
    finally:
        platform.start("billing")

    await eventually(
        lambda: stored_order(orders_db, order_id), within=15, message="sentinel stored"
    )
    assert await orders_db.fetchval("SELECT count(*) FROM orders") == 1


async def messages_up_to(queue, message_id: str, within: float) -> list:
    """The messages on `queue` (unacknowledged, in order) up to the one with `message_id`."""
    taken: list = []

    async def sentinel_taken() -> bool:
        while message := await queue.get(no_ack=False, fail=False):
            taken.append(message)
            if message.message_id == message_id:
                return True
        return False

    await eventually(sentinel_taken, within=within, message=f"message {message_id} on the queue")
    return taken


async def test_gateway_health_and_offline_docs(gateway):
    health = await gateway.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    docs = await gateway.get("/docs")
    assert docs.status_code == 200
    assert "cdn.jsdelivr" not in docs.text
    spec = (await gateway.get("/openapi.json")).json()
    assert {"/api/movies", "/api/billing"} <= set(spec["paths"])
