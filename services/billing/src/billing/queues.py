"""`python -m billing queues migrate`: the classic queues of an older install become quorum queues.

RabbitMQ cannot change a queue's type: each queue that exists with other arguments (the DLQ,
then `billing_queue`) is emptied into a temporary quorum queue `<name>.migrating`, deleted,
declared again as a quorum queue, and refilled from the temporary one. Every message is moved by
a publish the broker confirmed before the original is acknowledged, so none is lost (one can be
copied twice if the command is interrupted between the two: billing stores an order once).

The original is deleted only when it is empty and has no consumer (`if-empty`, `if-unused`):
a running billing makes the command stop at once (stop billing first). Stop the gateway too:
a test publishing throughout a migration once missed one confirmed order, most likely a
publish routed to the original while it was being deleted, confirmed and dropped with it. An
interrupted run is finished by running it again: what a temporary queue holds is always moved
back.
"""

import asyncio

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

from billing.broker import DLQ_ARGUMENTS, connect, persistent_copy, queue_arguments
from billing.config import Settings

BATCH = 200  # messages taken, then published together, then acknowledged at once
ROUNDS = 50  # attempts to find the original empty while a publisher keeps filling it
SET_BY_THE_QUEUE = ("x-delivery-count",)


class MigrationRefused(RuntimeError):
    pass


async def migrate(settings: Settings) -> list[str]:
    """Migrate the dead-letter queue and billing_queue; one line of report per queue."""
    connection, _ = await connect(settings)
    async with connection:
        dlq = settings.dead_letter_queue
        return [
            await _migrate(connection, dlq, DLQ_ARGUMENTS),
            await _migrate(connection, settings.billing_queue, queue_arguments(dlq)),
        ]


async def _migrate(connection: AbstractConnection, name: str, arguments: dict) -> str:
    temporary = f"{name}.migrating"
    moved = 0
    if not await _declared(connection, name, arguments):
        channel = await connection.channel(on_return_raises=True)  # publisher confirms
        await channel.declare_queue(temporary, durable=True, arguments=DLQ_ARGUMENTS)
        for _ in range(ROUNDS):
            await _refuse_if_consumed(channel, name)
            moved += await _move(channel, name, temporary)
            try:
                await channel.queue_delete(name, if_unused=True, if_empty=True)
                break
            except ChannelPreconditionFailed:  # filled or consumed meanwhile: another round
                channel = await connection.channel(on_return_raises=True)
        else:
            raise MigrationRefused(f"{name} never found empty: stop its publishers, run again")
        if not await _declared(connection, name, arguments):
            raise MigrationRefused(f"{name} was declared again with other arguments meanwhile")
    channel = await connection.channel(on_return_raises=True)
    try:
        await channel.declare_queue(temporary, passive=True)
    except ChannelNotFoundEntity:
        if not moved:
            return f"{name}: a quorum queue already, nothing to do"
        raise
    back = await _move(channel, temporary, name)
    # Nothing else publishes to it (and a quorum queue has no `if-empty` delete): check, delete.
    left = await channel.declare_queue(temporary, passive=True)
    if left.declaration_result.message_count:
        raise MigrationRefused(f"{temporary} still holds messages: run this again")
    await channel.queue_delete(temporary)
    return f"{name}: now a quorum queue ({back} message(s) moved over)"


async def _declared(connection: AbstractConnection, name: str, arguments: dict) -> bool:
    """Declare `name` with `arguments`; False when it exists with other ones."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    except ChannelPreconditionFailed:
        return False
    await channel.close()
    return True


async def _refuse_if_consumed(channel: AbstractChannel, name: str) -> None:
    queue = await channel.declare_queue(name, passive=True)
    consumers = queue.declaration_result.consumer_count
    if consumers:
        raise MigrationRefused(
            f"{name} has {consumers} consumer(s): stop billing first "
            "(sudo pm2 stop billing_app), then run this again"
        )


async def _move(channel: AbstractChannel, source: str, target: str) -> int:
    """Move every message `source` holds now to `target`; returns how many."""
    queue = await channel.get_queue(source, ensure=False)
    moved = 0
    while True:
        messages: list[AbstractIncomingMessage] = []
        while len(messages) < BATCH:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            messages.append(message)
        if not messages:
            return moved
        await asyncio.gather(
            *(
                channel.default_exchange.publish(_copy(m), routing_key=target, timeout=30)
                for m in messages
            )
        )
        await messages[-1].ack(multiple=True)  # only once every copy was confirmed
        moved += len(messages)


def _copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {k: v for k, v in (message.headers or {}).items() if k not in SET_BY_THE_QUEUE}
    return persistent_copy(message, headers)
