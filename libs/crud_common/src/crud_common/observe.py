"""The raw ASGI layer inventory and billing put around their whole application (outside even
FastAPI's error middleware).

Per request it takes `X-Request-ID` from the client or makes one (`request_ids`), keeps it in
`logs.request_id` for every log line, adds it to the response (errors included), and counts the
request by method, route template and status with its duration. `GET /metrics` (with or without
a trailing slash) is answered here, in Prometheus text format, and is not counted itself.
"""

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram

from crud_common.logs import request_id
from crud_common.request_ids import HEADER, request_id_in

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "unmatched"  # the route label of a path no route matched
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def request_metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    """`http_requests_total{method,route,status}` and `http_request_duration_seconds{method,route}`
    in `registry`, for `Observe.requests` and `Observe.durations`."""
    requests = Counter(
        "http_requests_total",
        "HTTP requests answered",
        ("method", "route", "status"),
        registry=registry,
    )
    durations = Histogram(
        "http_request_duration_seconds",
        "Time from receiving a request to the end of its response",
        ("method", "route"),
        buckets=_BUCKETS,
        registry=registry,
    )
    return requests, durations


class Observe:
    """Subclasses set `requests` and `durations` (`request_metrics`) and say what a scrape
    returns (`metrics_body`)."""

    requests: Counter
    durations: Histogram

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._labels: dict[str, str] = {}  # route template -> label
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def route_label(self, template: str) -> str:
        """One label for both slash variants of a route template."""
        return template.rstrip("/") or "/"

    async def metrics_body(self, scope: Scope) -> bytes:
        raise NotImplementedError

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
                template, self.route_label(template)
            )
        method = scope["method"]
        if method not in _METHODS:
            method = "OTHER"  # any token is a valid method: keep the label bounded
        key = (method, label, status)
        children = self._children.get(key)
        if children is None:  # label look-ups cost microseconds: once per combination
            children = self._children[key] = (
                self.requests.labels(method, label, str(status)).inc,
                self.durations.labels(method, label).observe,
            )
        children[0]()
        children[1](seconds)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        body = await self.metrics_body(scope)
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
