"""Request ids and Prometheus metrics: one raw ASGI layer around the whole application.

Per request it takes `X-Request-ID` from the client (1-128 characters of `A-Za-z0-9._:-`) or
generates one (32 random hex digits), keeps it in `logging.request_id` for every log line, and
adds it to the response (errors included); it counts the request by method, route template and
status and observes its duration. `GET /metrics` (with or without a trailing slash) is answered
here, in Prometheus text format, and is not counted itself.

Several uvicorn workers: server.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
the workers start, prometheus-client then keeps every worker's values in files there, and
/metrics, whichever worker answers it, sums them all.
"""

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from crud_common.request_ids import HEADER, request_id_in
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from inventory.logging import request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ("method", "route", "status"))
DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from receiving a request to the end of its response",
    ("method", "route"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

UNMATCHED = "unmatched"


def route_label(path: str) -> str:
    """The label of a route template: one label for both slash variants, ids named `{id}`."""
    return path.rstrip("/").replace("{movie_id}", "{id}") or "/"


def metrics_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._labels: dict[str, str] = {}  # route template -> label
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in ("/metrics", "/metrics/") and scope["method"] == "GET":
            await self._metrics(send)
            return
        started = time.perf_counter()
        rid = request_id_in(scope["headers"])
        request_id.set(rid.decode())
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
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None)
        label = UNMATCHED
        if template is not None:
            label = self._labels.get(template) or self._labels.setdefault(
                template, route_label(template)
            )
        method = scope["method"]
        key = (method, label, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = REQUESTS.labels(method, label, str(status))
        counter.inc()
        histogram = self._histograms.get(key[:2])
        if histogram is None:
            histogram = self._histograms[key[:2]] = DURATION.labels(method, label)
        histogram.observe(seconds)

    async def _metrics(self, send: Send) -> None:
        body = metrics_text()
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
