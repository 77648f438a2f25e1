"""Raw ASGI reverse proxy for /api/movies: the benchmarked pass-through path.

`Gateway` sends every request whose path is /api/movies or below it to `MoviesProxy` before any
FastAPI routing. The request is forwarded verbatim (method, raw path, raw query string, body,
end-to-end headers plus X-Forwarded-*) by an upstream client (see upstream.py); the upstream's
status, headers (less hop-by-hop ones) and body are relayed as received. No JSON is parsed.
Dead upstream: 502; no answer within GATEWAY_UPSTREAM_TIMEOUT: 504.
"""

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import Any

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

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


def with_date(send: Send) -> Send:
    """Adds a Date header to the gateway's own responses (uvicorn's is off, see server.py)."""

    async def dated(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"date", http_date())]
        await send(message)

    return dated


async def send_json(send: Send, status: int, body: bytes) -> None:
    headers = [
        *_JSON_HEADERS,
        (b"content-length", str(len(body)).encode()),
        (b"date", http_date()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MoviesProxy:
    """Forwards to the inventory upstreams, round-robin, with failover and a stale-retry."""

    def __init__(self, upstreams: list[str]) -> None:
        if not upstreams:
            raise ValueError("at least one upstream URL is required")
        self.upstreams = [u.rstrip("/") for u in upstreams]
        self._down_until = [0.0] * len(self.upstreams)
        self._next = 0
        self.client: UpstreamClient | None = None  # set by the app's lifespan

    def _order(self) -> list[int]:
        """Upstream indexes to try: round-robin start, recently failed ones last."""
        count = len(self.upstreams)
        if count == 1:
            return [0]
        start = self._next
        self._next = (start + 1) % count
        order = [(start + i) % count for i in range(count)]
        now = time.monotonic()
        return [i for i in order if self._down_until[i] <= now] + [
            i for i in order if self._down_until[i] > now
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        try:
            headers, length, chunked = forwarded_headers(scope)
        except ValueError:
            await send_json(send, 400, BAD_LENGTH)
            return
        target = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]

        body: Body = None
        try:
            if chunked or (length is not None and length > SMALL_BODY):
                body = _stream_body(receive)
            elif length:
                body = await _read_body(receive)
            response = await self._forward(method, target, headers, body)
        except TimedOut:
            await send_json(send, 504, TIMED_OUT)
            return
        except UpstreamError:
            await send_json(send, 502, UNREACHABLE)
            return
        except ClientGone:
            return
        try:
            await _relay(response, send)
        finally:
            response.release()

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
                log.warning("inventory %s timed out", self.upstreams[index])
                raise


async def _relay(response: UpstreamResponse, send: Send) -> None:
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


def forwarded_headers(scope: Scope) -> tuple[Headers, int | None, bool]:
    """End-to-end request headers plus X-Forwarded-*; (headers, content-length, chunked).

    Host is left out (the client writes the upstream's), so are hop-by-hop headers and Expect
    (the gateway has answered any 100-continue itself).
    """
    raw = scope["headers"]
    out: Headers = []
    host = None
    forwarded_for: list[bytes] = []
    connection: list[bytes] = []
    length: int | None = None
    chunked = False
    for name, value in raw:  # names arrive lower-case from uvicorn
        if name in _SPECIAL or name.startswith(b"proxy-"):
            if name == b"host":
                host = value
            elif name == b"x-forwarded-for":
                forwarded_for.append(value)
            elif name == b"connection":
                connection.append(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-length":
                if not value.isdigit():
                    raise ValueError("invalid Content-Length")
                length = int(value)
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
    return out, length, chunked


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _stream_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


class Gateway:
    """ASGI entry: /api/movies… goes to the proxy; everything else to the FastAPI app."""

    def __init__(self, app: ASGIApp, proxy: MoviesProxy) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith(PREFIX) and (len(path) == _PREFIX_LEN or path[_PREFIX_LEN] == "/"):
            await self.proxy(scope, receive, send)
        else:
            await self.app(scope, receive, with_date(send))
