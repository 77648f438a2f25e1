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
# Answer fields the gateway writes itself (framing, and its own request id): never relayed.
NOT_RELAYED = HOP_BY_HOP | {b"content-length", b"x-request-id"}

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Methods whose request carries a body by definition: Content-Length is always sent upstream.
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})

# origin-form (RFC 9112 §3.2.1): an absolute path of RFC 3986 pchars and "/", then a query of
# visible ASCII without "#". httptools has refused spaces, controls and non-ASCII already.
_PCHARS = b"-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~!$&'()*+,;=:@/"
_PATH = re.compile(rb"/(?:[-A-Za-z0-9._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_QUERY_CHARS = bytes(range(0x21, 0x7F)).replace(b"#", b"")
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
    # Deleting the allowed bytes leaves nothing in a plain path; escapes need the pattern.
    if path[:1] != b"/" or query.translate(None, _QUERY_CHARS):
        raise BadRequest(400, "invalid request target")
    if path.translate(None, _PCHARS) and _PATH.fullmatch(path) is None:
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


def end_to_end_fields(headers: Headers, named: set[bytes]) -> bytes:
    """The client's fields the gateway passes on, as header lines: all but hop-by-hop ones, those
    `named` in Connection, Proxy-* and those the gateway writes itself."""
    parts = []
    for name, value in headers:
        if name in _NOT_COPIED_UP or name in named or name.startswith(b"proxy-"):
            continue
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


def upstream_head(
    method: str, target: bytes, host: bytes, fields: bytes, body_length: int
) -> bytes:
    """The head of the request sent upstream: request line and Host of the gateway's own, the
    `fields` lines (end_to_end_fields, then X-Forwarded-*, X-Request-ID) and the body's
    Content-Length."""
    if body_length or method in _WITH_BODY:
        fields += b"content-length: %d\r\n" % body_length
    return b"%s %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (method.encode(), target, host, fields)


def relayed_headers(headers: Headers, connection: list[bytes]) -> Headers:
    """An answer's fields less those its Connection header names (the upstream client has left
    out the NOT_RELAYED and Proxy-* ones already)."""
    if not connection:
        return headers
    named = connection_tokens(connection)
    return [(name, value) for name, value in headers if name not in named]


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
