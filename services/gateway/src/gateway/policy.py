"""What the gateway accepts from clients and upstreams, and what it passes on: the header policy.

The gateway never forwards framing it did not produce. A request's head is checked here field by
field (target, Host, Transfer-Encoding, Upgrade, Expect), and the head inventory receives is
written from those parsed fields with the gateway's own Host and Content-Length; an upstream
answer's head is rebuilt the same way. httptools (llhttp, strict mode) has already refused bad
syntax: bare CR or LF, NUL and other control bytes, obs-fold, duplicate or malformed
Content-Length, Content-Length with Transfer-Encoding.
"""

import re
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1 hop-by-hop fields (and any Proxy-*, and those named in Connection): never
# passed on in either direction.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Request fields the gateway writes itself instead of copying.
_REWRITTEN = frozenset(
    {
        b"host",
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
    }
)
_NOT_COPIED_UP = HOP_BY_HOP | _REWRITTEN
# Answer fields the gateway writes itself (framing, and its own request id).
_NOT_COPIED_DOWN = HOP_BY_HOP | {b"content-length", b"x-request-id"}

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Methods whose request carries a body by definition: Content-Length is always sent upstream.
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})

# origin-form (RFC 9112 §3.2.1): an absolute path of RFC 3986 pchars and "/", then a query of
# visible ASCII without "#". httptools has refused spaces, controls and non-ASCII already.
_PATH = re.compile(rb"/(?:[-A-Za-z0-9._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_QUERY = re.compile(rb"[!-\"$-~]*")
# Escapes that would change how a server behind the gateway splits the path.
_HIDDEN_SEPARATORS = re.compile(rb"%(?:2[fF]|5[cC]|00)")
_DOT_SEGMENT = re.compile(rb"(?:^|/)\.\.?(?:/|$)")
# uri-host [":" port]: a registered name or IPv4 address, or an IPv6 literal in brackets.
_HOST = re.compile(rb"(?:[-A-Za-z0-9._~]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class BadRequest(Exception):
    """The request cannot be served as sent: answered with `status` and closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def split_target(target: bytes) -> tuple[str, bytes]:
    """(decoded path for routing, raw query) of an origin-form target, or BadRequest: no
    absolute or authority form, no fragment, no dot-segment nor encoded "/", "\\" or NUL."""
    path, _, query = target.partition(b"?")
    if _PATH.fullmatch(path) is None or _QUERY.fullmatch(query) is None:
        raise BadRequest(400, "invalid request target")
    if b"%" in path:
        if _HIDDEN_SEPARATORS.search(path):
            raise BadRequest(400, "invalid request target")
        path = unquote_to_bytes(path)
    if b"/." in path and _DOT_SEGMENT.search(path):
        raise BadRequest(400, "invalid request target")
    return path.decode("latin-1"), query


def check_host(values: list[bytes], http11: bool) -> bytes | None:
    """The one Host value of a request; HTTP/1.1 needs exactly one (RFC 9112 §3.2)."""
    if len(values) > 1:
        raise BadRequest(400, "more than one Host header")
    if not values:
        if http11:
            raise BadRequest(400, "missing Host header")
        return None
    if _HOST.fullmatch(values[0]) is None:
        raise BadRequest(400, "invalid Host header")
    return values[0]


def check_transfer_encoding(values: list[bytes], http11: bool) -> bool:
    """True for a chunked body. Only `chunked` alone, on HTTP/1.1, is accepted."""
    if not values:
        return False
    if not http11:
        raise BadRequest(400, "Transfer-Encoding is not allowed in HTTP/1.0")
    if len(values) != 1 or values[0].lower() != b"chunked":
        raise BadRequest(400, "unsupported Transfer-Encoding")
    return True


def connection_tokens(values: list[bytes]) -> set[bytes]:
    return {token.strip().lower() for value in values for token in value.split(b",")}


def upstream_head(
    method: str,
    target: bytes,
    host: bytes,
    headers: Headers,
    named: set[bytes],
    extra: Headers,
    body_length: int,
) -> bytes:
    """The head of the request sent upstream: request line and Host of the gateway's own, the
    client's end-to-end fields (less hop-by-hop ones, those `named` in Connection and those the
    gateway rewrites), `extra` (X-Forwarded-*, X-Request-ID), and the body's Content-Length."""
    parts = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        if name in _NOT_COPIED_UP or name in named or name.startswith(b"proxy-"):
            continue
        parts += (name, b": ", value, b"\r\n")
    for name, value in extra:
        parts += (name, b": ", value, b"\r\n")
    if body_length or method in _WITH_BODY:
        parts += (b"content-length: ", b"%d" % body_length, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def relayed_headers(headers: Headers, connection: list[bytes]) -> Headers:
    """An upstream answer's end-to-end fields: the client gets the gateway's own framing."""
    named = connection_tokens(connection) if connection else ()
    return [
        (name, value)
        for name, value in headers
        if name not in _NOT_COPIED_DOWN and name not in named and not name.startswith(b"proxy-")
    ]


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
