"""X-Request-ID: taken or made, passed on (inventory, AMQP correlation id), returned on every
answer, and in every log line."""

import io
import json
import logging
import logging.config
import uuid

import pytest
from crud_common.logs import logging_config


def is_generated(value: str) -> bool:
    return len(value) == 32 and uuid.UUID(hex=value).version == 4


async def test_the_clients_id_is_forwarded_and_returned(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        response = await gw.client.get("/api/movies/1", headers={"X-Request-ID": "abc:DEF-1.2_3"})
    assert response.headers.get_list("x-request-id") == ["abc:DEF-1.2_3"]
    forwarded = [v for k, v in response.json()["headers"] if k == "x-request-id"]
    assert forwarded == ["abc:DEF-1.2_3"]


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "semi;colon"])
async def test_a_missing_or_malformed_id_is_replaced_by_a_new_one(gateway_factory, inventory, sent):
    headers = {"X-Request-ID": sent} if sent is not None else {}
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        first = await gw.client.get("/api/movies/1", headers=headers)
        second = await gw.client.get("/api/movies/1", headers=headers)
    rid = first.headers["x-request-id"]
    assert is_generated(rid)
    assert rid != second.headers["x-request-id"]
    assert [v for k, v in first.json()["headers"] if k == "x-request-id"] == [rid]


async def test_the_upstreams_echo_is_not_duplicated(gateway_factory, raw_upstream):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-ID: upstream-own\r\n\r\n{}"
    async with (
        raw_upstream(lambda head, body, i: answer) as upstream,
        gateway_factory(inventory_urls=upstream.url) as gw,
    ):
        response = await gw.client.get("/api/movies/1", headers={"X-Request-ID": "mine"})
    assert response.headers.get_list("x-request-id") == ["mine"]


async def test_every_kind_of_answer_carries_the_id(gateway_factory, unused_port):
    async with gateway_factory(
        inventory_urls=f"http://127.0.0.1:{unused_port()}",
        rabbitmq_port=unused_port(),
        gateway_api_keys="k",
    ) as gw:
        answers = [
            await gw.client.get("/api/movies/1"),  # 502
            await gw.client.post("/api/movies", content=b"{}"),  # 401
            await gw.client.get("/nowhere"),  # 404
            await gw.client.put("/health"),  # 405
            await gw.client.get("/health"),  # 503
            await gw.client.get("/openapi.json"),  # 200
            await gw.client.get("/metrics"),  # 200
            await gw.client.post(
                "/api/billing", json={"user_id": 1}, headers={"Authorization": "Bearer k"}
            ),  # 422
        ]
        sent = await gw.client.get("/health", headers={"X-Request-ID": "health-check-1"})
    assert [a.status_code for a in answers] == [502, 401, 404, 405, 503, 200, 200, 422]
    for answer in answers:
        assert is_generated(answer.headers["x-request-id"]), answer.request.url
    assert sent.headers["x-request-id"] == "health-check-1"


async def test_the_id_becomes_the_orders_correlation_id(
    gateway_factory, poll, queue_name, amqp, amqp_message
):
    async with gateway_factory(billing_queue=queue_name) as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        response = await gw.client.post(
            "/api/billing", json={"user_id": 1, "number_of_items": 1, "total_amount": 1}
        )
    assert response.status_code == 200
    queue = await amqp.get_queue(queue_name, ensure=True)
    message = await amqp_message(queue)
    assert message.correlation_id == response.headers["x-request-id"]
    assert is_generated(message.correlation_id)


@pytest.fixture
def log_lines():
    """The gateway's loggers configured by `logging_config` (production: JSON), into a buffer."""

    def configure(app_env: str) -> io.StringIO:
        buffer = io.StringIO()
        config = logging_config(app_env, "INFO")
        config["handlers"]["default"]["stream"] = buffer
        del config["root"]
        config["loggers"] = {"gateway": {"handlers": ["default"], "propagate": False}}
        logging.config.dictConfig(config)
        return buffer

    yield configure
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.handlers.clear()
    gateway_logger.propagate = True


async def test_log_lines_carry_the_request_id_as_json_in_production(
    gateway_factory, unused_port, log_lines
):
    buffer = log_lines("production")
    async with gateway_factory(inventory_urls=f"http://127.0.0.1:{unused_port()}") as gw:
        response = await gw.client.get("/api/movies/1", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 502
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    warning = next(r for r in records if "unreachable" in r["message"])
    assert warning["request_id"] == "trace-me"
    assert warning["level"] == "WARNING"
    assert all("request_id" in r for r in records)


async def test_log_lines_carry_the_request_id_readably_in_development(
    gateway_factory, unused_port, log_lines
):
    buffer = log_lines("development")
    async with gateway_factory(inventory_urls=f"http://127.0.0.1:{unused_port()}") as gw:
        await gw.client.get("/api/movies/1", headers={"X-Request-ID": "trace-me"})
    lines = buffer.getvalue().splitlines()
    assert any("[trace-me] gateway.proxy" in line and "unreachable" in line for line in lines)
