"""The gateway's HTTP/1.1 server: one `Connection` per client, the only owner of its framing.

A connection reads requests with httptools (llhttp, strict) and checks each head with the header
policy (policy.py). A request is handed to the handler only once it is complete, body included
(bounded by GATEWAY_MAX_BODY_BYTES), so a slow client never holds anything upstream. Requests are
answered one at a time in arrival order; pipelined ones wait in a short queue (reading pauses
beyond it). Anything that cannot be framed with certainty is answered with a JSON error after
the answers before it, and the connection is closed: nothing after it is read as a request.

Limits: the head's size (431), the time to receive a head and a body once started (408), the
idle time between requests (closed), the number of connections (503). After an error sent while
the client may still be sending (413 for instance) the connection closes lingering: the gateway
half-closes, discards what still arrives for a moment, then closes, so the client reads the
answer instead of a reset.
"""

import asyncio
import contextlib
import logging
import math
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import httptools
import orjson
from crud_common.errors import error_body
from crud_common.request_ids import new_request_id

from .deadlines import Deadlines
from .policy import (
    METHODS,
    STATUS_LINES,
    BadRequest,
    Headers,
    check_host,
    check_transfer_encoding,
    split_target,
)

log = logging.getLogger(__name__)

MAX_PIPELINE = 16  # requests read ahead of the one being answered
LINGER = 2.0  # seconds to discard what a refused client still sends
PROBE_DELAY = 0.2  # seconds for a client that closed its socket to answer a write with a reset
_NO_BODY_STATUS = frozenset({204, 304})


@dataclass(slots=True)
class Limits:
    max_head: int = 16384
    max_body: int = 1024 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_connections: int = 1000


class Request:
    __slots__ = (
        "authorization",
        "body",
        "client",
        "connection",
        "headers",
        "host",
        "http11",
        "keep_alive",
        "method",
        "path",
        "query",
        "request_id",
        "target",
    )

    def __init__(self, client: str) -> None:
        self.client = client
        self.headers: Headers = []  # (lower-case name, value without surrounding spaces)
        self.connection: list[bytes] = []  # Connection header values
        self.request_id: bytes | None = None  # the client's X-Request-ID, unchecked
        self.authorization: bytes | None = None
        self.body = b""
        self.method = ""
        self.target = b""
        self.path = ""  # percent-decoded, for routing
        self.query = b""
        self.host: bytes | None = None
        self.http11 = True
        self.keep_alive = True


class Body(Protocol):
    """A streamed answer body (the proxy's upstream answer)."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    def release(self) -> None: ...


class Response:
    __slots__ = ("body", "close", "headers", "length", "status", "stream")

    def __init__(
        self,
        status: int,
        headers: Headers,
        body: bytes = b"",
        stream: Body | None = None,
        length: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers  # end-to-end fields: framing is the connection's
        self.body = body
        self.stream = stream  # when set, `body` is ignored and the stream is relayed
        self.length = length  # a stream's length when known (sent as Content-Length)
        self.close = False


Handler = Callable[[Request], Awaitable[Response]]


def error_response(status: int, message: str, request_id: bytes | None = None) -> Response:
    headers = [
        (b"content-type", b"application/json"),
        (b"x-request-id", request_id or new_request_id()),
    ]
    return Response(status, headers, orjson.dumps(error_body(message)))


class Server:
    """What the connections of one listening socket share."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.connections: set[Connection] = set()
        self.deadlines = Deadlines()
        self.closing = False
        self.all_closed: asyncio.Event | None = None  # set by shutdown()

    def __call__(self) -> "Connection":
        return Connection(self)

    async def shutdown(self, grace: float) -> None:
        """Closes idle connections at once and the others once answered, within `grace`."""
        self.closing = True
        self.all_closed = asyncio.Event()
        for conn in list(self.connections):
            conn.close_when_idle()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_closed.wait(), grace)
        for conn in list(self.connections):
            conn.abort()
        self.deadlines.close()


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client = ""
        self.deadline = math.inf
        self.queue: deque[Request | BadRequest] = deque()
        self.task: asyncio.Task[None] | None = None  # answers requests (_answer_queue)
        self.busy = False  # a request is being answered or waits in the queue
        self.idle: asyncio.Future[None] | None = None  # the task's wait for the next request
        self.request: Request | None = None  # being read
        self.hosts: list[bytes] = []
        self.checked_host: bytes | None = None  # the last Host value check_host accepted
        self.transfer_encoding: list[bytes] = []
        self.expect: bytes | None = None
        self.upgrade = False
        self.head_open = False  # between a request's first byte and its blank line
        self.head_size = 0  # the head's bytes as parsed
        self.head_raw = 0  # bytes of the reads that brought only head, after the first one
        self.begun = 0  # requests begun on this connection
        self.content_length: int | None = None
        self.last = False  # the request read is the connection's last (Connection: close)
        self.body_open = False
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.broken = False  # nothing more is read as a request
        self.eof = False
        self.read_paused = False
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.waiting: Request | None = None  # being answered, nothing of its answer written yet

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        server = self.server
        if len(server.connections) >= self.limits.max_connections or server.closing:
            self.broken = True
            self._write_error(error_response(503, "too many connections"))
            self.transport.close()  # type: ignore[union-attr]
            return
        server.connections.add(self)
        self.deadline = self.loop.time() + self.limits.keep_alive
        server.deadlines.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server.connections.discard(self)
        if server.all_closed is not None and not server.connections:
            server.all_closed.set()
        self.server.deadlines.forget(self)
        self.broken = True
        if self.task is not None:
            self.task.cancel()  # the handler's upstream exchange closes its connection
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.broken or self.last:
            return  # lingering, or after an error or a last request: discarded
        spanning = self.begun if self.head_open else -1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(BadRequest(400, "protocol upgrades are not supported"))
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if self.last:
                return  # bytes after the last request are never read
            if isinstance(cause, BadRequest):
                self._refuse(cause)
            elif isinstance(exc, httptools.HttpParserInvalidMethodError):
                self._refuse(BadRequest(405, "method not allowed"))
            else:
                self._refuse(BadRequest(400, f"malformed request: {exc}"))
            return
        if self.head_open and spanning == self.begun:
            # A head spread over reads is bounded before it ends (httptools holds what it has).
            self.head_raw += len(data)
            if self.head_raw > self.limits.max_head:
                self._refuse(BadRequest(431, "request header fields too large"))

    def eof_received(self) -> bool:
        self.eof = True
        if self.head_open or self.body_open:
            self.broken = True  # an unfinished request is dropped, never forwarded
        if not self.busy:
            self._close()
        elif self.waiting is not None and self.waiting.http11:
            # Half-closed (still reading) or gone? Only a write tells: a client that closed
            # its socket answers it with a reset. HTTP/1.1 clients accept an interim answer.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
            self.loop.call_later(PROBE_DELAY, self._abort_if_gone)
        return True  # answers still due are written before closing

    def _abort_if_gone(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.abort()  # its upstream exchange is cancelled and that connection closed

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def expire(self) -> None:
        """The deadline passed: 408 for a started request, else (idle, lingering) close."""
        if self.head_open or self.body_open:
            self._refuse(BadRequest(408, "request not received in time"))
        elif not self.busy:
            self._close()

    # --- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.last:
            raise BadRequest(400, "request after the last one")  # stops the parser; not sent
        self.begun += 1
        self.request = Request(self.client)
        self.hosts = []
        self.transfer_encoding = []
        self.expect = None
        self.upgrade = False
        self.content_length = None
        self.head_open = True
        self.head_size = self.head_raw = 0
        self.deadline = self.loop.time() + self.limits.head_timeout

    def on_url(self, url: bytes) -> None:
        self.request.target += url  # type: ignore[union-attr]
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_open:
            return  # a chunked body's trailer fields: never headers
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.limits.max_head:
            raise BadRequest(431, "request header fields too large")
        name = name.lower()
        value = value.strip(b" \t")
        request = self.request
        assert request is not None
        if name == b"host":
            self.hosts.append(value)
        elif name == b"content-length":
            self.content_length = int(value)  # digits only: httptools checked it
        elif name == b"transfer-encoding":
            self.transfer_encoding.append(value)
        elif name == b"connection":
            request.connection.append(value)
        elif name == b"upgrade":
            self.upgrade = True
        elif name == b"expect":
            self.expect = value.lower()
        elif name == b"x-request-id":
            if request.request_id is None:
                request.request_id = value
        elif name == b"authorization":
            request.authorization = value
        request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        self.head_open = False
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise BadRequest(505, "HTTP version not supported")
        request.http11 = http11 = version == "1.1"
        request.method = method = parser.get_method().decode("ascii")
        if method not in METHODS:
            raise BadRequest(405, "method not allowed")
        if self.upgrade:
            raise BadRequest(400, "protocol upgrades are not supported")
        request.path, request.query = split_target(request.target)
        hosts = self.hosts
        if len(hosts) == 1 and hosts[0] == self.checked_host:
            request.host = self.checked_host  # a keep-alive client sends the same Host again
        else:
            request.host = self.checked_host = check_host(hosts, http11)
        chunked = check_transfer_encoding(self.transfer_encoding, http11)
        request.keep_alive = http11 and parser.should_keep_alive()
        length = self.content_length
        if length is not None and length > self.limits.max_body:
            raise BadRequest(413, "request body too large")
        if self.expect is not None and self.expect != b"100-continue":
            raise BadRequest(417, "unsupported expectation")
        if chunked or length:
            self.body_open = True
            self.body_parts = []
            self.body_size = 0
            self.deadline = self.loop.time() + self.limits.body_timeout
            if self.expect is not None and not self.busy:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.limits.max_body:
            raise BadRequest(413, "request body too large")
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        request = self.request
        assert request is not None
        if self.body_open:
            self.body_open = False
            parts = self.body_parts
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self.body_parts = []
        self.request = None
        self.deadline = math.inf
        self.last = not request.keep_alive  # nothing after it is read as a request
        self._enqueue(request)

    # --- answering, in order ------------------------------------------------------------------
    def _enqueue(self, item: Request | BadRequest) -> None:
        self.queue.append(item)
        if not self.busy:
            self.busy = True
            idle = self.idle
            if self.task is None:
                self.task = self.loop.create_task(self._answer_queue())
            elif idle is not None and not idle.done():
                idle.set_result(None)
        elif len(self.queue) >= MAX_PIPELINE and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def _refuse(self, error: BadRequest) -> None:
        """Stops reading requests; `error` is answered after those before it."""
        self.broken = True
        self.head_open = self.body_open = False
        self.deadline = math.inf
        self._enqueue(error)

    async def _answer_queue(self) -> None:
        """The connection's one answering task: it answers what is queued, then waits for the
        next request (a wake-up costs less than a task per request)."""
        try:
            while True:
                while self.queue:
                    item = self.queue.popleft()
                    if self.read_paused and len(self.queue) < MAX_PIPELINE // 2:
                        self.read_paused = False
                        self.transport.resume_reading()  # type: ignore[union-attr]
                    if isinstance(item, BadRequest):
                        self._write_error(error_response(item.status, item.message))
                        self._linger()
                        return
                    self.waiting = item
                    response = await self.server.handler(item)
                    self.waiting = None
                    await self._write(item, response)
                    if not item.keep_alive or response.close or self.server.closing:
                        self._close()
                        return
                self.busy = False
                if self.eof:
                    self._close()
                    return
                if not self.head_open and not self.body_open:
                    self.deadline = self.loop.time() + self.limits.keep_alive
                self.idle = self.loop.create_future()
                await self.idle
        except asyncio.CancelledError:
            return  # the client went away
        except Exception:
            log.exception("answering a request failed")
            self.abort()
        finally:
            self.busy = False
            self.task = None

    async def _write(self, request: Request, response: Response) -> None:
        transport = self.transport
        assert transport is not None
        status = response.status
        stream = response.stream
        parts = [STATUS_LINES[status]]
        for name, value in response.headers:
            parts += (name, b": ", value, b"\r\n")
        closing = not request.keep_alive or response.close or self.server.closing
        if closing:
            parts.append(b"connection: close\r\n")
        bodyless = request.method == "HEAD" or status in _NO_BODY_STATUS
        if stream is None:
            if status not in _NO_BODY_STATUS:
                length = len(response.body) if response.length is None else response.length
                parts += (b"content-length: ", b"%d" % length, b"\r\n")
            parts.append(b"\r\n")
            if not bodyless:
                parts.append(response.body)
            transport.write(b"".join(parts))
            return
        length = response.length
        chunked = length is None and not bodyless and request.http11
        if length is not None:
            parts += (b"content-length: ", b"%d" % length, b"\r\n")
        elif chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif not bodyless and not closing:
            parts.append(b"connection: close\r\n")  # HTTP/1.0: the end is the connection's
            response.close = True
        parts.append(b"\r\n")
        try:
            transport.write(b"".join(parts))
            if bodyless:
                return
            async for chunk in stream.chunks():
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                if self.write_paused and not transport.is_closing():
                    self.drained = self.loop.create_future()
                    await self.drained
            if chunked:
                transport.write(b"0\r\n\r\n")
        except Exception as exc:
            # The head is gone already: an answer cut short must not look whole.
            log.warning("answer body interrupted: %r", exc)
            self.abort()
            raise asyncio.CancelledError from exc
        finally:
            stream.release()

    def _write_error(self, response: Response) -> None:
        parts = [STATUS_LINES[response.status]]
        for name, value in response.headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"content-length: ", b"%d" % len(response.body), b"\r\n")
        parts += (b"connection: close\r\n\r\n", response.body)
        self.transport.write(b"".join(parts))  # type: ignore[union-attr]

    def _linger(self) -> None:
        """Half-close after an error answer and discard what still arrives, then close."""
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            return
        if self.eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.deadline = self.loop.time() + LINGER

    # --- closing --------------------------------------------------------------------------------
    def close_when_idle(self) -> None:
        if not self.busy and not self.head_open and not self.body_open:
            self._close()

    def _close(self) -> None:
        self.broken = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.abort()
