"""Tracing and metrics: request ids on HTTP responses and log lines (also from queued messages
via their correlation_id), and the Prometheus counters and gauges at GET /metrics."""

import logging
import re
import uuid

import aio_pika
import httpx
import pytest
from crud_common.logs import RequestIdFilter
from prometheus_client.parser import text_string_to_metric_families

from billing.app import create_app

ORDER = {"user_id": 7, "number_of_items": 2, "total_amount": "20.50"}


def order() -> dict[str, object]:
    return {**ORDER, "order_id": str(uuid.uuid4())}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: httpx.AsyncClient, path: str = "/metrics") -> dict:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def traced_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog with the request-id filter the production handler has."""
    caplog.set_level(logging.INFO, logger="billing")
    caplog.handler.addFilter(request_filter := RequestIdFilter())
    yield caplog
    caplog.handler.removeFilter(request_filter)


async def test_consumer_logs_carry_the_messages_correlation_id(
    clean, settings, publish, depth, eventually, start_consumer, traced_logs
) -> None:
    body = order()
    await start_consumer(settings)
    await publish(body, correlation_id="trace-123")
    await publish(b"poison", message_id="bad-1", correlation_id="trace-456")

    def line(message_start: str) -> logging.LogRecord | None:
        return next((r for r in traced_logs.records if r.message.startswith(message_start)), None)

    stored = await eventually(lambda: line(f"stored order {body['order_id']}"))
    assert (stored.request_id, stored.order_id) == ("trace-123", body["order_id"])
    dead = await eventually(lambda: line("dead-lettering message bad-1"))
    assert (dead.request_id, dead.order_id) == ("trace-456", "bad-1")
    assert dead.levelname == "WARNING"


@pytest.mark.parametrize("path", ["/api/orders", "/api/orders/"])
async def test_http_echoes_the_request_id_or_generates_one(client: httpx.AsyncClient, path) -> None:
    given = await client.post(path, json=order(), headers={"X-Request-ID": "trace-123"})
    assert (given.status_code, given.headers["x-request-id"]) == (201, "trace-123")

    generated = await client.get(f"/api/orders/{uuid.uuid4()}")  # a 404 has one too
    assert generated.status_code == 404
    assert re.fullmatch("[0-9a-f]{32}", generated.headers["x-request-id"])

    invalid = await client.post(path, json={}, headers={"X-Request-ID": "bad id!"})
    assert invalid.status_code == 422
    assert re.fullmatch("[0-9a-f]{32}", invalid.headers["x-request-id"])


async def test_an_unexpected_error_is_a_500_with_the_id_in_response_and_log(
    settings, traced_logs
) -> None:
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "trace-500"})
    assert (response.status_code, response.json()) == (500, {"error": "internal error"})
    assert response.headers["x-request-id"] == "trace-500"
    logged = [r for r in traced_logs.records if r.message == "unhandled error"]
    assert [r.request_id for r in logged] == ["trace-500"]


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    await client.get(f"/api/orders/{uuid.uuid4()}")
    await client.get(f"/api/orders/{uuid.uuid4()}/")
    await client.get("/no/such/path")
    after = await scrape(client, "/metrics/")

    route = {"method": "GET", "route": "/api/orders/{order_id}"}
    assert value(after, "http_requests_total", **route, status="404") == (
        value(before, "http_requests_total", **route, status="404") + 2
    )
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, "http_requests_total", **unmatched) == (
        value(before, "http_requests_total", **unmatched) + 1
    )
    assert value(after, "http_request_duration_seconds_count", **route) >= 2
    assert not any("metrics" in dict(labels).get("route", "") for _, labels in after)
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_metrics_count_consumed_duplicate_and_dead_lettered_orders(
    client: httpx.AsyncClient, pool, settings, publish, depth, eventually
) -> None:
    await eventually(lambda: _gauges(client))  # the app's consumer is connected
    before = await scrape(client)
    sent = [order() for _ in range(3)]
    for body in sent:
        await publish(body)
    await publish(sent[0])  # redelivered: no second row
    await publish(b"poison")

    async def drained() -> bool:
        rows = await pool.fetchval("SELECT count(*) FROM orders")
        return rows == 3 and await depth(settings.dead_letter_queue) == 1

    await eventually(drained)
    after = await eventually(lambda: _settled(client, before))
    for name, increase in (
        ("orders_consumed_total", 3),
        ("orders_duplicates_total", 1),
        ("orders_dead_lettered_total", 1),
    ):
        assert value(after, name) == value(before, name) + increase, name
    assert value(after, "billing_queue_depth") == 0
    assert value(after, "billing_dead_letters") == 1


async def test_queue_depth_gauges_equal_the_queued_messages(
    client_for, settings, clean, channel, closed_port, eventually
) -> None:
    # Database down, prefetch 1: the consumer holds one message unacked, the rest stay ready.
    client = await client_for(
        settings.model_copy(update={"billing_db_port": closed_port, "billing_prefetch": 1})
    )
    for _ in range(5):
        message = aio_pika.Message(b'{"user_id": 1, "number_of_items": 1, "total_amount": 1}')
        await channel.default_exchange.publish(message, routing_key=settings.billing_queue)
    for _ in range(2):
        message = aio_pika.Message(b"dead")
        await channel.default_exchange.publish(message, routing_key=settings.dead_letter_queue)

    async def depths() -> tuple[float, float] | None:
        metrics = await scrape(client)
        found = (value(metrics, "billing_queue_depth"), value(metrics, "billing_dead_letters"))
        return found if found == (4, 2) else None

    assert await eventually(depths) == (4, 2)


async def test_metrics_without_the_broker_leave_the_gauges_out(client_without_broker) -> None:
    response = await client_without_broker.get("/metrics")
    assert response.status_code == 200
    assert "billing_queue_depth" not in response.text
    assert "billing_dead_letters" not in response.text
    assert "NaN" not in response.text
    assert "orders_consumed_total" in response.text


async def test_metrics_count_the_consumers_attempts_to_reach_the_broker(
    client_without_broker, eventually
) -> None:
    first = value(await scrape(client_without_broker), "billing_consumer_connect_attempts_total")

    async def retried() -> bool:
        after = await scrape(client_without_broker)
        return value(after, "billing_consumer_connect_attempts_total") >= first + 2

    await eventually(retried)  # backoff 0.5 s, then 1 s


async def _gauges(client: httpx.AsyncClient) -> bool:
    return "billing_queue_depth " in (await client.get("/metrics")).text


async def _settled(client: httpx.AsyncClient, before: dict) -> dict | None:
    """The next scrape once the consumer's counters have caught up with the database."""
    after = await scrape(client)
    consumed = value(after, "orders_consumed_total") - value(before, "orders_consumed_total")
    dead = value(after, "orders_dead_lettered_total") - value(before, "orders_dead_lettered_total")
    return after if consumed >= 3 and dead >= 1 else None
