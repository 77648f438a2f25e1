"""Inspect and replay dead letters (`python -m billing dlq list|replay`)."""

from dataclasses import dataclass

import aio_pika

from billing.config import Settings
from billing.consumer import ORIGINAL_QUEUE_HEADER, REASON_HEADER, connect


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    reason: str
    original_queue: str
    body: bytes


async def browse(settings: Settings) -> list[DeadLetter]:
    """Read every dead letter without removing it: get them all unacked, then requeue them."""
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(settings.dead_letter_queue, durable=True)
        letters, last = [], None
        for _ in range(dlq.declaration_result.message_count or 0):
            message = await dlq.get(fail=False)
            if message is None:
                break
            headers = message.headers or {}
            letters.append(
                DeadLetter(
                    message.message_id,
                    str(headers.get(REASON_HEADER, "unknown")),
                    str(headers.get(ORIGINAL_QUEUE_HEADER, settings.billing_queue)),
                    message.body,
                )
            )
            last = message
        if last is not None:
            await last.nack(multiple=True, requeue=True)
    return letters


async def replay(settings: Settings) -> int:
    """Move the dead letters present now back to the queue; returns how many were moved.

    Each is republished (persistent, confirmed) before it is acked on the DLQ; one that is still
    invalid comes back to the DLQ, and is not replayed twice in one run.
    """
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel(on_return_raises=True)
        await channel.declare_queue(settings.billing_queue, durable=True)
        dlq = await channel.declare_queue(settings.dead_letter_queue, durable=True)
        moved = 0
        for _ in range(dlq.declaration_result.message_count or 0):
            message = await dlq.get(fail=False)
            if message is None:
                break
            headers = {
                key: value
                for key, value in (message.headers or {}).items()
                if key not in (REASON_HEADER, ORIGINAL_QUEUE_HEADER)
            }
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=headers,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=settings.billing_queue,
                timeout=5,
            )
            await message.ack()
            moved += 1
    return moved
