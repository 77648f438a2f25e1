"""The HTTP/1.1 client the movies proxy forwards with: pooled keep-alive connections to the
inventory instances, one exchange at a time on each.

A request goes out as the bytes the proxy wrote (policy.upstream_head and the body). The answer
is read by httptools (llhttp, strict): anything it or the checks here refuse (bad bytes, bare LF,
duplicate Content-Length, a transfer coding other than chunked, an upgrade) is an
`InvalidAnswer`, and nothing of it reaches the client. A connection goes back to the pool only
when its request was sent whole and its answer read whole; a timeout, an error, an answer to
HEAD, a close-delimited answer or a client that left mid-answer closes it, so a late or unread
answer can never be read as the next request's.

Bodies are read with flow control: past HIGH_WATER buffered bytes reading pauses until the proxy
has passed them on, and resumes before a connection is pooled again.

Errors tell the proxy what a retry may do: `ConnectFailed` (nothing was sent), `Disconnected`
(the request may have been received), `TimedOut` (no answer in time), `InvalidAnswer`.
"""

import asyncio
import math
import ssl
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from .deadlines import Deadlines
from .policy import NOT_RELAYED, Headers

HIGH_WATER = 256 * 1024  # answer bytes buffered before reading from the upstream pauses
WHOLE = 64 * 1024  # answers up to this size are relayed in one piece, larger ones streamed
MAX_IDLE = 512  # idle keep-alive connections kept per upstream


class UpstreamError(Exception):
    pass


class ConnectFailed(UpstreamError):
    """Refused, DNS failure or connect timeout: the request never left."""


class Disconnected(UpstreamError):
    """The connection broke after the request was (maybe) sent."""

    def __init__(self, reused: bool = False) -> None:
        super().__init__("upstream closed the connection")
        self.reused = reused  # a pooled keep-alive connection that had gone stale


class TimedOut(UpstreamError):
    """No (complete) answer within the upstream timeout."""


class Unreachable(Disconnected):
    """A pooled connection stayed silent and a new one could not be opened: the host is gone
    (a network cut leaves its connections silent instead of closed)."""


class InvalidAnswer(UpstreamError):
    """The answer could not be framed with certainty."""


class _Stop(Exception):
    """Raised in a parser callback to stop reading (after the head of a HEAD answer)."""


class _Upstream:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.ssl = parts.scheme == "https"
        self.port = parts.port or (443 if self.ssl else 80)
        self.host_header = parts.netloc.encode("idna")
        self.idle: list[_Connection] = []


class _Connection(asyncio.Protocol):
    """One keep-alive connection, and the answer being read on it."""

    def __init__(self, deadlines: Deadlines) -> None:
        self.deadlines = deadlines
        self.deadline = math.inf
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.in_flight = False
        self.waiter: asyncio.Future[None] | None = None
        self.soft = False  # the current wait's deadline only wakes the waiter
        # One parser per connection: a connection is reused only after a whole answer, which
        # leaves llhttp ready for the next one.
        self.parser = httptools.HttpResponseParser(self)
        self._reset(False)

    def _reset(self, head_only: bool) -> None:
        self.head_only = head_only  # answering a HEAD: no body follows its head
        self.status = 0
        self.headers: Headers = []
        self.connection: list[bytes] = []
        self.transfer_encoding: list[bytes] = []
        self.length: int | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.got_bytes = False
        self.head_done = False
        self.interim = False
        self.complete = False
        self.keep_alive = False
        self.error: UpstreamError | None = None
        self.paused = False

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.in_flight or self.complete:
            self.close()  # bytes nobody asked for: this connection is never used again
            self._wake()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not isinstance(exc.__context__, _Stop):
                self._fail(InvalidAnswer(str(exc)))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.in_flight and not self.complete and self.error is None:
            if self.head_done and self.length is None and not self.transfer_encoding:
                self.complete = True  # a body delimited by the end of the connection
            elif self.head_done:
                self.error = Disconnected()
            else:
                self.error = Disconnected(reused=self.reused and not self.got_bytes)
        self._wake()

    def expire(self) -> None:
        if not self.soft:
            self._fail(TimedOut())
        self._wake()

    # --- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            raise InvalidAnswer("a second answer to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # trailer fields of a chunked body: dropped
        name = name.lower()
        value = value.strip(b" \t")
        if name in NOT_RELAYED:
            if name == b"content-length":
                self.length = int(value)  # digits only: httptools checked it
            elif name == b"transfer-encoding":
                self.transfer_encoding.append(value)
            elif name == b"connection":
                self.connection.append(value)
        elif not name.startswith(b"proxy-"):
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self.parser.get_http_version() not in ("1.1", "1.0"):
            raise InvalidAnswer("unsupported HTTP version")
        if status == 101:
            raise InvalidAnswer("an upgrade nobody asked for")
        if status < 200:  # 100 Continue & co: the real answer follows
            self.interim = True
            self.headers, self.connection, self.transfer_encoding = [], [], []
            self.length = None
            return
        te = self.transfer_encoding
        if te and (len(te) != 1 or te[0].lower() != b"chunked"):
            raise InvalidAnswer("unsupported Transfer-Encoding")
        self.status = status
        self.head_done = True
        if self.head_only:
            self.complete = True
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # --- internals ------------------------------------------------------------------------------
    def _fail(self, error: UpstreamError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self.close()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self, seconds: float, soft: bool = False) -> None:
        """Until something arrives, the answer completes or fails, or `seconds` pass (then
        TimedOut, unless `soft`)."""
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.deadline = loop.time() + seconds
        self.soft = soft
        self.deadlines.watch(self)
        try:
            await self.waiter
        finally:
            self.waiter = None
            self.deadline = math.inf
            self.deadlines.forget(self)

    def head_arrived(self) -> bool:
        """The head is in, with the whole body when it is small."""
        if self.error is not None or self.complete:
            return True
        return self.head_done and self.buffered >= WHOLE

    def take(self) -> bytes:
        """The body bytes buffered so far; reading resumes if it was paused."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


class Answer:
    """An upstream answer: status, the end-to-end fields the gateway may relay (framing,
    hop-by-hop and Proxy-* fields and the upstream's X-Request-ID left out already; those named
    in `connection` not yet), and `body` when it arrived whole, else streamed by `chunks()`.
    `release()` once done with it."""

    __slots__ = ("_client", "_conn", "_upstream", "body", "connection", "headers", "length")

    def __init__(self, client: "UpstreamClient", upstream: _Upstream, conn: _Connection) -> None:
        self._client = client
        self._upstream = upstream
        self._conn = conn
        self.headers = conn.headers
        self.connection = conn.connection
        self.length = conn.length
        self.body = conn.take() if conn.complete else None

    @property
    def status(self) -> int:
        return self._conn.status

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.complete:
                return
            elif conn.error is not None:
                raise conn.error
            else:
                await conn.wait(self._client.read_timeout)

    def release(self) -> None:
        conn = self._conn
        conn.in_flight = False
        if conn.complete and conn.keep_alive and not conn.closed and not conn.head_only:
            conn.take()  # resumes reading if it was paused
            conn.reused = True
            idle = self._upstream.idle
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()


class UpstreamClient:
    def __init__(self, urls: list[str], connect_timeout: float, read_timeout: float) -> None:
        self.upstreams = [_Upstream(u) for u in urls]
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadlines = Deadlines()
        self._ssl = ssl.create_default_context() if any(u.ssl for u in self.upstreams) else None

    def host_header(self, index: int) -> bytes:
        return self.upstreams[index].host_header

    async def _acquire(self, upstream: _Upstream) -> _Connection:
        idle = upstream.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return await self._acquire_new(upstream)

    async def _acquire_new(self, upstream: _Upstream) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.deadlines),
                    upstream.host,
                    upstream.port,
                    ssl=self._ssl if upstream.ssl else None,
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"{upstream.url}: {exc!r}") from exc
        return conn

    async def exchange(self, index: int, request: bytes, head_only: bool) -> Answer:
        """Sends `request` (head and body, as written by the proxy) and reads the answer's head
        (and its body when small). Raises an UpstreamError when nothing can be relayed."""
        upstream = self.upstreams[index]
        conn = await self._acquire(upstream)
        conn._reset(head_only)
        conn.in_flight = True
        loop = asyncio.get_running_loop()
        answer_by = loop.time() + self.read_timeout  # for the first byte; then between reads
        try:
            conn.transport.write(request)  # type: ignore[union-attr]
            if conn.reused and self.connect_timeout < self.read_timeout:
                await conn.wait(self.connect_timeout, soft=True)
                if not (conn.got_bytes or conn.closed or conn.error is not None):
                    await self._check_alive(upstream, conn)
            while not conn.head_arrived():
                if conn.got_bytes:
                    await conn.wait(self.read_timeout)
                else:
                    await conn.wait(max(answer_by - loop.time(), 0.0))
        except BaseException:
            conn.close()  # cancelled (the client left) or failed: never pooled
            raise
        if conn.error is not None:
            conn.close()
            if isinstance(conn.error, Disconnected) and conn.error.reused:
                self._drop_idle(upstream)  # its siblings are likely stale too
            raise conn.error
        return Answer(self, upstream, conn)

    async def _check_alive(self, upstream: _Upstream, conn: _Connection) -> None:
        """A pooled connection silent for the connect timeout may lead to a host that is cut
        off: if a new connection cannot be opened either, Unreachable (a fast 502) instead of
        waiting for the upstream timeout (504)."""
        try:
            probe = await self._acquire_new(upstream)
        except ConnectFailed as exc:
            conn.close()
            self._drop_idle(upstream)
            raise Unreachable() from exc
        probe.reused = True
        upstream.idle.append(probe)  # alive: a connection for the next request

    @staticmethod
    def _drop_idle(upstream: _Upstream) -> None:
        idle, upstream.idle = upstream.idle, []
        for conn in idle:
            conn.close()

    async def close(self) -> None:
        self.deadlines.close()
        for upstream in self.upstreams:
            self._drop_idle(upstream)
