"""Publishes orders to RabbitMQ: one connection and one confirming channel per process.

The gateway must serve even while the broker is down, so connecting is a background task that
retries with backoff. The broker address may list several nodes of a cluster (comma-separated
AMQP URLs): the task connects to the first that answers and, when that connection or channel is
lost, connects again starting with the next node, at once. A publish answers only once the
broker confirmed it; while no node is connected it fails at once.

`GATEWAY_PUBLISH_TIMEOUT` bounds the whole publish: waiting for the next node while failing over,
the publish, its confirm and a second publish on the next node when the first node was lost with
the order in flight. A confirm that does not come in time is a 503, and the connection is
replaced (the next node first): a channel that stopped confirming (its node cut off, or a quorum
queue whose leader it still waits for) is not given the next orders.
"""

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection
from aiormq import spec
from aiormq.abc import AbstractChannel
from aiormq.exceptions import DeliveryError, PublishError
from crud_common.backoff import backoff

from .errors import BrokerUnavailable

log = logging.getLogger(__name__)

Properties = spec.Basic.Properties
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
# Billing declares the queue alike (billing.broker; tests/contract checks both): a quorum queue,
# replicated on the cluster's nodes; poison it cannot settle goes to <queue>.dlq after 20 tries.
DELIVERY_LIMIT = 20


def queue_arguments(queue: str) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{queue}.dlq",
    }


def _node(url: str) -> str:
    """host:port of an AMQP URL, for log lines (never the credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5672}"


class OrderPublisher:
    def __init__(
        self,
        amqp_url: str,
        queue: str,
        publish_timeout: float,
        connect_timeout: float = 2.0,
        reconnect_interval: float = 1.0,
        max_backoff: float = 10.0,
    ) -> None:
        """`amqp_url`: one AMQP URL, or the nodes of a cluster as comma-separated URLs."""
        self._urls = [url.strip() for url in amqp_url.split(",") if url.strip()]
        self.queue = queue
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._reconnect_interval = reconnect_interval
        self._max_backoff = max_backoff
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None  # aiormq's, under aio-pika's
        self._task: asyncio.Task[None] | None = None
        # From the loss of a connection until the next one, or until every node failed once:
        # a publish meanwhile waits for the next node (within its timeout) instead of a 503.
        self._failing_over = False
        self._stalled = asyncio.Event()  # set: the current connection stopped confirming
        self._closing: set[asyncio.Task[None]] = set()  # connections being closed
        self._closed = False

    @property
    def connected(self) -> bool:
        channel = self._channel
        return channel is not None and not channel.is_closed

    def start(self) -> None:
        """Connect in the background (and again whenever the connection is lost)."""
        if self._task is None:
            self._task = asyncio.create_task(self._stay_connected(), name="amqp-connect")

    async def wait_connected(self, within: float) -> bool:
        """True once connected within `within` seconds (False at once when, failing over,
        every node failed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        failing_over = self._failing_over
        while not self.connected:
            failing_over = failing_over or self._failing_over
            if loop.time() >= deadline or (failing_over and not self._failing_over):
                return False
            await asyncio.sleep(0.02)
        return True

    async def _stay_connected(self) -> None:
        """Round-robin over the nodes; a pause (with backoff) only after a whole round failed."""
        failures, node = 0, 0
        delays = backoff(self._reconnect_interval, self._max_backoff)
        while not self._closed:  # (aiormq may swallow a cancellation while connecting)
            url, node = self._urls[node], (node + 1) % len(self._urls)
            if not await self._connect(url):
                failures += 1
                if failures % len(self._urls) == 0:
                    self._failing_over = False  # no node answers: 503 at once
                    delay = next(delays)
                    log.warning("no broker reachable; retrying in %.1f s", delay)
                    await asyncio.sleep(delay)
                continue
            failures, self._failing_over = 0, False
            delays = backoff(self._reconnect_interval, self._max_backoff)
            channel = self._channel
            assert channel is not None
            closing, stalled = channel.closing, asyncio.ensure_future(self._stalled.wait())
            try:
                await asyncio.wait({closing, stalled}, return_when=asyncio.FIRST_COMPLETED)
                why = "stopped confirming"
                if closing.done():
                    why = f"lost ({closing.exception() if not closing.cancelled() else 'closed'!r})"
                log.warning("broker %s %s; connecting to the next node", _node(url), why)
            finally:
                closing.cancel()
                stalled.cancel()
                self._failing_over = True
                self._disconnect()

    async def _connect(self, url: str) -> bool:
        connection = None
        try:
            connection = await aio_pika.connect(
                url,
                timeout=self._connect_timeout,
                client_properties={"connection_name": "gateway"},
            )
            async with asyncio.timeout(self._connect_timeout):  # a node that hangs: the next
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                arguments = queue_arguments(self.queue)
                await channel.declare_queue(self.queue, durable=True, arguments=arguments)
                underlay = await channel.get_underlay_channel()
        except asyncio.CancelledError:
            if connection is not None:
                await connection.close()
            raise
        except Exception as exc:
            log.warning("broker %s not reachable (%r)", _node(url), exc)
            if connection is not None:
                await self._close_quietly(connection)
            return False
        self._connection, self._channel = connection, underlay
        self._stalled.clear()
        log.info("connected to the broker %s; publishing to %s", _node(url), self.queue)
        return True

    def _disconnect(self) -> None:
        """Forget the connection and close it in the background: a node that stopped answering
        (its close takes seconds) must not delay the next one."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            task = asyncio.create_task(self._close_quietly(connection))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_quietly(self, connection: AbstractConnection) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._connect_timeout):
                await connection.close()

    def _replace(self, channel: AbstractChannel) -> None:
        """`channel` did not confirm in time: stop publishing on it and connect to the next node
        (publishes in flight on it are published again there when it closes)."""
        if channel is self._channel:
            self._channel, self._failing_over = None, True
            self._stalled.set()

    async def publish(self, body: dict[str, Any], correlation_id: str | None = None) -> None:
        """Publish a persistent JSON message (message id = the order id); returns once the
        broker confirmed it. BrokerUnavailable when it is down, nacked, returned it (unroutable)
        or did not confirm within the publish timeout, which bounds the whole call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout
        order_id = body["order_id"]
        # aiormq's basic_publish directly: building an aio_pika.Message and going through
        # aio-pika's exchange.publish cost about a third of an order's CPU (measured).
        properties = Properties(
            content_type="application/json",
            delivery_mode=PERSISTENT,
            message_id=order_id,
            correlation_id=correlation_id,
        )
        payload = orjson.dumps(body)
        lost: Exception | None = None
        while True:
            channel = self._channel
            if channel is None or channel.is_closed:
                # Known to be down: fail fast. Failing over (or our node just lost with the
                # order in flight): wait for the next node, within the deadline.
                if not (self._failing_over or lost) or not await self.wait_connected(
                    deadline - loop.time()
                ):
                    break
                channel = self._channel
                if channel is None:
                    break
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await self._publish_on(channel, payload, properties, left)
                return
            except TimeoutError as exc:
                log.warning("no confirm for %s in %ss", order_id, self._publish_timeout)
                self._replace(channel)
                raise BrokerUnavailable from exc
            except Exception as exc:  # nack, returned (unroutable), channel or connection lost
                if channel.is_closed:
                    # Its node was lost with the order in flight (queued or not): publish it
                    # again on the next node, within the same deadline. Billing stores an
                    # order_id once.
                    lost = exc
                elif isinstance(exc, DeliveryError) and not isinstance(exc, PublishError):
                    # Nacked: not taken. A channel whose first publish to the quorum queue met
                    # a leader that was just killed nacks every later one (RabbitMQ 3.10): a new
                    # connection asks for the new leader. Publish again there, same deadline.
                    log.warning("order %s nacked; replacing the broker connection", order_id)
                    self._replace(channel)
                    lost = exc
                else:
                    log.warning("publishing order %s failed: %r", order_id, exc)
                    raise BrokerUnavailable from exc
        if lost is not None:
            log.warning("publishing order %s failed: %r", order_id, lost)
        raise BrokerUnavailable from lost

    async def _publish_on(
        self, channel: AbstractChannel, body: bytes, properties: Any, within: float
    ) -> None:
        # wait=False: don't hold the channel's lock until the frame is on the socket (that
        # serialises concurrent publishes); the confirm is awaited, within the timeout.
        await channel.basic_publish(
            body,
            routing_key=self.queue,
            properties=properties,
            mandatory=True,
            timeout=within,
            wait=False,
        )

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            self._task = None
        self._disconnect()
        await asyncio.gather(*self._closing, return_exceptions=True)
