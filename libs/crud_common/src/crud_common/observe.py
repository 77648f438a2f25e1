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

from crud_common.logs import request_id
from crud_common.metrics import UNMATCHED, RequestMetrics
from crud_common.request_ids import HEADER, request_id_in

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Observe:
    """Subclasses set `metrics` (the service's `RequestMetrics`) and may add to what a scrape
    returns (`metrics_body`)."""

    metrics: RequestMetrics

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._labels: dict[str, str] = {}  # route template -> label

    def route_label(self, template: str) -> str:
        """One label for both slash variants of a route template."""
        return template.rstrip("/") or "/"

    async def metrics_body(self, scope: Scope) -> tuple[bytes, bytes]:
        """(body, content type) of `GET /metrics`."""
        return self.metrics.render()

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
        self.metrics.observe(scope["method"], label, status, seconds)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        body, content_type = await self.metrics_body(scope)
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
