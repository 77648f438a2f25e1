"""The gateway's HTTP protocol: uvicorn's, with coalesced writes and a callback-driven path for
`GET /api/movies…`.

Writes: uvicorn writes a response's head and body with two `transport.write` calls, i.e. two
loopback `send()` syscalls, which measured here cost as much CPU as all the proxy's Python code;
`crud_common.coalescing` buffers the writes of one event-loop turn and sends them as one.

The fast path: through ASGI a proxied request costs a task, a scope, a request/response cycle
and several awaits and message dicts on top of the proxying itself; on two shared cores that
overhead is what inventory loses to the gateway. So the commonest request, a bodiless GET of
the movies API with a pooled upstream connection free, is served from the parser's callbacks:
the request head goes to inventory as soon as it is parsed, and the answer is written back from
the upstream connection's callback in one write, with no task and no await.

Every other case takes uvicorn's ASGI path (`proxy.Gateway`), which stays the reference
behaviour: bodies, other methods, percent-encoded paths, no idle upstream connection, and,
handed over midway, answers too large to relay whole (streamed) and upstream connections that
broke (retried). Both paths share the same helpers (headers, guard, upstream client, metrics),
so they answer alike; the tests go through both.

Pipelined requests, client disconnects and graceful shutdown keep uvicorn's semantics: while a
fast exchange is in flight, `self.cycle` is a `_FastCycle` that uvicorn's own code reads like
one of its cycles.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
from crud_common.coalescing import CoalescingHttpToolsProtocol
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from .guard import Refusal
from .logging import request_id
from .metrics import movies_route
from .proxy import (
    PREFIX,
    TIMED_OUT,
    Gateway,
    Receive,
    Scope,
    Send,
    forwarded_headers,
    relay,
    send_json,
)
from .upstream import TimedOut, UpstreamError, UpstreamResponse

log = logging.getLogger(__name__)

_PREFIX_LEN = len(PREFIX)
_PREFIX_BYTES = PREFIX.encode()


class _Event:
    """Stands for the cycle's asyncio.Event: nothing waits on a fast exchange."""

    __slots__ = ()

    def set(self) -> None:
        pass


_EVENT = _Event()
Respond = Callable[[Send], Awaitable[int]]  # writes an answer, returns its status


class _FastCycle:
    """A fast exchange in flight: what uvicorn's protocol reads of a cycle, plus its request."""

    __slots__ = ("disconnected", "keep_alive", "more_body", "response_complete", "scope", "started")

    body = b""
    message_event = _EVENT

    def __init__(self, scope: Scope, keep_alive: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.started = time.perf_counter()
        self.disconnected = False
        self.response_complete = False
        self.more_body = False


class GatewayHttpProtocol(CoalescingHttpToolsProtocol):
    """uvicorn's httptools protocol with coalesced writes and the fast path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app
        self.gateway = app if isinstance(app, Gateway) else None

    def on_headers_complete(self) -> None:
        if not self._serve_fast():
            super().on_headers_complete()

    def _serve_fast(self) -> bool:
        """Starts the exchange and returns True when this request qualifies, else False."""
        gateway = self.gateway
        url = self.url
        if (
            gateway is None
            or not url.startswith(_PREFIX_BYTES)
            or (len(url) > _PREFIX_LEN and url[_PREFIX_LEN] not in b"/?")
            or b"%" in url
            or self.parser.get_method() != b"GET"
            or (self.cycle is not None and not self.cycle.response_complete)  # pipelined
        ):
            return False
        proxy = gateway.proxy
        client = proxy.client
        if client is None:
            return False
        scope = self.scope
        headers, length, chunked, rid, authorization = forwarded_headers(scope)
        if length or chunked:  # a GET with a body: the ASGI path streams it
            return False
        parsed = httptools.parse_url(url)
        query = parsed.query or b""
        scope["method"] = "GET"
        scope["path"] = parsed.path.decode("ascii")
        scope["raw_path"] = parsed.path
        scope["query_string"] = query
        version = self.parser.get_http_version()
        if version != "1.1":
            scope["http_version"] = version
        cycle = _FastCycle(scope, version != "1.0" and self.parser.should_keep_alive())

        refusal = proxy.guard.check(scope, authorization)
        if refusal is not None:
            self.cycle = cycle  # type: ignore[assignment]
            self._hand_over(cycle, _refusal(refusal, rid))
            return True
        index = proxy.first_choice()

        def on_upstream() -> None:
            try:
                if response.arrived():
                    self._answer(response, cycle, rid)
            except TimedOut:
                request_id.set(rid.decode("latin-1"))
                proxy.timed_out(index)
                self._hand_over(cycle, lambda send: send_json(send, 504, TIMED_OUT, rid))
            except UpstreamError:  # broken before any byte of an answer: served again via ASGI
                scope["gateway.guarded"] = True  # the guard let it pass already
                self._hand_over(cycle, None)
            except Exception:  # a bug here must not leave the client hanging
                log.exception("fast path failed; serving the request through ASGI")
                scope["gateway.guarded"] = True
                self._hand_over(cycle, None)

        target = parsed.path + b"?" + query if query else parsed.path
        sent = client.send_get(index, target, headers, on_upstream)
        if sent is None:  # no pooled connection: the ASGI path makes one
            scope["gateway.guarded"] = True
            return False
        proxy.chosen()
        response = sent
        self.cycle = cycle  # type: ignore[assignment]
        return True

    def _answer(self, response: UpstreamResponse, cycle: _FastCycle, rid: bytes) -> None:
        """The upstream's head is in: relay the answer whole in one write, or hand it over to
        the ASGI path to be streamed."""
        response.headers.append((b"x-request-id", rid))
        body = response.body
        if body is None or not response.sized:
            self._hand_over(cycle, _relay_rest(response))
            return
        response.release()
        if cycle.disconnected:
            cycle.response_complete = True
            return
        parts = [STATUS_LINE[response.status]]
        for name, value in response.headers:
            parts += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        self.transport.write_whole(b"".join(parts))  # type: ignore[attr-defined]
        cycle.response_complete = True
        self._observe(cycle, response.status)
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _observe(self, cycle: _FastCycle, status: int) -> None:
        assert self.gateway is not None
        route = movies_route(cycle.scope["path"])
        self.gateway.metrics.observe("GET", route, status, time.perf_counter() - cycle.started)

    def _hand_over(self, fast: _FastCycle, respond: Respond | None) -> None:
        """Continue the request on uvicorn's ASGI path: `respond(send)` writes the answer, or,
        when None, the gateway serves the request from the start."""
        if fast.disconnected:
            fast.response_complete = True
            return
        cycle = RequestResponseCycle(
            scope=fast.scope,  # type: ignore[arg-type]
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
