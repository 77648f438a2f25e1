"""The HTTP API of billing, through the ASGI app with its real lifespan."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from billing.app import HEALTH_TIMEOUT

ORDER = {"user_id": 7, "number_of_items": 2, "total_amount": "20.50"}


@pytest.mark.parametrize("path", ["/api/orders", "/api/orders/"])
async def test_post_stores_an_order_and_coerces_strings(client: httpx.AsyncClient, path) -> None:
    response = await client.post(
        path, json={"user_id": "7", "number_of_items": "2", "total_amount": 20.5}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"order_id", "user_id", "number_of_items", "total_amount", "created_at"}
    assert (body["user_id"], body["number_of_items"], body["total_amount"]) == (7, 2, "20.50")
    uuid.UUID(body["order_id"])

    fetched = await client.get(f"/api/orders/{body['order_id']}")
    assert (fetched.status_code, fetched.json()) == (200, body)


async def test_get_works_with_a_trailing_slash(client: httpx.AsyncClient) -> None:
    created = (await client.post("/api/orders", json=ORDER)).json()
    response = await client.get(f"/api/orders/{created['order_id']}/")
    assert (response.status_code, response.json()) == (200, created)


async def test_same_order_id_twice_is_idempotent(client: httpx.AsyncClient, pool) -> None:
    order_id = str(uuid.uuid4())
    first = await client.post("/api/orders", json={**ORDER, "order_id": order_id})
    again = await client.post("/api/orders/", json={**ORDER, "order_id": order_id, "user_id": 9})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the stored order, not the second payload
    assert await pool.fetchval("SELECT count(*) FROM orders") == 1


@pytest.mark.parametrize(
    "order_id", [str(uuid.uuid4()), "abc", "123", "not-a-uuid-at-all", "%20", "0" * 40]
)
async def test_unknown_or_invalid_order_ids_are_404_json(
    client: httpx.AsyncClient, order_id
) -> None:
    for path in (f"/api/orders/{order_id}", f"/api/orders/{order_id}/"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "order not found"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**ORDER, "user_id": 0}, ["body", "user_id"]),
        ({**ORDER, "user_id": "abc"}, ["body", "user_id"]),
        ({**ORDER, "user_id": True}, ["body", "user_id"]),
        ({**ORDER, "number_of_items": -2}, ["body", "number_of_items"]),
        ({**ORDER, "number_of_items": 1.5}, ["body", "number_of_items"]),
        ({**ORDER, "total_amount": "-0.01"}, ["body", "total_amount"]),
        ({**ORDER, "total_amount": "1.001"}, ["body", "total_amount"]),
        ({**ORDER, "total_amount": "1e12"}, ["body", "total_amount"]),
        ({**ORDER, "total_amount": None}, ["body", "total_amount"]),
        ({**ORDER, "order_id": "nope"}, ["body", "order_id"]),
        ({"user_id": 1, "total_amount": "1"}, ["body", "number_of_items"]),
    ],
)
async def test_invalid_orders_are_422_with_details(
    client: httpx.AsyncClient, pool, payload, field
) -> None:
    response = await client.post("/api/orders", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid order"
    assert field in [detail["loc"] for detail in body["details"]]
    assert await pool.fetchval("SELECT count(*) FROM orders") == 0


@pytest.mark.parametrize("content", [b'{"user_id": ', b"nope", b'{"a": 1,}'])
async def test_malformed_json_is_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/api/orders", content=content, headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()) == (400, {"error": "malformed JSON body"})


async def test_a_json_array_or_no_body_is_422(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/orders", json=[ORDER])).status_code == 422
    assert (await client.post("/api/orders")).status_code == 422


async def test_unknown_route_and_wrong_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing")
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    wrong = await client.delete("/api/orders")
    assert (wrong.status_code, wrong.json()) == (405, {"error": "method not allowed"})


async def test_a_queued_order_becomes_readable(
    client: httpx.AsyncClient, publish, eventually
) -> None:
    order_id = str(uuid.uuid4())
    await publish({**ORDER, "order_id": order_id})

    async def fetched() -> dict | None:
        response = await client.get(f"/api/orders/{order_id}")
        return response.json() if response.status_code == 200 else None

    body = await eventually(fetched)
    assert (body["order_id"], body["total_amount"]) == (order_id, "20.50")


@pytest.mark.parametrize("path", ["/health", "/health/"])
async def test_health_reports_dependencies_and_queue_depths(
    client: httpx.AsyncClient, publish, eventually, path
) -> None:
    await publish(b"poison")

    async def dead_letters() -> int | None:  # 503 until the consumer has connected
        response = await client.get(path)
        return response.json()["dead_letters"] if response.status_code == 200 else None

    assert await eventually(dead_letters) == 1
    body = (await client.get(path)).json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "queue_depth": 0,
        "dead_letters": 1,
    }


async def test_broker_down_health_is_503_and_the_api_keeps_serving(client_without_broker) -> None:
    response = await client_without_broker.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["error"]) == ("unavailable", "broker unreachable")
    assert (body["database"], body["broker"]) == ("ok", "unreachable")

    created = await client_without_broker.post("/api/orders", json=ORDER)
    assert created.status_code == 201
    order_id = created.json()["order_id"]
    assert (await client_without_broker.get(f"/api/orders/{order_id}")).status_code == 200


async def test_database_down_is_503_json_not_500(
    client_for, settings, closed_port, eventually
) -> None:
    client = await client_for(settings.model_copy(update={"billing_db_port": closed_port}))
    health = await eventually(lambda: _broker_up(client))  # once the consumer has connected
    assert health.status_code == 503
    assert (health.json()["error"], health.json()["broker"]) == ("database unreachable", "ok")

    for response in (
        await client.get(f"/api/orders/{uuid.uuid4()}"),
        await client.post("/api/orders", json=ORDER),
    ):
        assert (response.status_code, response.json()) == (503, {"error": "database unreachable"})


@pytest.fixture
async def silent_database() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A database that never answers, on loopback: it accepts connections and never says a word.
    Yields its port and the connections it accepted."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # until the client gives up or the fixture ends

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], accepted
    server.close()
    for writer in accepted:
        writer.close()


async def test_health_gives_up_on_a_silent_database_after_its_timeout(
    client_for, settings, silent_database, eventually
) -> None:
    port, accepted = silent_database
    silent = {"billing_db_host": "127.0.0.1", "billing_db_port": port}
    client = await client_for(settings.model_copy(update=silent))
    await eventually(lambda: _broker_up(client))
    started = time.monotonic()
    response = await client.get("/health")
    elapsed = time.monotonic() - started
    assert (response.status_code, response.json()["error"]) == (503, "database unreachable")
    assert accepted  # it did wait on our silent server, not on a refusal
    # health's own bound, not the pool's 3 s connect timeout nor a hang
    assert HEALTH_TIMEOUT <= elapsed < HEALTH_TIMEOUT + 1


async def _broker_up(client: httpx.AsyncClient) -> httpx.Response | None:
    response = await client.get("/health")
    return response if response.json()["broker"] == "ok" else None


async def test_orders_are_served_concurrently(client: httpx.AsyncClient, pool) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/orders", json={**ORDER, "user_id": i}) for i in range(1, 41))
    )
    assert {r.status_code for r in responses} == {201}
    assert await pool.fetchval("SELECT count(*) FROM orders") == 40
    assert orjson.loads(responses[0].content)["total_amount"] == "20.50"
