"""X-Request-ID, the same in all three services: the client's when well-formed, else a new one."""

import random
import re

HEADER = b"x-request-id"
_valid = re.compile(rb"[A-Za-z0-9._:-]{1,128}").fullmatch
_getrandbits = random.getrandbits


def new_request_id() -> bytes:
    """A random UUID4 as 32 hex digits, like `uuid.uuid4().hex` but from `random` rather than a
    getrandbits syscall: ~0.3 µs instead of ~2.5. A trace id needs to be unique, not secret
    (`random` is reseeded in every worker process)."""
    n = _getrandbits(128)
    n = (n & ~(0xF000 << 64) | (4 << 76)) & ~(0xC000 << 48) | (0x8000 << 48)
    return b"%032x" % n


def request_id_of(value: bytes | None) -> bytes:
    """The client's X-Request-ID when it is 1-128 of [A-Za-z0-9._:-], else a new one."""
    if value is not None and _valid(value):
        return value
    return new_request_id()


def request_id_in(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request id of an ASGI scope's headers (see `request_id_of`)."""
    for name, value in headers:
        if name == HEADER:
            return request_id_of(value)
    return new_request_id()
