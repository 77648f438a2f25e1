"""The gateway's ASGI entry, and the raw reverse proxy for /api/movies (the benchmarked path).

`Gateway` gives every request an id (the client's X-Request-ID when well-formed, else a new one),
applies the /api protections (rate limit, API keys, body size: guard.py), sends /api/movies… to
`MoviesProxy` and POST /api/billing to the order intake (orders.py) before any FastAPI routing,
the rest to the FastAPI app, and counts every answer (metrics.py). (Bodiless GETs of
/api/movies… usually do not even reach ASGI: protocol.py serves them from parser callbacks.)

The proxy forwards verbatim (method, raw path, raw query string, body, end-to-end headers plus
X-Forwarded-* and X-Request-ID) through the upstream client (upstream.py) and relays the
upstream's status, headers (less hop-by-hop ones) and body as received; no JSON is parsed.
Dead upstream: 502; no answer within GATEWAY_UPSTREAM_TIMEOUT: 504. Every answer, the gateway's
own errors included, carries X-Request-ID.
"""

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate

from crud_common.logs import request_id
from crud_common.observe import ASGIApp, Message, Receive, Scope, Send
from crud_common.request_ids import request_id_of

from .guard import TOO_LARGE, Guard, Refusal, TooLarge
from .metrics import UNMATCHED, Metrics, movies_route
from .upstream import (
    HOP_BY_HOP,
    SMALL_BODY,
    Body,
    ConnectFailed,
    Disconnected,
    Headers,
    TimedOut,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
    connection_tokens,
)

log = logging.getLogger(__name__)

PREFIX = "/api/movies"
_PREFIX_LEN = len(PREFIX)

# Request headers the proxy does not copy as they are (hop-by-hop ones are dropped).
_SPECIAL = HOP_BY_HOP | {
    b"host",
    b"expect",
    b"content-length",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"authorization",
}
# Methods a retry can never turn into a second side effect.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# After a failed connect an upstream is skipped for this long (unless all are down).
FAIL_TIMEOUT = 5.0

_JSON_HEADERS = [(b"content-type", b"application/json")]
UNREACHABLE = b'{"error":"inventory unreachable"}'
TIMED_OUT = b'{"error":"inventory timed out"}'
BAD_LENGTH = b'{"error":"invalid Content-Length header"}'


class ClientGone(Exception):
    pass


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The current IMF-fixdate, computed at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


async def send_json(
    send: Send, status: int, body: bytes, rid: bytes, extra: Headers | None = None
) -> int:
    headers = [
        *_JSON_HEADERS,
        (b"content-length", str(len(body)).encode()),
        (b"date", http_date()),
        (b"x-request-id", rid),
    ]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


async def refuse(send: Send, refusal: Refusal, rid: bytes) -> int:
    status, body, extra = refusal
    return await send_json(send, status, body, rid, extra)


class MoviesProxy:
    """Forwards to the inventory upstreams, round-robin, with failover and a stale-retry."""

    def __init__(self, upstreams: list[str], guard: Guard) -> None:
        if not upstreams:
            raise ValueError("at least one upstream URL is required")
        self.upstreams = [u.rstrip("/") for u in upstreams]
        self.guard = guard
        self._down_until = [0.0] * len(self.upstreams)
        self._next = 0
        self.client: UpstreamClient | None = None  # set by the app's lifespan

    def first_choice(self) -> int:
        """The upstream the next request tries first; `chosen()` moves the round-robin on."""
        return self._order(advance=False)[0]

    def chosen(self) -> None:
        self._next = (self._next + 1) % len(self.upstreams)

    def timed_out(self, index: int) -> None:
        log.warning("inventory %s timed out", self.upstreams[index])

    def _order(self, advance: bool = True) -> list[int]:
        """Upstream indexes to try: round-robin start, recently failed ones last."""
        count = len(self.upstreams)
        if count == 1:
            return [0]
        start = self._next
        if advance:
            self._next = (start + 1) % count
        order = [(start + i) % count for i in range(count)]
        now = time.monotonic()
        return [i for i in order if self._down_until[i] <= now] + [
            i for i in order if self._down_until[i] > now
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Serves one request; returns the status sent (0 when the client went away first)."""
        headers, length, chunked, rid, authorization = forwarded_headers(scope)
        request_id.set(rid.decode("latin-1"))
        guard = self.guard
        # A request the fast path (protocol.py) passes on has been through the guard already:
        # its rate-limit token is not taken twice.
        refusal = None if "gateway.guarded" in scope else guard.check(scope, authorization)
        if refusal is not None:
            return await refuse(send, refusal, rid)
        if length is not None:
            if length < 0:
                return await send_json(send, 400, BAD_LENGTH, rid)
            if length > guard.max_body:
                return await refuse(send, TOO_LARGE, rid)
        target = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]

        body: Body = None
        try:
            if chunked or (length is not None and length > SMALL_BODY):
                body = _stream_body(receive, guard.max_body)
            elif length:
                body = await read_body(receive, guard.max_body)
            response = await self._forward(scope["method"], target, headers, body)
        except TimedOut:
            return await send_json(send, 504, TIMED_OUT, rid)
        except UpstreamError:
            return await send_json(send, 502, UNREACHABLE, rid)
        except TooLarge:
            return await refuse(send, TOO_LARGE, rid)
        except ClientGone:
            return 0
        response.headers.append((b"x-request-id", rid))
        try:
            await relay(response, send)
        finally:
            response.release()
        return response.status

    async def _forward(
        self, method: str, target: bytes, headers: Headers, body: Body
    ) -> UpstreamResponse:
        client = self.client
        if client is None:
            raise ConnectFailed("gateway not started")
        replayable = not isinstance(body, AsyncIterator)
        retry = replayable and method in IDEMPOTENT
        stale_retry = retry
        order = self._order()
        position = 0
        while True:
            index = order[position]
            try:
                return await client.exchange(index, method, target, headers, body)
            except ConnectFailed as exc:
                # Nothing was sent: any replayable request may go to the next upstream.
                now = time.monotonic()
                if self._down_until[index] <= now:  # log once per FAIL_TIMEOUT, not per request
                    log.warning("inventory %s unreachable: %s", self.upstreams[index], exc)
                self._down_until[index] = now + FAIL_TIMEOUT
                if not replayable or position + 1 == len(order):
                    raise
                position += 1
            except Disconnected as exc:
                log.warning("inventory %s dropped the connection", self.upstreams[index])
                if exc.reused and stale_retry:
                    stale_retry = False  # a stale keep-alive connection: once more, fresh
                elif retry and position + 1 < len(order):
                    position += 1
                else:
                    raise
            except TimedOut:
                self.timed_out(index)
                raise


async def relay(response: UpstreamResponse, send: Send) -> None:
    """Status, headers (hop-by-hop ones already dropped by the client) and body, as received."""
    start = {"type": "http.response.start", "status": response.status, "headers": response.headers}
    if response.body is not None:
        await send(start)
        await send({"type": "http.response.body", "body": response.body})
        return
    await send(start)
    try:
        async for chunk in response.iter_body():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        # Headers are gone already: leave the response incomplete so the server closes
        # the client connection instead of pretending the body was whole.
        log.warning("inventory body interrupted: %r", exc)
        return
    await send({"type": "http.response.body", "body": b""})


def forwarded_headers(
    scope: Scope,
) -> tuple[Headers, int | None, bool, bytes, bytes | None]:
    """End-to-end request headers plus X-Forwarded-* and X-Request-ID, in one pass.

    Returns (headers, content-length (-1 if invalid), chunked, request id, authorization).
    Host is left out (the client writes the upstream's), so are hop-by-hop headers and Expect
    (the gateway has answered any 100-continue itself).
    """
    out: Headers = []
    host = rid = authorization = None
    forwarded_for: list[bytes] = []
    connection: list[bytes] = []
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:  # names arrive lower-case from uvicorn
        if name in _SPECIAL or name.startswith(b"proxy-"):
            if name == b"host":
                host = value
            elif name == b"x-forwarded-for":
                forwarded_for.append(value)
            elif name == b"x-request-id":
                rid = value
            elif name == b"authorization":
                authorization = value
                out.append((name, value))
            elif name == b"connection":
                connection.append(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
                out.append((name, value))
            # X-Forwarded-Proto/Host are set from what the gateway saw; the rest is hop-by-hop
            continue
        out.append((name, value))
    if connection:
        named = connection_tokens(connection)
        out = [(n, v) for n, v in out if n not in named]
    if chunked:
        out.append((b"transfer-encoding", b"chunked"))
        length = None
    client = scope.get("client")
    if client:
        forwarded_for.append(client[0].encode("latin-1"))
    if forwarded_for:
        out.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    out.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
    if host is not None:
        out.append((b"x-forwarded-host", host))
    rid = request_id_of(rid)
    out.append((b"x-request-id", rid))
    return out, length, chunked, rid, authorization


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _stream_body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise TooLarge  # the upstream connection is closed: it never sees a whole body
            yield chunk
        if not message.get("more_body", False):
            return


def request_facts(headers: Headers) -> tuple[bytes, bytes | None, int | None, bool]:
    """(request id, authorization, content-length, chunked) of a request for the FastAPI app."""
    rid = authorization = None
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"x-request-id":
            rid = value
        elif name == b"authorization":
            authorization = value
        elif name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return request_id_of(rid), authorization, length, chunked


class Gateway:
    """ASGI entry: /api/movies… goes to the proxy, POST /api/billing to the order intake
    (orders.py), /metrics is answered here, the rest goes to the FastAPI app."""

    def __init__(
        self,
        app: ASGIApp,
        proxy: MoviesProxy,
        metrics: Metrics,
        orders: Callable[[Scope, Receive, Send], Awaitable[int]],
    ) -> None:
        self.app = app
        self.proxy = proxy
        self.orders = orders
        self.guard = proxy.guard
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        if path.startswith(PREFIX) and (len(path) == _PREFIX_LEN or path[_PREFIX_LEN] == "/"):
            status = await self.proxy(scope, receive, send)
            if status:
                self.metrics.observe(
                    scope["method"], movies_route(path), status, time.perf_counter() - started
                )
        elif (path == "/api/billing" or path == "/api/billing/") and scope["method"] == "POST":
            status = await self.orders(scope, receive, send)
            if status:
                self.metrics.observe("POST", "/api/billing", status, time.perf_counter() - started)
        elif path == "/metrics" or path == "/metrics/":
            await self._scrape(scope, send)
        else:
            await self._app(scope, receive, send, started)

    async def _app(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        rid, authorization, length, chunked = request_facts(scope["headers"])
        request_id.set(rid.decode("latin-1"))
        path = scope["path"]
        status = 0
        try:
            refusal = self.guard.check(scope, authorization) if path.startswith("/api/") else None
            if refusal is None and length is not None and length > self.guard.max_body:
                refusal = TOO_LARGE
            if refusal is not None:
                status = await refuse(send, refusal, rid)
                return
            if chunked:  # read here, within the limit, and handed to the app whole
                try:
                    receive = _replay(await read_body(receive, self.guard.max_body), receive)
                except TooLarge:
                    status = await refuse(send, TOO_LARGE, rid)
                    return
                except ClientGone:
                    return

            async def respond(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [
                        *message.get("headers", ()),
                        (b"date", http_date()),  # uvicorn's is off (proxied answers carry theirs)
                        (b"x-request-id", rid),
                    ]
                await send(message)

            await self.app(scope, receive, respond)
        finally:
            if status:
                route = scope.get("route")
                template = getattr(route, "path", "").rstrip("/") or UNMATCHED
                self.metrics.observe(
                    scope["method"], template, status, time.perf_counter() - started
                )

    async def _scrape(self, scope: Scope, send: Send) -> None:
        rid = request_facts(scope["headers"])[0]
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, b'{"error":"method not allowed"}', rid, [(b"allow", b"GET")])
            return
        body, content_type = self.metrics.render()
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"date", http_date()),
            (b"x-request-id", rid),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out `body` once, then waits on the real one (for disconnects)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
