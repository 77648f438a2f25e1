"""The movies proxy: /api/movies… forwarded to inventory, round-robin, with fail-over.

The request inventory receives is written by the gateway (policy.upstream_head): the client's
method, raw path and query and end-to-end fields, X-Forwarded-For/Proto/Host, X-Request-ID and the
body with the gateway's own Content-Length. The answer's status, end-to-end fields and body come
back as received, framed by the gateway. Inventory unreachable: 502; no answer within
GATEWAY_UPSTREAM_TIMEOUT: 504; an answer that cannot be framed with certainty: 502.
"""

import logging
import time

from .http1 import Request, Response, error_response
from .policy import connection_tokens, end_to_end_fields, relayed_headers, upstream_head
from .upstream import (
    ConnectFailed,
    Disconnected,
    InvalidAnswer,
    TimedOut,
    Unreachable,
    UpstreamClient,
    UpstreamError,
)

log = logging.getLogger(__name__)

# Methods a retry can never turn into a second side effect.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# After a failed connect an upstream is skipped for this long (unless all are down).
FAIL_TIMEOUT = 5.0


class MoviesProxy:
    def __init__(self, upstreams: list[str], scheme: bytes = b"http") -> None:
        if not upstreams:
            raise ValueError("at least one upstream URL is required")
        self.upstreams = [u.rstrip("/") for u in upstreams]
        self.scheme = scheme
        self._down_until = [0.0] * len(self.upstreams)
        self._next = 0
        self.client: UpstreamClient | None = None  # set while the gateway runs

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

    def _fields(self, request: Request, rid: bytes) -> bytes:
        """The client's end-to-end fields, then X-Forwarded-For (the client's chain, then its
        address), -Proto, -Host and X-Request-ID."""
        named = connection_tokens(request.connection) if request.connection else ()
        fields = end_to_end_fields(request.headers, named)
        chain = [value for name, value in request.headers if name == b"x-forwarded-for"]
        chain.append(request.client.encode("latin-1"))
        fields += b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\n" % (
            b", ".join(chain),
            self.scheme,
        )
        if request.host is not None:
            fields += b"x-forwarded-host: %s\r\n" % request.host
        return fields + b"x-request-id: %s\r\n" % rid

    async def forward(self, request: Request, rid: bytes) -> Response:
        client = self.client
        if client is None:
            return error_response(502, "inventory unreachable", rid)
        method = request.method
        fields = self._fields(request, rid)
        body = request.body
        retry = method in IDEMPOTENT
        stale_retry = retry
        order = self._order()
        position = 0
        while True:
            index = order[position]
            head = upstream_head(
                method, request.target, client.host_header(index), fields, len(body)
            )
            try:
                answer = await client.exchange(index, head + body, method == "HEAD")
                break
            except ConnectFailed as exc:
                # Nothing was sent: any request may go to the next upstream.
                now = time.monotonic()
                if self._down_until[index] <= now:  # logged once per FAIL_TIMEOUT
                    log.warning("inventory %s unreachable: %s", self.upstreams[index], exc)
                self._down_until[index] = now + FAIL_TIMEOUT
                if position + 1 == len(order):
                    return error_response(502, "inventory unreachable", rid)
                position += 1
            except Disconnected as exc:
                log.warning("inventory %s dropped the connection", self.upstreams[index])
                if isinstance(exc, Unreachable):
                    self._down_until[index] = time.monotonic() + FAIL_TIMEOUT
                if exc.reused and stale_retry:
                    stale_retry = False  # a stale keep-alive connection: once more, fresh
                elif retry and position + 1 < len(order):
                    position += 1
                else:
                    return error_response(502, "inventory unreachable", rid)
            except TimedOut:
                log.warning("inventory %s timed out", self.upstreams[index])
                return error_response(504, "inventory timed out", rid)
            except InvalidAnswer as exc:
                log.warning("inventory %s sent an invalid answer: %s", self.upstreams[index], exc)
                return error_response(502, "inventory sent an invalid answer", rid)
            except UpstreamError:
                return error_response(502, "inventory unreachable", rid)
        headers = relayed_headers(answer.headers, answer.connection)
        headers.append((b"x-request-id", rid))
        if answer.body is not None:
            answer.release()
            return Response(answer.status, headers, answer.body, length=answer.length)
        return Response(answer.status, headers, stream=answer, length=answer.length)
