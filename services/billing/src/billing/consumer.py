"""Consume `billing_queue` in batches: validate, store in one transaction, ack after the commit.

- Invalid messages go to `<queue>.dlq` (persistent, confirmed, with `x-death-reason` and
  `x-original-queue` headers) and are acked only once the broker confirmed the dead letter.
- Valid messages of a batch are inserted in one transaction (`ON CONFLICT (order_id) DO NOTHING`,
  so a redelivered message never makes a second row) and acked only after the commit.
- Database down: nothing is acked; the same batch is retried with capped exponential backoff.
- Tracing: while a message is handled, `logging.request_id` is its AMQP `correlation_id` (the
  gateway puts the client's X-Request-ID there). One log line per stored batch (with the
  message's request id and order_id when the batch is a single message; per-message lines at
  DEBUG), one per dead letter.
- Brokers: `RABBITMQ_HOST` may name several nodes of a cluster. The consumer connects to the
  first that answers (retrying every node with backoff while none does); when its connection or
  channel is lost it connects again, starting with the next node. Deliveries of the lost
  connection are dropped: the broker redelivers them (the inserts are idempotent).
- One batch is handled at a time, so when its last delivery is acked with `multiple=True`, every
  earlier delivery of the channel is already settled. A prefetch above the batch size lets the
  next batch arrive while this one commits.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from crud_common.backoff import backoff
from crud_common.logs import request_id

from billing.broker import connect, declare_queues, persistent_copy
from billing.config import Settings
from billing.db import transaction
from billing.deliveries import Deliveries
from billing.observability import (
    BATCHES,
    CONNECT_ATTEMPTS,
    CONSUMED,
    DEAD_LETTERED,
    DUPLICATES,
    STORE_RETRIES,
)
from billing.repository import insert_orders
from billing.schemas import InvalidOrder, NewOrder, parse_order_message

log = logging.getLogger(__name__)

REASON_HEADER = "x-death-reason"
ORIGINAL_QUEUE_HEADER = "x-original-queue"
# The database refused the data itself: retrying cannot help, the message is dead-lettered.
REJECTED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)

Item = tuple[DeliveredMessage, NewOrder]


def dead_letter(message: DeliveredMessage, reason: str, queue: str) -> aio_pika.Message:
    incoming = aio_pika.IncomingMessage(message)
    headers = {
        **(incoming.headers or {}),
        REASON_HEADER: reason[:1000],
        ORIGINAL_QUEUE_HEADER: queue,
    }
    return persistent_copy(incoming, headers)


async def _settle(message: DeliveredMessage, *, multiple: bool = False) -> None:
    try:
        await message.channel.basic_ack(message.delivery.delivery_tag, multiple=multiple)
    except Exception as exc:
        log.warning("ack failed (%r): the broker will redeliver; duplicates are skipped", exc)


async def _give_back(message: DeliveredMessage, *, multiple: bool = False) -> None:
    """Requeue what we could not handle (callers pause first: no requeue storm). With
    `multiple`, every unsettled delivery of the channel up to this one."""
    if not message.channel.is_closed:
        try:
            await message.channel.basic_nack(
                message.delivery.delivery_tag, multiple=multiple, requeue=True
            )
        except Exception as exc:
            log.warning("nack failed (%r): the broker will redeliver", exc)


@contextlib.contextmanager
def traced(message: DeliveredMessage) -> Iterator[None]:
    """Log lines written meanwhile carry the message's correlation_id as their request_id."""
    token = request_id.set(message.header.properties.correlation_id or "-")
    try:
        yield
    finally:
        request_id.reset(token)


def _log_stored(items: list[Item], stored: int) -> None:
    """One line per batch (traced when the batch is one message); per message only at DEBUG."""
    duplicates = len(items) - stored
    CONSUMED.inc(stored)
    if duplicates:
        DUPLICATES.inc(duplicates)
    if len(items) == 1:
        message, order = items[0]
        with traced(message):
            log.info(
                "stored order %s%s",
                order.order_id,
                " (duplicate, already stored)" if duplicates else "",
                extra={"order_id": str(order.order_id), "stored": stored},
            )
        return
    log.info(
        "stored a batch of %d orders: %d new, %d duplicates",
        len(items),
        stored,
        duplicates,
        extra={"batch_size": len(items), "stored": stored, "duplicates": duplicates},
    )
    if log.isEnabledFor(logging.DEBUG):
        for message, order in items:
            with traced(message):
                log.debug(
                    "stored order %s", order.order_id, extra={"order_id": str(order.order_id)}
                )


class Consumer:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._next_node = 0  # index of the node to try first when (re)connecting
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._handling = asyncio.Lock()  # held while a batch is being stored and acked

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="billing-consumer")

    async def stop(self, grace: float = 5.0) -> None:
        """Let the batch in hand finish (commit and ack) for up to `grace` seconds, then close.

        What is not acked by then returns to the queue when the connection closes.
        """
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            idle = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    idle = await self._handling.acquire()  # no batch in progress, none starts
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if idle:
                self._handling.release()
        if self.connection is not None:
            await self.connection.close()

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by stop(). (asyncio.timeout, unlike 3.11's wait_for, never swallows
        a cancellation that races with the event.)"""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    @property
    def connected(self) -> bool:
        connection = self.connection
        channel = self._channel
        return (
            channel is not None
            and not channel.is_closed
            and connection is not None
            and not connection.is_closed
        )

    async def queue_depths(self) -> tuple[int, int]:
        """Ready messages in the queue and in its dead-letter queue (for /health)."""
        if self.connection is None or not self.connected:
            raise ConnectionError("not connected to the broker")
        channel = await self.connection.channel(publisher_confirms=False)
        try:
            counts = []
            for name in (self.settings.billing_queue, self.settings.dead_letter_queue):
                queue = await channel.declare_queue(name, passive=True)
                counts.append(queue.declaration_result.message_count or 0)
            return counts[0], counts[1]
        finally:
            await channel.close()

    # --- the loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        """One session per connection: consume until it is lost, then connect again."""
        while not self._stopping.is_set():
            deliveries = await self._subscribe()
            if deliveries is None:
                return
            intake = asyncio.create_task(deliveries.consume(), name="billing-deliveries")
            try:
                while not self._stopping.is_set() and not deliveries.lost:
                    batch = await deliveries.take(
                        self.settings.billing_batch_size, self.settings.billing_batch_linger
                    )
                    if batch:
                        async with self._handling:
                            await self._handle_safely(batch)
            finally:
                deliveries.stop()
                intake.cancel()
                await asyncio.gather(intake, return_exceptions=True)
            if not self._stopping.is_set():
                log.warning("broker connection lost; connecting again (next node first)")
                await self._disconnect()

    async def _handle_safely(self, batch: list[DeliveredMessage]) -> None:
        try:
            await self._handle(batch)
        except Exception:
            log.exception("unexpected error on a batch of %d; requeueing it", len(batch))
            await self._pause(1)
            await _give_back(batch[-1], multiple=True)  # what the batch left unsettled

    async def _subscribe(self) -> Deliveries | None:
        """Connect to a node (trying each in turn, from the one after the last used) and
        declare the queues, retrying with backoff; None if stopped meanwhile."""
        delays = backoff()
        addresses = self.settings.rabbitmq_addresses
        while not self._stopping.is_set():
            CONNECT_ATTEMPTS.inc()
            try:
                self.connection, node = await connect(self.settings, self._next_node)
                self._next_node = (node + 1) % len(addresses)
                channel = await self.connection.channel(on_return_raises=True)  # confirms
                await channel.set_qos(prefetch_count=self.settings.billing_prefetch)
                await declare_queues(channel, self.settings)
            except Exception as exc:
                delay = next(delays)
                log.warning("broker unreachable (%s); retrying in %.1fs", exc or repr(exc), delay)
                await self._disconnect()
                await self._pause(delay)
                continue
            self._channel = channel
            log.info(
                "connected to the broker %s:%d (prefetch %d, batches of %d)",
                *addresses[node],
                self.settings.billing_prefetch,
                self.settings.billing_batch_size,
            )
            return Deliveries(channel, self.settings)
        return None

    async def _disconnect(self) -> None:
        connection, self.connection, self._channel = self.connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _handle(self, batch: list[DeliveredMessage]) -> None:
        items: list[Item] = []
        for message in batch:
            try:
                order = parse_order_message(message.body, message.header.properties.message_id)
            except InvalidOrder as exc:
                await self._dead_letter(message, str(exc))
            else:
                items.append((message, order))
        if not items:
            return
        try:
            stored = await self._commit(items)
        except REJECTED:
            await self._store_one_by_one(items)
            return
        if stored is not None:
            BATCHES.inc()
            _log_stored(items, stored)
            # Every earlier delivery on this channel is settled: one ack covers the batch.
            await _settle(items[-1][0], multiple=True)

    async def _commit(self, items: list[Item]) -> int | None:
        """Insert in one transaction, retrying while the database is unavailable.

        Returns the number of new rows, or None when the channel died meanwhile (the broker
        redelivers those messages to the new channel). Raises REJECTED errors.
        """
        delays = backoff()
        while True:
            try:
                async with transaction(self.pool) as conn:
                    return await insert_orders(conn, [order for _, order in items])
            except REJECTED:
                raise
            except Exception as exc:
                if self._stopping.is_set() or items[0][0].channel.is_closed:
                    return None  # not acked: the broker redelivers
                STORE_RETRIES.inc()
                delay = next(delays)
                log.warning(
                    "database unavailable (%r); retrying %d orders in %.1fs", exc, len(items), delay
                )
                await self._pause(delay)

    async def _store_one_by_one(self, items: list[Item]) -> None:
        """The database refused the batch: find the culprits, store the rest."""
        for message, order in items:
            try:
                stored = await self._commit([(message, order)])
            except REJECTED as exc:
                await self._dead_letter(message, f"rejected by the database: {exc}")
                continue
            if stored is not None:
                _log_stored([(message, order)], stored)
                await _settle(message)

    async def _dead_letter(self, message: DeliveredMessage, reason: str) -> None:
        with traced(message):
            await self._publish_dead_letter(message, reason)

    async def _publish_dead_letter(self, message: DeliveredMessage, reason: str) -> None:
        assert self._channel is not None
        message_id = message.header.properties.message_id
        log.warning(
            "dead-lettering message %s: %s",
            message_id,
            reason,
            extra={"order_id": message_id, "reason": reason},
        )
        try:
            await self._channel.default_exchange.publish(
                dead_letter(message, reason, self.settings.billing_queue),
                routing_key=self.settings.dead_letter_queue,
                timeout=5,
            )
        except Exception as exc:
            # Not confirmed: give it back (after a pause) rather than lose it or ack it later.
            log.warning("dead-lettering failed (%r); requeueing the message", exc)
            await self._pause(1)
            await _give_back(message)
            return
        DEAD_LETTERED.inc()
        await _settle(message)
