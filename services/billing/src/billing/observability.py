"""Request ids and Prometheus metrics of billing.

HTTP: `crud_common.observe.Observe` around the whole application (request ids, requests by
route template and status, `GET /metrics`).

Queue: the consumer counts its connection attempts, stored batches and rows, duplicates, database
retries and dead letters (these counters are its only record); the queue depths are read at
scrape time (passive declares, short timeout) and left out when the broker does not answer.

Billing runs one uvicorn worker per process (one consumer each), so the process's own registry is
served: scrape every billing process.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from crud_common import observe
from crud_common.metrics import CONTENT_TYPE, RequestMetrics
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger(__name__)

# Billing's own registry, not the library's global one, so its metrics never collide with another
# service's of the same name in one Python process (the test suite imports all three services).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
METRICS = RequestMetrics(REGISTRY)
CONSUMED = Counter("orders_consumed", "Orders stored from the queue (new rows)", registry=REGISTRY)
DUPLICATES = Counter(
    "orders_duplicates", "Queued orders whose order_id was already stored", registry=REGISTRY
)
DEAD_LETTERED = Counter(
    "orders_dead_lettered", "Messages published to the dead-letter queue", registry=REGISTRY
)
BATCHES = Counter(
    "orders_batches", "Batches of orders stored in one transaction", registry=REGISTRY
)
STORE_RETRIES = Counter(
    "orders_store_retries",
    "Retries of a batch insert while the database was unavailable",
    registry=REGISTRY,
)
CONNECT_ATTEMPTS = Counter(
    "billing_consumer_connect_attempts",
    "Attempts of the consumer to connect to the broker (the first connect and every reconnect)",
    registry=REGISTRY,
)

DEPTH_TIMEOUT = 1.0

QueueDepths = Callable[[], Awaitable[tuple[int, int]]]


async def metrics_text(queue_depths: QueueDepths | None) -> bytes:
    """The process's metrics plus the queue gauges, read now (absent if the broker is down)."""
    body, _ = METRICS.render()
    if queue_depths is None:
        return body
    task = asyncio.ensure_future(queue_depths())
    done, _ = await asyncio.wait({task}, timeout=DEPTH_TIMEOUT)  # never wait on a hung cancel
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return body
    if task.exception() is not None:
        log.debug("queue depths unavailable for /metrics: %r", task.exception())
        return body
    ready, dead = task.result()
    registry = CollectorRegistry()
    Gauge("billing_queue_depth", "Ready messages in the billing queue", registry=registry).set(
        ready
    )
    Gauge("billing_dead_letters", "Messages in the dead-letter queue", registry=registry).set(dead)
    return body + generate_latest(registry)


class Observe(observe.Observe):
    metrics = METRICS

    async def metrics_body(self, scope: observe.Scope) -> tuple[bytes, bytes]:
        consumer = getattr(getattr(scope.get("app"), "state", None), "consumer", None)
        body = await metrics_text(consumer.queue_depths if consumer is not None else None)
        return body, CONTENT_TYPE
