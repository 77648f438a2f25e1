"""uvicorn's httptools protocol, sending each response in one TCP write instead of two (inventory
runs on it).

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, then the body in a second `transport.write`: two `send` syscalls, two
loopback segments and often two wake-ups of the client per response. Here every write is held
until the end of the current event-loop iteration and the writes of that iteration go out
together: the headers and body of a response, which Starlette sends without pausing in
between, become one segment, which the client reads in one wake-up (on two shared cores the
client's CPU is taken from inventory and PostgreSQL; inventory's README has the measurements).
Nothing waits longer than the iteration it was written in, and a
close flushes first.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Delegates to the real transport; writes made in one loop turn go out as one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def write_whole(self, data: bytes) -> None:
        """A whole response, written at once unless earlier writes are pending (kept in order)."""
        if self._pending:
            self._pending.append(data)
        elif not self._transport.is_closing():
            self._transport.write(data)

    def _flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            if not self._transport.is_closing():
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def is_closing(self) -> bool:  # asked once per response: not through __getattr__
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
