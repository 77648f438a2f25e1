"""The gateway's HTTP protocol: uvicorn's, with coalesced writes and a lean path for
`GET /api/movies…`.

Writes: uvicorn writes a response's head and body with two `transport.write` calls, i.e. two
loopback `send()` syscalls, which measured here cost as much CPU as all the proxy's Python code;
`crud_common.coalescing` buffers the writes of one event-loop turn and sends them as one.

The lean path: through ASGI a proxied request costs a task, a scope, a request/response cycle
and several awaits and message dicts on top of the proxying itself, and even httptools calls
back into Python once per header; on two shared cores that overhead is what inventory loses to
the gateway. So when a read brings exactly one plain `GET /api/movies…` (wire.plain_get) and
an upstream connection is pooled, the request head goes to inventory straight from
`data_received`, and when the upstream's first read is one whole answer (wire.whole_answer) it
goes to the client as it came, X-Request-ID set, in one write: no parser, task or await.

Every other case takes uvicorn's ASGI path (`proxy.Gateway`), which stays the reference
behaviour: bodies, other methods, percent-encoded paths, requests split over several reads, no
idle upstream connection. Handed over midway: answers httptools must read (relayed whole when
small, else streamed via ASGI), timeouts (504) and upstream connections that broke (retried).
Both paths share the same helpers (guard, upstream client, metrics), so they answer alike; the
tests go through both.

Pipelined requests, client disconnects and graceful shutdown keep uvicorn's semantics: while a
lean exchange is in flight, `self.cycle` is a `_FastCycle` that uvicorn's own code reads like
one of its cycles.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from crud_common.coalescing import CoalescingHttpToolsProtocol
from crud_common.logs import request_id
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from .guard import Refusal
from .metrics import movies_route
from .proxy import (
    TIMED_OUT,
    Gateway,
    Receive,
    Scope,
    Send,
    relay,
    send_json,
)
from .upstream import TimedOut, UpstreamClient, UpstreamError, UpstreamResponse
from .wire import header_list, plain_get, whole_answer

log = logging.getLogger(__name__)


class _Event:
    """Stands for the cycle's asyncio.Event: nothing waits on a fast exchange."""

    __slots__ = ()

    def set(self) -> None:
        pass


_EVENT = _Event()
Respond = Callable[[Send], Awaitable[int]]  # writes an answer, returns its status


class _FastCycle:
    """A lean exchange in flight: what uvicorn's protocol reads of a cycle, and the `Exchange`
    the upstream connection reports the answer to."""

    __slots__ = (
        "conn",
        "disconnected",
        "index",
        "keep_alive",
        "protocol",
        "request",
        "response",
        "response_complete",
        "rid",
        "started",
        "target",
        "upstreams",
    )

    message_event = _EVENT

    def __init__(
        self, protocol: "GatewayHttpProtocol", request: bytes, target: bytes, rid: bytes
    ) -> None:
        self.protocol = protocol
        self.request = request
        self.target = target
        self.rid = rid
        self.started = time.perf_counter()
        self.keep_alive = True  # HTTP/1.1 without Connection: close (wire.plain_get)
        self.disconnected = False
        self.response_complete = False
        self.response: UpstreamResponse | None = None  # once httptools reads the answer

    def send(self, upstreams: UpstreamClient, index: int, conn: Any, headers: bytes) -> None:
        """Sends the request on `conn`, a connection leased from `upstreams`."""
        self.upstreams = upstreams
        self.index = index
        self.conn = conn
        upstreams.send_get(index, conn, self.target, headers, self)

    def take(self, data: bytes) -> bool:
        try:
            whole = whole_answer(data, self.rid)
        except Exception:  # a bug here must not lose the answer: httptools reads it
            log.exception("lean path failed; reading the answer with httptools")
            return False
        if whole is None:
            return False
        self.upstreams.recycle(self.index, self.conn)
        self.protocol._finish(self, *whole)
        return True

    def upstream_ready(self) -> None:
        protocol = self.protocol
        response = self.response
        try:
            if response is None:
                response = self.response = self.upstreams.response(self.index, self.conn)
            if response.arrived():
                protocol._answer(response, self, self.rid)
        except TimedOut:
            rid = self.rid
            request_id.set(rid.decode("latin-1"))
            protocol.proxy.timed_out(self.index)  # type: ignore[union-attr]
            protocol._hand_over(self, lambda send: send_json(send, 504, TIMED_OUT, rid))
        except UpstreamError:  # broken before any byte of an answer: served again via ASGI
            protocol._hand_over(self, None)
        except Exception:  # a bug here must not leave the client hanging
            log.exception("lean path failed; serving the request through ASGI")
            protocol._hand_over(self, None)


class GatewayHttpProtocol(CoalescingHttpToolsProtocol):
    """uvicorn's httptools protocol with coalesced writes and the lean path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app
        self.gateway = app if isinstance(app, Gateway) else None
        self.proxy = self.gateway.proxy if self.gateway else None
        self._parsing = False  # httptools is inside a message: its bytes cannot skip it
        self._answered_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._client_ip = self.client[0].encode("latin-1") if self.client else None
        self._scheme = self.scheme.encode("latin-1")

    def on_message_begin(self) -> None:
        self._parsing = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._parsing = False
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if not self._serve_lean(data):
            super().data_received(data)

    def _serve_lean(self, data: bytes) -> bool:
        """Starts the exchange and returns True when `data` is one plain GET of the movies API
        and an upstream connection is pooled, else False."""
        proxy = self.proxy
        cycle = self.cycle
        if (
            proxy is None
            or self._parsing
            or (cycle is not None and not cycle.response_complete)  # pipelined
        ):
            return False
        client = proxy.client
        request = plain_get(data, self._client_ip, self._scheme)
        if request is None or client is None:
            return False
        index = proxy.first_choice()
        conn = client.lease(index)
        if conn is None:  # the ASGI path connects
            return False
        fast = _FastCycle(self, data, request.target, request.request_id)
        self.cycle = fast  # type: ignore[assignment]
        if proxy.guard.limiter is not None:
            refusal = proxy.guard.check({"client": self.client, "method": "GET"}, None)
            if refusal is not None:
                client.give_back(index, conn)
                self._hand_over(fast, _refusal(refusal, fast.rid))
                return True
        proxy.chosen()
        fast.send(client, index, conn, request.headers)
        return True

    def _finish(self, fast: _FastCycle, status: int, answer: bytes) -> None:
        """Writes a whole answer in one go and completes the exchange."""
        fast.response_complete = True
        if fast.disconnected:
            return
        self.transport.write_whole(answer)  # type: ignore[attr-defined]
        self._observe(fast, status)
        if not fast.keep_alive:  # a graceful shutdown began meanwhile
            self.transport.close()
        self.on_response_complete()

    def _answer(self, response: UpstreamResponse, fast: _FastCycle, rid: bytes) -> None:
        """An answer httptools parsed: relayed whole in one write, or handed over to the ASGI
        path to be streamed."""
        response.headers.append((b"x-request-id", rid))
        body = response.body
        if body is None or not response.sized:
            self._hand_over(fast, _relay_rest(response))
            return
        response.release()
        parts = [STATUS_LINE[response.status]]
        for name, value in response.headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        self._finish(fast, response.status, b"".join(parts))

    def _observe(self, fast: _FastCycle, status: int) -> None:
        route = movies_route(fast.target.partition(b"?")[0].decode("ascii"))
        seconds = time.perf_counter() - fast.started
        self.gateway.metrics.observe("GET", route, status, seconds)  # type: ignore[union-attr]

    def _scope(self, fast: _FastCycle) -> Scope:
        """The ASGI scope uvicorn would have made of the request."""
        path, _, query = fast.target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "headers": header_list(fast.request),
            "state": self.app_state.copy(),
            "method": "GET",
            "path": self.root_path + path.decode("ascii"),
            "raw_path": self.root_path.encode("ascii") + path,
            "query_string": query,
            "gateway.guarded": True,  # its rate-limit token is taken already
        }

    def _hand_over(self, fast: _FastCycle, respond: Respond | None) -> None:
        """Continue the request on uvicorn's ASGI path: `respond(send)` writes the answer, or,
        when None, the gateway serves the request from the start."""
        if fast.disconnected:
            fast.response_complete = True
            return
        cycle = RequestResponseCycle(
            scope=self._scope(fast),  # type: ignore[arg-type]
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=fast.keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.more_body = False
        self.cycle = cycle
        if respond is None:
            assert self.gateway is not None
            self._start_asgi_task(cycle, self.gateway)
            return

        async def answer(scope: Scope, receive: Receive, send: Send) -> None:
            self._observe(fast, await respond(send))

        self._start_asgi_task(cycle, answer)

    # Keep-alive timeout: armed once and re-armed when it fires early, instead of a timer
    # created and cancelled per request (~3 µs).
    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._answered_at = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # busy: the answer re-arms it
        idle = self.loop.time() - self._answered_at
        if idle < self.timeout_keep_alive:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive - idle, self.timeout_keep_alive_handler
            )
            return
        super().timeout_keep_alive_handler()


def _refusal(refusal: Refusal, rid: bytes) -> Respond:
    status, body, extra = refusal
    return lambda send: send_json(send, status, body, rid, extra)


def _relay_rest(response: UpstreamResponse) -> Respond:
    async def relay_body(send: Send) -> int:
        try:
            await relay(response, send)
        finally:
            response.release()
        return response.status

    return relay_body
