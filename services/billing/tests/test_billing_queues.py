"""Quorum queues against the real broker: several broker addresses, the delivery limit, and
`python -m billing queues migrate` (a classic queue of an older install, moved without loss)."""

import asyncio
import os
import socket
import sys
import uuid

import aio_pika
import orjson
import pytest
from pydantic import ValidationError

from billing.broker import DELIVERY_LIMIT, DLQ_ARGUMENTS, queue_arguments
from billing.config import Settings
from billing.observability import REGISTRY


def make(**values: object) -> Settings:
    defaults = {"billing_db_password": "s", "rabbitmq_password": "s"}
    return Settings(_env_file=None, **{**defaults, **values})  # type: ignore[call-arg]


# --- RABBITMQ_HOST: one host, or several ---------------------------------------------------
def test_one_host_is_one_address_on_the_configured_port() -> None:
    assert make(rabbitmq_host="mq", rabbitmq_port=5673).rabbitmq_addresses == [("mq", 5673)]


def test_several_hosts_each_with_an_optional_port() -> None:
    settings = make(rabbitmq_host=" mq-1, mq-2:5679 ,10.0.0.3,", rabbitmq_port=5673)
    assert settings.rabbitmq_addresses == [("mq-1", 5673), ("mq-2", 5679), ("10.0.0.3", 5673)]


@pytest.mark.parametrize("hosts", ["", " , ", "mq:0", "mq:99999", "mq:port", ":5672", "u@mq"])
def test_a_malformed_host_list_is_refused_naming_the_variable(hosts: str) -> None:
    with pytest.raises(ValidationError, match="rabbitmq_host"):
        make(rabbitmq_host=hosts)


# --- failover ------------------------------------------------------------------------------
@pytest.mark.usefixtures("clean")
async def test_the_consumer_moves_to_the_next_broker_when_its_own_is_lost(
    pool, settings: Settings, publish, eventually, start_consumer, broker_proxy
) -> None:
    """Two addresses for the test broker; the first one disappears for good."""
    first = broker_proxy
    second = type(first)(settings.rabbitmq_host, settings.rabbitmq_port, _free_port())
    await first.start()
    await second.start()
    try:
        hosts = f"127.0.0.1:{first.port},127.0.0.1:{second.port}"
        attempts_before = _connect_attempts()
        consumer = await start_consumer(settings.model_copy(update={"rabbitmq_host": hosts}))
        await publish(order())
        await eventually(lambda: _count(pool, 1))

        await first.stop()  # its connection cut, new ones refused: never comes back
        await eventually(lambda: _connect_attempts() - attempts_before >= 2)
        for _ in range(5):
            await publish(order())
        await eventually(lambda: _count(pool, 6), within=15)
        assert consumer.connected
    finally:
        await second.stop()


# --- x-delivery-limit ----------------------------------------------------------------------
@pytest.mark.usefixtures("clean")
async def test_a_message_never_settled_is_dead_lettered_by_the_broker_and_listed(
    settings: Settings, channel, publish, depth, eventually
) -> None:
    """A message handed out and requeued DELIVERY_LIMIT + 1 times (a consumer failing on it
    again and again) goes to the DLQ by itself; `dlq list` says why."""
    await publish(orjson.dumps(order()), message_id="again-and-again")
    queue = await channel.get_queue(settings.billing_queue, ensure=False)
    for _ in range(DELIVERY_LIMIT + 1):
        message = await _get(queue)
        await message.nack(requeue=True)
    await eventually(lambda: _equals(depth(settings.dead_letter_queue), 1))
    assert await depth(settings.billing_queue) == 0

    code, out, err = await run_cli(settings, "dlq", "list")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("again-and-again\t"))
    assert "reason: delivery_limit" in line and "by the broker" in line


# --- python -m billing queues migrate ------------------------------------------------------
@pytest.fixture
async def classic(amqp, settings: Settings):
    """billing_queue and its DLQ as an older install left them: classic, with messages."""
    name = f"billing_queue_migrate_{uuid.uuid4().hex[:8]}"
    queues = (name, f"{name}.dlq", f"{name}.migrating", f"{name}.dlq.migrating")
    channel = await amqp.channel()
    for queue in queues[:2]:
        await channel.declare_queue(queue, durable=True)
    yield settings.model_copy(update={"billing_queue": name}), channel
    for queue in queues:
        await channel.queue_delete(queue)
    await channel.close()


async def test_migrate_moves_every_message_of_classic_queues_into_quorum_queues(
    amqp, classic
) -> None:
    settings, channel = classic
    orders = [order() for _ in range(1200)]
    for body in orders:
        await _publish(channel, settings.billing_queue, orjson.dumps(body), body["order_id"])
    headers = {"x-death-reason": "not valid JSON", "x-original-queue": settings.billing_queue}
    await _publish(channel, settings.dead_letter_queue, b"{oops", "dead-1", headers=headers)

    code, out, err = await run_cli(settings, "queues", "migrate")
    assert code == 0, err
    assert f"{settings.billing_queue}: now a quorum queue (1200 message(s) moved over)" in out
    assert f"{settings.dead_letter_queue}: now a quorum queue (1 message(s) moved over)" in out

    # Both are quorum queues now, with billing's arguments; no temporary queue is left.
    for name, arguments in (
        (settings.billing_queue, queue_arguments(settings.dead_letter_queue)),
        (settings.dead_letter_queue, DLQ_ARGUMENTS),
    ):
        probe = await amqp.channel()
        await probe.declare_queue(name, durable=True, arguments=arguments)
        await probe.close()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await (await amqp.channel()).declare_queue(f"{name}.migrating", passive=True)

    # Every message, once, unchanged (body, id, persistence); the dead letter keeps its reason.
    moved = await _drain(channel, settings.billing_queue)
    assert sorted(m.message_id for m in moved) == sorted(o["order_id"] for o in orders)
    assert {m.message_id: orjson.loads(m.body) for m in moved} == {o["order_id"]: o for o in orders}
    assert {m.delivery_mode for m in moved} == {aio_pika.DeliveryMode.PERSISTENT}
    (dead,) = await _drain(channel, settings.dead_letter_queue)
    assert (dead.message_id, dead.body) == ("dead-1", b"{oops")
    assert dead.headers["x-death-reason"] == "not valid JSON"

    code, out, _ = await run_cli(settings, "queues", "migrate")  # again: nothing to do
    assert code == 0
    assert out.count("a quorum queue already, nothing to do") == 2


async def test_migrate_refuses_while_billing_consumes_the_classic_queue(
    amqp, classic, eventually
) -> None:
    settings, channel = classic
    await _publish(channel, settings.billing_queue, orjson.dumps(order()), "o-1")
    consumer = await amqp.channel()
    queue = await consumer.get_queue(settings.billing_queue, ensure=False)

    async def hold(message) -> None:  # never acknowledged
        pass

    await queue.consume(hold)

    code, _, err = await run_cli(settings, "queues", "migrate")
    assert code == 1
    assert "has 1 consumer(s): stop billing first" in err
    await consumer.close()  # the message goes back: the classic queue is untouched
    probe = await amqp.channel()
    declared = await probe.declare_queue(settings.billing_queue, durable=True)  # still classic

    async def back() -> bool:
        queue = await probe.declare_queue(settings.billing_queue, passive=True)
        return queue.declaration_result.message_count == 1

    assert declared.declaration_result.consumer_count == 0
    await eventually(back)


# --- helpers ---------------------------------------------------------------------------------
def order() -> dict[str, object]:
    return {
        "order_id": str(uuid.uuid4()),
        "user_id": 7,
        "number_of_items": 2,
        "total_amount": "20.50",
    }


async def run_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billing",
        *args,
        env={**os.environ, "BILLING_QUEUE": settings.billing_queue},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return await process.wait(), out.decode(), err.decode()


async def _publish(channel, queue: str, body: bytes, message_id: str, **properties) -> None:
    message = aio_pika.Message(body, message_id=message_id, delivery_mode=2, **properties)
    await channel.default_exchange.publish(message, routing_key=queue)


async def _get(queue) -> aio_pika.abc.AbstractIncomingMessage:
    for _ in range(100):
        message = await queue.get(fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    pytest.fail(f"nothing on {queue.name}")


async def _drain(channel, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.get_queue(name, ensure=False)
    messages = []
    while (message := await queue.get(fail=False)) is not None:
        await message.ack()
        messages.append(message)
    return messages


async def _count(pool, expected: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM orders") == expected


async def _equals(value, expected: int) -> bool:
    return await value == expected


def _connect_attempts() -> float:
    """The consumer's connection attempts (the registry is process-wide: compare deltas)."""
    return REGISTRY.get_sample_value("billing_consumer_connect_attempts_total")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
