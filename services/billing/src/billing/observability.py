"""Request ids and Prometheus metrics of billing.

HTTP: one raw ASGI layer around the whole application (outside even its error middleware) takes
`X-Request-ID` from the client (1-128 characters of `A-Za-z0-9._:-`) or generates one, keeps it
in `logging.request_id` for every log line, adds it to every response (errors included), and
counts the request by method, route template and status. `GET /metrics` (with or without a
trailing slash) is answered here, in Prometheus text format, and is not counted itself.

Queue: the consumer counts stored rows, duplicates and dead letters; the queue depths are read at
scrape time (passive declares, short timeout) and left out when the broker does not answer.

Billing runs one uvicorn worker per process (one consumer each), so the process's own registry is
served: scrape every billing process.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from crud_common.request_ids import HEADER, request_id_in
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from billing.logging import request_id

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Billing's own registry, not the library's global one, so its metrics never collide with another
# service's of the same name in one Python process (the test suite imports all three services).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered",
    ("method", "route", "status"),
    registry=REGISTRY,
)
DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from receiving a request to the end of its response",
    ("method", "route"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
CONSUMED = Counter("orders_consumed", "Orders stored from the queue (new rows)", registry=REGISTRY)
DUPLICATES = Counter(
    "orders_duplicates", "Queued orders whose order_id was already stored", registry=REGISTRY
)
DEAD_LETTERED = Counter(
    "orders_dead_lettered", "Messages published to the dead-letter queue", registry=REGISTRY
)

DEPTH_TIMEOUT = 1.0
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

QueueDepths = Callable[[], Awaitable[tuple[int, int]]]


def route_label(path: str) -> str:
    """One label for both slash variants of a route template."""
    return path.rstrip("/") or "/"


async def metrics_text(queue_depths: QueueDepths | None) -> bytes:
    """The process's metrics plus the queue gauges, read now (absent if the broker is down)."""
    body = generate_latest(REGISTRY)
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


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._labels: dict[str, str] = {}  # route template -> label
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"] in ("/metrics", "/metrics/"):
            await self._metrics(scope, send)
            return
        started = time.perf_counter()
        rid = request_id_in(scope["headers"])
        token = request_id.set(rid.decode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        template = getattr(scope.get("route"), "path", None)
        label = UNMATCHED
        if template is not None:
            label = self._labels.get(template) or self._labels.setdefault(
                template, route_label(template)
            )
        method = scope["method"]
        if method not in _METHODS:
            method = "OTHER"  # any token is a valid method: keep the label bounded
        key = (method, label, status)
        children = self._children.get(key)
        if children is None:  # label look-ups cost microseconds: once per combination
            children = self._children[key] = (
                REQUESTS.labels(method, label, str(status)).inc,
                DURATION.labels(method, label).observe,
            )
        children[0]()
        children[1](seconds)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        consumer = getattr(getattr(scope.get("app"), "state", None), "consumer", None)
        body = await metrics_text(consumer.queue_depths if consumer is not None else None)
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
