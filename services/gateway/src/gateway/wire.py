"""Byte-level reading of the commonest exchange: a plain `GET /api/movies…` that arrived whole,
and an answer that arrived whole with a Content-Length (protocol.py's lean path).

Each function recognises only the simple, unambiguous form and returns None for anything else
(a body, Connection options, HTTP/1.0, `%`-escapes, obs-fold, odd bytes, a partial message…):
the caller then lets httptools parse the bytes as usual. Being stricter than httptools only
costs speed, never behaviour, so no rule here needs to be complete.
"""

import re
from typing import NamedTuple

from crud_common.request_ids import request_id_of

# The request line of a GET of /api/movies… whose target holds only RFC 3986 path and query
# characters (no "%": escapes go the long way, like every request this does not recognise).
_REQUEST_LINE = re.compile(
    rb"GET (/api/movies(?:[/?][-._~!$&'()*+,;=:@/?A-Za-z0-9]*)?) HTTP/1\.1\r\n"
)
# Header lines (RFC 9110 token names, values of visible characters, space, tab and obs-text)
# down to the blank line.
_HEADER_BLOCK = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*\r\n")
# Request headers that are not forwarded as they came: refused ones send the request the long
# way, dropped ones are left out (X-Forwarded-Proto/Host are set from what the gateway saw).
_REFUSE = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})
_DROP = frozenset({b"keep-alive", b"te", b"trailer", b"x-forwarded-proto", b"x-forwarded-host"})
# Response headers that need httptools' reading (hop-by-hop, framing other than Content-Length).
_HOP_BY_HOP = re.compile(
    rb"\r\n(?:connection|keep-alive|transfer-encoding|te|trailer|upgrade|proxy-[^:]*)[ \t]*:", re.I
)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]+)[ \t]*(?=\r\n)", re.I)
_REQUEST_ID = re.compile(rb"\r\nx-request-id[ \t]*:[^\r]*", re.I)


class PlainGet(NamedTuple):
    target: bytes  # path and query, as sent
    request_id: bytes  # the client's when well-formed, else a new one
    headers: bytes  # the header lines the upstream gets after Host, down to the blank line


def plain_get(data: bytes, client_ip: bytes | None, scheme: bytes) -> PlainGet | None:
    """`data` as one bodiless HTTP/1.1 GET of /api/movies…, with the header lines to forward:
    the client's end-to-end ones as they came, then X-Forwarded-For/Proto/Host and X-Request-ID;
    or None if `data` is anything else."""
    line = _REQUEST_LINE.match(data)
    if (
        line is None
        or data.find(b"\r\n\r\n", line.end() - 2) != len(data) - 4
        or not _HEADER_BLOCK.fullmatch(data, line.end())
    ):
        return None
    host = request_id = None
    forwarded_for: list[bytes] = []
    parts: list[bytes] = []
    for header in data[line.end() : len(data) - 4].split(b"\r\n"):
        name, _, value = header.partition(b":")
        name = name.lower()
        if name == b"host":
            host = value.strip(b" \t")
        elif name in _REFUSE:
            return None
        elif name in _DROP or name.startswith(b"proxy-"):
            continue
        elif name == b"x-forwarded-for":
            forwarded_for.append(value.strip(b" \t"))
        elif name == b"x-request-id":
            request_id = value.strip(b" \t")
        elif name == b"connection":
            if value.strip(b" \t").lower() != b"keep-alive":
                return None  # close, or headers named hop-by-hop: httptools' way
        elif name:
            parts += (header, b"\r\n")
    if client_ip is not None:
        forwarded_for.append(client_ip)
    if forwarded_for:
        parts += (b"x-forwarded-for: ", b", ".join(forwarded_for), b"\r\n")
    parts += (b"x-forwarded-proto: ", scheme, b"\r\n")
    if host is not None:
        parts += (b"x-forwarded-host: ", host, b"\r\n")
    request_id = request_id_of(request_id)
    parts += (b"x-request-id: ", request_id, b"\r\n\r\n")
    return PlainGet(line[1], request_id, b"".join(parts))


def whole_answer(data: bytes, request_id: bytes) -> tuple[int, bytes] | None:
    """(status, the bytes the client gets, with X-Request-ID set to `request_id`) when `data` is
    exactly one final answer framed by one Content-Length and free of hop-by-hop headers; else
    None."""
    end = data.find(b"\r\n\r\n")
    status = data[9:12]
    if (
        end < 0
        or not data.startswith(b"HTTP/1.1 ")
        or not status.isdigit()
        or status[0] == 0x31  # 1xx: the final answer follows
        or data[12:13] not in (b" ", b"\r")
        or _HOP_BY_HOP.search(data, 8, end)
    ):
        return None
    lengths = _CONTENT_LENGTH.findall(data, 8, end + 2)
    if len(lengths) != 1 or end + 4 + int(lengths[0]) != len(data):
        return None  # no or several lengths, a partial answer, or more than one answer
    echoed = b"\r\nx-request-id: %s\r\n" % request_id
    if data.find(echoed, 8, end + 2) >= 0:
        return int(status), data  # the upstream echoed it: relayed as it came
    own = b"\r\nx-request-id: " + request_id
    return int(status), _REQUEST_ID.sub(b"", data[:end]) + own + data[end:]


def header_list(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (lower-case name, value) pairs of a request `plain_get` accepted, as uvicorn lists
    them in an ASGI scope."""
    pairs = (line.partition(b":") for line in data[: len(data) - 4].split(b"\r\n")[1:])
    return [(name.lower(), value.strip(b" \t")) for name, _, value in pairs]
