"""The front door: every request a connection has read whole comes here once.

`Gateway.handle` gives the request its id (the client's X-Request-ID when well-formed, else a new
one), applies the /api guard (rate limit, API keys: guard.py) in this one place, routes it —
/api/movies… to the proxy, POST /api/billing to the order intake, /metrics here, the rest to the
FastAPI app — and counts the answer (metrics.py). Every answer carries X-Request-ID; the gateway's
own also carry Date (proxied ones carry inventory's).

`Gateway.start` / `close` own the process's resources: the upstream client, the AMQP publisher
and the aiohttp session (billing look-ups, health).
"""

import time
from email.utils import formatdate
from typing import Any

import orjson
from crud_common.errors import error_body
from crud_common.logs import request_id
from crud_common.request_ids import request_id_of

from . import asgi_bridge
from .billing_client import BillingClient, new_session
from .config import Settings
from .guard import ApiKeys, Guard, RateLimiter
from .http1 import Limits, Request, Response
from .metrics import UNMATCHED, Metrics, movies_route
from .orders import OrderIntake
from .proxy import MoviesProxy
from .publisher import OrderPublisher
from .upstream import UpstreamClient

MOVIES = "/api/movies"
_JSON = (b"content-type", b"application/json")
_NOT_ALLOWED = orjson.dumps(error_body("method not allowed"))

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The current IMF-fixdate, computed at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_head=settings.gateway_max_header_bytes,
        max_body=settings.gateway_max_body_bytes,
        head_timeout=settings.gateway_header_timeout,
        body_timeout=settings.gateway_body_timeout,
        keep_alive=settings.gateway_keep_alive_timeout,
        max_connections=settings.gateway_max_connections,
    )


class Gateway:
    def __init__(self, settings: Settings, app: Any, metrics: Metrics) -> None:
        self.settings = settings
        self.app = app  # the FastAPI part
        self.metrics = metrics
        limiter = None
        if settings.gateway_rate_limit > 0:
            limiter = RateLimiter(settings.gateway_rate_limit, settings.rate_burst)
        self.guard = Guard(ApiKeys(settings.api_keys), limiter)
        self.proxy: MoviesProxy = app.state.proxy
        self.publisher: OrderPublisher = app.state.publisher
        self.orders = OrderIntake(self.publisher, metrics)
        self.server_address = (settings.gateway_host, settings.gateway_port)

    async def start(self) -> None:
        settings = self.settings
        session = new_session(settings.gateway_connect_timeout, settings.gateway_upstream_timeout)
        self.app.state.session = session
        self.app.state.billing = BillingClient(settings.billing_url, session)
        self.proxy.client = UpstreamClient(
            self.proxy.upstreams,
            settings.gateway_connect_timeout,
            settings.gateway_upstream_timeout,
        )
        self.publisher.start()

    async def close(self) -> None:
        client, self.proxy.client = self.proxy.client, None
        await self.publisher.close()
        if client is not None:
            await client.close()
        await self.app.state.session.close()

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        rid = request_id_of(request.request_id)
        request_id.set(rid.decode("latin-1"))
        path = request.path
        method = request.method
        proxied = path == MOVIES or path.startswith("/api/movies/")
        order = not proxied and method == "POST" and path in ("/api/billing", "/api/billing/")
        route = movies_route(path) if proxied else "/api/billing" if order else UNMATCHED
        if path.startswith("/api/"):
            refusal = self.guard.check(request.client, method, request.authorization)
            if refusal is not None:
                status, body, extra = refusal
                response = self._own(status, [_JSON, *extra], body, rid)
                self.metrics.observe(method, route, status, time.perf_counter() - started)
                return response
        if proxied:
            response = await self.proxy.forward(request, rid)
        elif order:
            status, body = await self.orders.accept(request.body, rid.decode("latin-1"))
            response = self._own(status, [_JSON], body, rid)
        elif path in ("/metrics", "/metrics/"):
            return self._scrape(request, rid)  # not counted
        else:
            response, matched = await asgi_bridge.call(self.app, request, self.server_address)
            response.headers += ((b"date", http_date()), (b"x-request-id", rid))
            route = getattr(matched, "path", "").rstrip("/") or UNMATCHED
        self.metrics.observe(method, route, response.status, time.perf_counter() - started)
        return response

    @staticmethod
    def _own(status: int, headers: list[tuple[bytes, bytes]], body: bytes, rid: bytes) -> Response:
        headers = [*headers, (b"date", http_date()), (b"x-request-id", rid)]
        return Response(status, headers, body)

    def _scrape(self, request: Request, rid: bytes) -> Response:
        if request.method not in ("GET", "HEAD"):
            return self._own(405, [_JSON, (b"allow", b"GET")], _NOT_ALLOWED, rid)
        body, content_type = self.metrics.render()
        return self._own(200, [(b"content-type", content_type)], body, rid)
