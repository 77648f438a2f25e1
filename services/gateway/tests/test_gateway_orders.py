"""POST /api/billing against the real RabbitMQ test vhost; GET /api/billing/{id} against a
stand-in billing server."""

import asyncio
import json
import time
import uuid
from types import SimpleNamespace

import aio_pika
import pytest
from aiohttp import web

BROKER_DOWN = {"error": "message broker unavailable"}
# Timeouts of the gateways under test: a short one that a test waits for, and long ones that a
# test shows were not waited for.
PUBLISH_TIMEOUT = 1.0
LONG_TIMEOUT = 10.0


@pytest.fixture
async def gateway(gateway_factory, poll, queue_name):
    """A gateway connected to the test vhost, publishing to a queue of this test's own."""
    async with gateway_factory(billing_queue=queue_name) as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        yield gw


@pytest.fixture
async def billing_queue(gateway, amqp, queue_name):
    """The queue the gateway declared (passive look-up: it must exist already)."""
    return await amqp.get_queue(queue_name, ensure=True)


@pytest.mark.parametrize("path", ["/api/billing", "/api/billing/"])
async def test_order_is_published_per_the_queue_contract(
    gateway, billing_queue, amqp_message, path
):
    response = await gateway.client.post(
        path,
        json={"user_id": "7", "number_of_items": 2, "total_amount": "20.5"},
        headers={"X-Request-ID": "req-123"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req-123"
    assert "date" in response.headers
    answer = response.json()
    assert answer["message"] == "Message posted"
    order_id = answer["order_id"]
    assert uuid.UUID(order_id).version == 4

    message = await amqp_message(billing_queue)
    assert json.loads(message.body) == {
        "order_id": order_id,
        "user_id": 7,
        "number_of_items": 2,
        "total_amount": "20.50",
    }
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.message_id == order_id
    assert message.correlation_id == "req-123"
    assert await billing_queue.get(no_ack=True, fail=False) is None  # exactly one message


async def test_queue_is_declared_as_a_durable_quorum_queue(gateway, settings, queue_name):
    # RabbitMQ refuses a re-declaration with other properties (PRECONDITION_FAILED) and
    # accepts the same ones. Fresh channels: a failed declaration closes its channel.
    quorum = {
        "x-queue-type": "quorum",
        "x-delivery-limit": 20,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{queue_name}.dlq",
    }
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        await (await connection.channel()).declare_queue(queue_name, passive=True)
        await (await connection.channel()).declare_queue(queue_name, durable=True, arguments=quorum)
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):  # not classic
            await (await connection.channel()).declare_queue(queue_name, durable=True)
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await (await connection.channel()).declare_queue(
                queue_name, durable=True, arguments={**quorum, "x-delivery-limit": 5}
            )
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("sent", "published"),
    [
        ({"user_id": "20", "number_of_items": "3", "total_amount": "20"}, (20, 3, "20.00")),
        ({"user_id": 1, "number_of_items": 1, "total_amount": 0}, (1, 1, "0.00")),
        ({"user_id": 5, "number_of_items": 2.0, "total_amount": 19.99}, (5, 2, "19.99")),
        ({"user_id": "009", "number_of_items": 1, "total_amount": "0.0"}, (9, 1, "0.00")),
        (
            {"user_id": 2**31 - 1, "number_of_items": 1, "total_amount": "9999999999.99"},
            (2**31 - 1, 1, "9999999999.99"),
        ),
    ],
)
async def test_numbers_as_strings_are_coerced(
    gateway, billing_queue, amqp_message, sent, published
):
    response = await gateway.client.post("/api/billing", json=sent)
    assert response.status_code == 200, response.text
    body = json.loads((await amqp_message(billing_queue)).body)
    assert (body["user_id"], body["number_of_items"], body["total_amount"]) == published


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        ({"number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": 0, "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": -3, "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": "abc", "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": True, "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": 1.5, "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": 2**31, "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": "1e999999", "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": None, "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": 1, "number_of_items": "0", "total_amount": 1}, "number_of_items"),
        ({"user_id": 1, "number_of_items": [], "total_amount": 1}, "number_of_items"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": -1}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": "1.001"}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": 0.1 + 0.2}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": 1e10}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": "abc"}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": "NaN"}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": False}, "total_amount"),
        # numeric strings are ASCII digits (and one dot): no sign, space, exponent, underscore
        ({"user_id": " 12 ", "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": "+1", "number_of_items": 1, "total_amount": 1}, "user_id"),
        ({"user_id": 1, "number_of_items": "1e3", "total_amount": 1}, "number_of_items"),
        ({"user_id": 1, "number_of_items": "\u0661\u0662", "total_amount": 1}, "number_of_items"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": "1_000"}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": "-0"}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": "1e3"}, "total_amount"),
        ({"user_id": 1, "number_of_items": 1, "total_amount": " 12 "}, "total_amount"),
    ],
)
async def test_invalid_orders_are_422_and_not_published(
    billing_queue, gateway, amqp_message, sent, field
):
    response = await gateway.client.post("/api/billing", json=sent)
    assert response.status_code == 422
    body = response.json()
    assert body["error"]
    assert any(detail["loc"][-1] == field for detail in body["details"]), body
    assert all(set(detail) == {"loc", "msg"} for detail in body["details"])
    # A valid order sent afterwards is the first message on the queue: nothing came before it.
    valid = await gateway.client.post(
        "/api/billing", json={"user_id": 1, "number_of_items": 1, "total_amount": 1}
    )
    message = await amqp_message(billing_queue)
    assert json.loads(message.body)["order_id"] == valid.json()["order_id"]


async def test_an_invalid_order_names_every_fault_in_the_body(gateway):
    response = await gateway.client.post("/api/billing", json={"user_id": 1.5, "x": 1})
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid request",
        "details": [
            {"loc": ["body", "user_id"], "msg": "Value error, must be an integer"},
            {"loc": ["body", "number_of_items"], "msg": "Field required"},
            {"loc": ["body", "total_amount"], "msg": "Field required"},
        ],
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            b'{"user_id": 100000000000000000000000, "number_of_items": 1, "total_amount": 1}',
            "user_id",
        ),
        (b'{"user_id": 1, "number_of_items": 1, "total_amount": NaN}', "total_amount"),
        (b'{"user_id": 1, "number_of_items": 1, "total_amount": -Infinity}', "total_amount"),
    ],
)
async def test_numbers_some_json_parsers_refuse_are_judged_by_the_schema(gateway, raw, field):
    # Huge integers and NaN/Infinity are read (as pydantic does), then refused as values: 422.
    response = await gateway.client.post("/api/billing", content=raw)
    assert response.status_code == 422
    assert [detail["loc"] for detail in response.json()["details"]] == [["body", field]]


async def test_a_chunked_order_is_accepted(gateway, billing_queue, amqp_message):
    async def chunks():
        yield b'{"user_id": 5, "number_of_items": 1,'
        yield b' "total_amount": "3.10"}'

    response = await gateway.client.post("/api/billing", content=chunks())
    assert response.status_code == 200
    message = await amqp_message(billing_queue)
    assert json.loads(message.body) == {
        "order_id": response.json()["order_id"],
        "user_id": 5,
        "number_of_items": 1,
        "total_amount": "3.10",
    }


@pytest.mark.parametrize("payload", [[1, 2], "order", 7])
async def test_a_body_that_is_not_an_object_is_422(gateway, payload):
    response = await gateway.client.post("/api/billing", json=payload)
    assert response.status_code == 422
    assert "details" in response.json()


@pytest.mark.parametrize("raw", [b'{"user_id": 1,', b"not json", b'{"user_id": 1}}'])
async def test_malformed_json_is_400(gateway, raw):
    response = await gateway.client.post(
        "/api/billing", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "malformed JSON body"}


async def test_concurrent_orders_are_all_confirmed(gateway, billing_queue, amqp_message):
    order = {"user_id": 3, "number_of_items": 1, "total_amount": "1.00"}
    responses = await asyncio.gather(
        *(gateway.client.post("/api/billing", json=order) for _ in range(40))
    )
    assert [r.status_code for r in responses] == [200] * 40
    sent = {r.json()["order_id"] for r in responses}
    received = {json.loads((await amqp_message(billing_queue)).body)["order_id"] for _ in sent}
    assert received == sent


async def test_unroutable_order_is_503_not_200(gateway, amqp, queue_name):
    # The queue vanished after the gateway declared it: the broker returns the message.
    await amqp.queue_delete(queue_name)
    response = await gateway.client.post(
        "/api/billing", json={"user_id": 1, "number_of_items": 1, "total_amount": 1}
    )
    assert response.status_code == 503
    assert response.json() == BROKER_DOWN


async def test_broker_unreachable_is_503_at_once_and_movies_still_served(
    gateway_factory, unused_port, inventory
):
    async with gateway_factory(
        rabbitmq_port=unused_port(),
        inventory_urls=inventory.url,
        gateway_publish_timeout=LONG_TIMEOUT,
    ) as gw:
        started = time.monotonic()
        response = await gw.client.post(
            "/api/billing", json={"user_id": 1, "number_of_items": 1, "total_amount": 1}
        )
        elapsed = time.monotonic() - started
        movies = await gw.client.get("/api/movies/1")
    assert response.status_code == 503
    assert response.json() == BROKER_DOWN
    assert elapsed < LONG_TIMEOUT  # known to be down: not waited for within the publish timeout
    assert movies.status_code == 200


async def test_broker_down_at_boot_then_up_then_cut_then_back(
    gateway_through, unused_port, relay_factory, poll, amqp, queue_name, amqp_message
):
    relay = relay_factory(unused_port())
    order = {"user_id": 4, "number_of_items": 1, "total_amount": "2.50"}
    async with gateway_through(relay, gateway_publish_timeout=LONG_TIMEOUT) as gw:
        down = await gw.client.post("/api/billing", json=order)
        assert down.status_code == 503  # broker absent at boot: the gateway serves anyway

        await relay.start()  # the broker appears: the background connect picks it up
        await poll(lambda: gw.publisher.connected, 15, "connecting once the broker is up")
        up = await gw.client.post("/api/billing", json=order)
        assert up.status_code == 200
        queue = await amqp.get_queue(queue_name, ensure=True)
        assert json.loads((await amqp_message(queue)).body)["order_id"] == up.json()["order_id"]

        await relay.stop()  # the broker goes away: known down, so answer at once
        await poll(lambda: not gw.publisher.connected, 5, "noticing the lost connection")
        started = time.monotonic()
        cut = await gw.client.post("/api/billing", json=order)
        assert cut.status_code == 503
        assert time.monotonic() - started < LONG_TIMEOUT  # not waited for: known to be down

        await relay.start()  # back: the robust connection reconnects by itself
        await poll(lambda: gw.publisher.connected, 15, "the robust reconnect")
        again = await gw.client.post("/api/billing", json=order)
        assert again.status_code == 200


async def test_with_several_brokers_it_moves_to_the_next_when_its_own_is_lost(
    gateway_through, unused_port, relay_factory, poll, amqp, queue_name, amqp_message
):
    first, second = relay_factory(unused_port()), relay_factory(unused_port())
    await first.start()
    await second.start()
    order = {"user_id": 4, "number_of_items": 1, "total_amount": "2.50"}
    async with gateway_through(first, second) as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        assert first._writers and not second._writers  # relayed by the first node, in order
        await first.stop()  # that node is gone for good: the gateway moves on at once
        await poll(lambda: gw.publisher.connected and second._writers, 5, "the second node")
        response = await gw.client.post("/api/billing", json=order)
        assert response.status_code == 200
        queue = await amqp.get_queue(queue_name, ensure=True)
        message = await amqp_message(queue)
        assert json.loads(message.body)["order_id"] == response.json()["order_id"]


async def test_missing_confirm_is_503_after_the_publish_timeout(
    gateway_through, unused_port, relay_factory, poll
):
    relay = relay_factory(unused_port())
    await relay.start()
    async with gateway_through(relay, gateway_publish_timeout=PUBLISH_TIMEOUT) as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        relay.flowing.clear()  # the broker's answers (confirms) are held back
        started = time.monotonic()
        response = await gw.client.post(
            "/api/billing", json={"user_id": 1, "number_of_items": 1, "total_amount": 1}
        )
        elapsed = time.monotonic() - started
        relay.flowing.set()  # only now may the confirm arrive: the 503 came without it
    assert response.status_code == 503
    assert response.json() == BROKER_DOWN
    assert elapsed >= PUBLISH_TIMEOUT  # the confirm was waited for, the publish timeout long


# --- GET /api/billing/{order_id} ------------------------------------------------------------------
STORED = {
    "id": 1,
    "order_id": "0b6f3c1e-5e0a-4a7e-9d1b-2f3c4d5e6f70",
    "user_id": 7,
    "number_of_items": 2,
    "total_amount": "20.50",
    "created_at": "2024-01-01T12:00:00+00:00",
}


@pytest.fixture
async def billing():
    asked: list[str] = []
    request_ids: list[str | None] = []

    async def get_order(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        asked.append(order_id)
        request_ids.append(request.headers.get("X-Request-ID"))
        if order_id == "00000000-0000-4000-8000-000000000500":
            return web.json_response({"error": "internal error"}, status=500)
        if order_id == "00000000-0000-4000-8000-000000005100":
            await asyncio.sleep(5)
        if order_id == STORED["order_id"]:
            return web.json_response(STORED)
        return web.json_response({"error": "order not found"}, status=404)

    app = web.Application()
    app.router.add_get("/api/orders/{order_id}", get_order)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield SimpleNamespace(
        url=f"http://127.0.0.1:{runner.addresses[0][1]}", asked=asked, request_ids=request_ids
    )
    await runner.cleanup()


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_stored_order_is_relayed(gateway_factory, billing, suffix):
    async with gateway_factory(billing_url=billing.url) as gw:
        response = await gw.client.get(f"/api/billing/{STORED['order_id']}{suffix}")
    assert response.status_code == 200
    assert response.json() == STORED
    assert billing.asked == [STORED["order_id"]]
    assert billing.request_ids == [response.headers["x-request-id"]]  # the trace goes on


async def test_unknown_order_is_404(gateway_factory, billing):
    unknown = str(uuid.uuid4())
    async with gateway_factory(billing_url=billing.url) as gw:
        response = await gw.client.get(f"/api/billing/{unknown}")
        not_a_uuid = await gw.client.get("/api/billing/not-a-uuid")
    assert response.status_code == 404
    assert response.json() == {"error": "order not found"}
    assert not_a_uuid.status_code == 404
    assert billing.asked == [unknown]  # a non-UUID can never be stored: billing not asked


async def test_billing_unreachable_is_503(gateway_factory, unused_port):
    async with gateway_factory(
        billing_url=f"http://127.0.0.1:{unused_port()}", gateway_connect_timeout=LONG_TIMEOUT
    ) as gw:
        started = time.monotonic()
        response = await gw.client.get(f"/api/billing/{uuid.uuid4()}")
    assert response.status_code == 503
    assert response.json() == {"error": "billing unreachable"}
    assert time.monotonic() - started < LONG_TIMEOUT  # refused: not retried until the timeout


async def test_billing_errors_and_timeouts_are_mapped(gateway_factory, billing):
    async with gateway_factory(billing_url=billing.url, gateway_upstream_timeout=0.5) as gw:
        failing = await gw.client.get("/api/billing/00000000-0000-4000-8000-000000000500")
        slow = await gw.client.get("/api/billing/00000000-0000-4000-8000-000000005100")
    assert failing.status_code == 502
    assert failing.json() == {"error": "billing answered with an error"}
    assert slow.status_code == 504
    assert slow.json() == {"error": "billing timed out"}


async def test_an_order_sent_as_curl_d_does_without_a_json_content_type(
    gateway, billing_queue, amqp_message
):
    response = await gateway.client.post(
        "/api/billing",
        content=b'{"user_id": 3, "number_of_items": "1", "total_amount": 4}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    message = await amqp_message(billing_queue)
    assert json.loads(message.body)["order_id"] == response.json()["order_id"]
