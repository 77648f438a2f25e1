"""Inspect and replay dead letters (`python -m billing dlq list|replay`)."""

import asyncio
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel

from billing.broker import connect, declare_queues, persistent_copy
from billing.config import Settings
from billing.consumer import ORIGINAL_QUEUE_HEADER, REASON_HEADER

# Set by the broker when it dead-letters a message itself (x-delivery-limit reached).
BROKER_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)
# Left out when a dead letter is replayed: the reason, and what the broker sets itself.
NOT_REPLAYED = (REASON_HEADER, ORIGINAL_QUEUE_HEADER, "x-delivery-count", *BROKER_HEADERS)


def reason_of(headers: dict, queue: str) -> tuple[str, str]:
    """(reason, original queue): billing's own headers, else the broker's `x-death`."""
    if REASON_HEADER in headers:
        return str(headers[REASON_HEADER]), str(headers.get(ORIGINAL_QUEUE_HEADER, queue))
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        reason = str(death.get("reason", "unknown"))
        if reason == "delivery_limit":
            reason = "delivery_limit: delivered too many times without being acknowledged"
        return f"{reason} (dead-lettered by the broker)", str(death.get("queue", queue))
    return "unknown", queue


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    reason: str
    original_queue: str
    body: bytes


async def browse(settings: Settings) -> list[DeadLetter]:
    """Read every dead letter without removing it: get them all unacked, then requeue them."""
    connection, _ = await connect(settings)
    async with connection:
        channel = await connection.channel()
        await declare_queues(channel, settings)
        dlq = await channel.declare_queue(settings.dead_letter_queue, passive=True)
        letters, last = [], None
        for _ in range(dlq.declaration_result.message_count or 0):
            message = await dlq.get(fail=False)
            if message is None:
                break
            reason, queue = reason_of(dict(message.headers or {}), settings.billing_queue)
            letters.append(DeadLetter(message.message_id, reason, queue, message.body))
            last = message
        if last is not None:
            await last.nack(multiple=True, requeue=True)
            await _until_ready(channel, settings.dead_letter_queue, len(letters))
    return letters


async def _until_ready(channel: AbstractChannel, queue: str, count: int, within: float = 5) -> None:
    """Wait (at most `within` seconds) until `queue` holds `count` ready messages again: a quorum
    queue counts requeued messages only once it has applied the requeue, so a `dlq replay` right
    after `dlq list` would otherwise find fewer letters."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        declared = await channel.declare_queue(queue, passive=True)
        if (declared.declaration_result.message_count or 0) >= count:
            return
        await asyncio.sleep(0.01)


async def replay(settings: Settings) -> int:
    """Move the dead letters present now back to the queue; returns how many were moved.

    Each is republished (persistent, confirmed) before it is acked on the DLQ; one that is still
    invalid comes back to the DLQ, and is not replayed twice in one run.
    """
    connection, _ = await connect(settings)
    async with connection:
        channel = await connection.channel(on_return_raises=True)
        await declare_queues(channel, settings)
        dlq = await channel.declare_queue(settings.dead_letter_queue, passive=True)
        moved = 0
        for _ in range(dlq.declaration_result.message_count or 0):
            message = await dlq.get(fail=False)
            if message is None:
                break
            headers = {
                key: value
                for key, value in (message.headers or {}).items()
                if key not in NOT_REPLAYED
            }
            await channel.default_exchange.publish(
                persistent_copy(message, headers), routing_key=settings.billing_queue, timeout=5
            )
            await message.ack()
            moved += 1
    return moved
