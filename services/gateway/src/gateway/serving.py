"""How uvicorn runs the gateway (server.py and the tests share this).

`GatewayHttpProtocol` is uvicorn's httptools protocol whose writes are coalesced per event-loop
turn: uvicorn writes a response's head and body with two `transport.write` calls, i.e. two
loopback `send()` syscalls, which measured here cost as much CPU as all the proxy's Python code.
Buffering them until the end of the turn sends a small response in one syscall.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
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

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


# Date/Server headers are off because proxied responses carry the upstream's; the gateway adds
# Date to its own answers (proxy.Gateway).
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": GatewayHttpProtocol,
    "ws": "none",
    "access_log": False,
    "server_header": False,
    "date_header": False,
    "proxy_headers": False,  # the gateway is the public entry: nobody in front to trust
    "lifespan": "on",
}
