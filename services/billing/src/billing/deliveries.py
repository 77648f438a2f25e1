"""Deliveries of one queue on one channel, taken in batches, straight from aiormq.

aio-pika's `queue.consume` builds an `IncomingMessage` and runs a second task per delivery: at
thousands of messages a second, a large share of the consumer's CPU. Here the consumer is
registered on the channel's underlying aiormq channel with a callback that only appends the
`DeliveredMessage` to a buffer. When the broker cancels the consumer (queue deleted), the queue
is declared again and consumed again; when the channel or its connection closes, `lost` is set
and `take` returns at once: the consumer then connects again (possibly to another node) with a
new `Deliveries`, and the broker redelivers what was not acknowledged.
"""

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable

from aio_pika.abc import AbstractChannel as Channel
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from billing.broker import redeclare
from billing.config import Settings

log = logging.getLogger(__name__)

RETRY_DELAY = 0.5
TIMEOUT = 5


class Deliveries:
    def __init__(self, channel: Channel, settings: Settings) -> None:
        self._channel = channel
        self._settings = settings
        self._queue = settings.billing_queue
        self._buffer: deque[DeliveredMessage] = deque()
        self._wanted = 1  # buffer length that wakes the waiter
        self._waiter: asyncio.Future[None] | None = None
        self.amqp: AbstractChannel | None = None  # the channel consumed
        self._stopped: asyncio.Future[None] | None = None
        self.lost = False  # the channel closed: nothing more will be delivered here

    def stop(self) -> None:
        """Ends `consume()` even where aiormq swallows a cancellation (seen in its RPC calls)."""
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def consume(self) -> None:
        """Keep a consumer on the channel until stopped, cancelled or the channel closes."""
        self._stopped = stopped = asyncio.get_running_loop().create_future()
        try:
            amqp = await self._channel.get_underlay_channel()
            # Set before consuming: deliveries may be taken before basic_consume returns.
            self.amqp = amqp
            first = True
            while not stopped.done() and not amqp.is_closed:
                try:
                    if not first:  # after a broker cancel, the queue may have been deleted
                        await redeclare(amqp, self._settings)
                    first = False
                    tag = f"billing.{uuid.uuid4().hex}"
                    _buffer_without_tasks(amqp, tag, self._append)
                    await amqp.basic_consume(
                        self._queue, self._on_delivery, consumer_tag=tag, timeout=TIMEOUT
                    )
                except Exception as exc:
                    log.debug("not consuming (%r)", exc)
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                if stopped.done():
                    return
                log.info("consuming %s", self._queue)
                await self._until_lost(amqp, tag, stopped)
        finally:
            self.lost = True
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    async def _until_lost(
        self, amqp: AbstractChannel, tag: str, stopped: asyncio.Future[None]
    ) -> None:
        """Return once the channel closed, the broker cancelled the consumer or we stopped."""
        cancelled = asyncio.get_running_loop().create_future()

        def on_cancel(frame: Basic.Cancel) -> None:
            if frame.consumer_tag == tag and not cancelled.done():
                cancelled.set_result(None)

        amqp.on_consumer_cancel_callbacks.add(on_cancel)
        closing = amqp.closing
        try:
            await asyncio.wait({closing, cancelled, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()  # stops observing the channel, does not close it
            amqp.on_consumer_cancel_callbacks.discard(on_cancel)
        if cancelled.done() and not amqp.is_closed:
            log.warning("the broker cancelled the consumer of %s; consuming again", self._queue)
            await asyncio.sleep(RETRY_DELAY)

    async def _on_delivery(self, message: DeliveredMessage) -> None:
        self._append(message)  # only if aiormq lacks what _buffer_without_tasks relies on

    def _append(self, message: DeliveredMessage) -> None:
        buffer = self._buffer
        buffer.append(message)
        if len(buffer) >= self._wanted and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self, size: int, linger: float) -> list[DeliveredMessage]:
        """Wait for a delivery, then up to `linger` seconds for `size`; empty once `lost`."""
        await self._until(1, None)
        await self._until(size, linger)
        if self.lost:
            self._buffer.clear()  # the broker redelivers them on the next connection
            return []
        buffer = self._buffer
        return [buffer.popleft() for _ in range(min(size, len(buffer)))]

    async def _until(self, count: int, seconds: float | None) -> None:
        if len(self._buffer) >= count or self.lost:
            return
        self._wanted = count
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._waiter
        finally:
            self._waiter = None


def _buffer_without_tasks(
    amqp: AbstractChannel, tag: str, append: Callable[[DeliveredMessage], None]
) -> None:
    """aiormq runs every consumer callback in a task of its own; our callback only buffers, so
    from now on the channel's reader buffers deliveries to our consumer tag itself (bench/README.md
    has what that is worth). It relies on aiormq's private reader methods: aiormq is pinned
    exactly, and tests/test_billing_deliveries.py fails if they change; without them, nothing
    changes and the callback keeps its task."""
    get_header = getattr(amqp, "_Channel__get_content_header", None)
    read_content = getattr(amqp, "_read_content", None)
    original = getattr(amqp, "_on_deliver_frame", None)
    if get_header is None or read_content is None or original is None:
        return

    async def on_deliver_frame(frame: Basic.Deliver) -> None:
        if frame.consumer_tag != tag:
            await original(frame)
            return
        append(await read_content(frame, await get_header()))

    amqp._on_deliver_frame = on_deliver_frame  # type: ignore[method-assign]
