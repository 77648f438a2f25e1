"""`python -m billing dlq list|replay` against the real broker."""

import asyncio
import os
import sys
import uuid

import aio_pika
import orjson
import pytest

from billing import dlq
from billing.consumer import ORIGINAL_QUEUE_HEADER, REASON_HEADER

pytestmark = pytest.mark.usefixtures("clean")

NEGATIVE = orjson.dumps({"user_id": 1, "number_of_items": 1, "total_amount": "-3"})


async def run_cli(settings, *args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billing",
        *args,
        env={**os.environ, "BILLING_QUEUE": settings.billing_queue, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return await process.wait(), out.decode(), err.decode()  # wait() gives the exit code


@pytest.fixture
async def dead_letters(clean, settings, publish, depth, eventually, start_consumer) -> None:
    """Two poison messages dead-lettered by a real consumer, which is then stopped."""
    await publish(b"garbage", message_id="m-1")
    await publish(NEGATIVE, message_id="m-2")
    consumer = await start_consumer(settings)
    await eventually(lambda: _equals(depth(settings.dead_letter_queue), 2))
    await consumer.stop()


@pytest.mark.usefixtures("dead_letters")
async def test_list_shows_reasons_without_consuming(settings, depth) -> None:
    for _ in range(2):  # browsing twice sees the same letters: nothing was taken
        letters = await dlq.browse(settings)
        assert {(d.message_id, d.original_queue) for d in letters} == {
            ("m-1", settings.billing_queue),
            ("m-2", settings.billing_queue),
        }
        reasons = {d.message_id: d.reason for d in letters}
        assert "not valid JSON" in reasons["m-1"]
        assert "total_amount: must not be negative" in reasons["m-2"]
    assert await depth(settings.dead_letter_queue) == 2


@pytest.mark.usefixtures("dead_letters")
async def test_list_command_prints_each_dead_letter(settings, depth) -> None:
    code, out, _ = await run_cli(settings, "dlq", "list")
    assert code == 0
    assert "m-1\treason: body is not valid JSON\tbody: garbage" in out
    assert "m-2\treason: total_amount: must not be negative" in out
    assert f"2 dead letter(s) in {settings.dead_letter_queue}" in out
    assert await depth(settings.dead_letter_queue) == 2


async def test_replay_moves_letters_back_and_invalid_ones_return(
    pool, settings, channel, depth, eventually, start_consumer
) -> None:
    # A letter that is valid now (say, dead-lettered while a bug was live) and a bad one.
    order_id = str(uuid.uuid4())
    valid = orjson.dumps(
        {"order_id": order_id, "user_id": 5, "number_of_items": 1, "total_amount": "9.99"}
    )
    for body in (valid, NEGATIVE):
        await channel.default_exchange.publish(
            _dead(body, "old reason", settings.billing_queue),
            routing_key=settings.dead_letter_queue,
        )

    code, out, _ = await run_cli(settings, "dlq", "replay")
    assert (code, out.strip()) == (0, f"replayed 2 dead letter(s) to {settings.billing_queue}")
    assert await depth(settings.dead_letter_queue) == 0
    assert await depth(settings.billing_queue) == 2

    await start_consumer(settings)
    await eventually(lambda: pool.fetchval("SELECT user_id FROM orders"))
    assert str(await pool.fetchval("SELECT order_id FROM orders")) == order_id
    await eventually(lambda: _equals(depth(settings.dead_letter_queue), 1))
    [letter] = await dlq.browse(settings)
    assert letter.body == NEGATIVE
    assert letter.reason == "total_amount: must not be negative"


async def test_replay_of_an_empty_dlq_moves_nothing(settings) -> None:
    assert await dlq.replay(settings) == 0


async def test_cli_reports_an_unreachable_broker(settings, closed_port: int) -> None:
    code, _, err = await run_cli(settings, "dlq", "list", RABBITMQ_PORT=str(closed_port))
    assert code == 1
    assert "broker unreachable" in err


def _dead(body: bytes, reason: str, queue: str) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        headers={REASON_HEADER: reason, ORIGINAL_QUEUE_HEADER: queue},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def _equals(value, expected: int) -> bool:
    return await value == expected
