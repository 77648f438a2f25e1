"""Publishes orders to RabbitMQ: one connection and one confirming channel per process.

The gateway must serve even while the broker is down, so connecting is a background task that
retries with backoff. The broker address may list several nodes of a cluster (comma-separated
AMQP URLs): the task connects to the first that answers and, when that connection or channel is
lost, connects again starting with the next node, at once. A publish answers only once the
broker confirmed it; while no node is connected it fails at once.
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
            if loop.time() >= deadline or (failing_over and not self._failing_over):
                return False
            await asyncio.sleep(0.05)
        return True

    async def _stay_connected(self) -> None:
        """Round-robin over the nodes; a pause (with backoff) only after a whole round failed."""
        delay, failures, node = self._reconnect_interval, 0, 0
        while not self._closed:  # (aiormq may swallow a cancellation while connecting)
            url, node = self._urls[node], (node + 1) % len(self._urls)
            if not await self._connect(url):
                failures += 1
                if failures % len(self._urls) == 0:
                    self._failing_over = False  # no node answers: 503 at once
                    log.warning("no broker reachable; retrying in %.1f s", delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                continue
            failures, delay, self._failing_over = 0, self._reconnect_interval, False
            channel = self._channel
            assert channel is not None
            try:
                await channel.closing
            except Exception as exc:  # the reason it closed
                log.warning("broker %s lost (%r); connecting to the next node", _node(url), exc)
            finally:
                self._failing_over = True
                await self._disconnect()

    async def _connect(self, url: str) -> bool:
        connection = None
        try:
            connection = await aio_pika.connect(
                url,
                timeout=self._connect_timeout,
                client_properties={"connection_name": "gateway"},
            )
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.declare_queue(
                self.queue, durable=True, arguments=queue_arguments(self.queue)
            )
            underlay = await channel.get_underlay_channel()
        except asyncio.CancelledError:
            if connection is not None:
                await connection.close()
            raise
        except Exception as exc:
            log.warning("broker %s not reachable (%r)", _node(url), exc)
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            return False
        self._connection, self._channel = connection, underlay
        log.info("connected to the broker %s; publishing to %s", _node(url), self.queue)
        return True

    async def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def publish(self, body: dict[str, Any], correlation_id: str | None = None) -> None:
        """Publish a persistent JSON message (message id = the order id); returns once the
        broker confirmed it. BrokerUnavailable when it is down, nacked, returned it (unroutable)
        or did not confirm within the publish timeout."""
        channel = self._channel
        if channel is None or channel.is_closed:
            if not (self._failing_over and await self.wait_connected(self._publish_timeout)):
                raise BrokerUnavailable  # known to be down: fail fast, don't wait for a timeout
            channel = self._channel
            assert channel is not None
        order_id = body["order_id"]
        # aiormq's basic_publish directly: building an aio_pika.Message and going through
        # aio-pika's exchange.publish cost about a third of an order's CPU (measured).
        properties = Properties(
            content_type="application/json",
            delivery_mode=PERSISTENT,
            message_id=order_id,
            correlation_id=correlation_id,
        )
        started = asyncio.get_running_loop().time()
        try:
            await self._publish_on(channel, orjson.dumps(body), properties, self._publish_timeout)
            return
        except TimeoutError as exc:
            log.warning("no confirm for %s in %ss", order_id, self._publish_timeout)
            raise BrokerUnavailable from exc
        except Exception as exc:  # nack, returned (unroutable), channel or connection lost
            if not channel.is_closed:
                log.warning("publishing order %s failed: %r", order_id, exc)
                raise BrokerUnavailable from exc
            lost = exc
        # Its node was lost with the order in flight (queued or not): publish it again on the
        # next node, within the same timeout. Billing stores an order_id once.
        left = self._publish_timeout - (asyncio.get_running_loop().time() - started)
        if left > 0 and await self.wait_connected(left) and (channel := self._channel):
            left = self._publish_timeout - (asyncio.get_running_loop().time() - started)
            try:
                await self._publish_on(channel, orjson.dumps(body), properties, max(left, 0.01))
                return
            except Exception as exc:
                lost = exc
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
        await self._disconnect()
