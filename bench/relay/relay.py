"""The floor of a Python asyncio proxy, for bench/gateway: bytes copied as they come.

Each client connection gets its own connection to the upstream, and every read on one side is
written to the other, on uvloop like the gateway. No parsing, no headers added, no checks: it
is not a usable gateway (nothing stops a request smuggled past it), only the cost of the two
reads, two writes and event-loop callbacks every proxied exchange pays.

    python relay.py LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
"""

import asyncio
import sys

import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: "Client") -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class Client(asyncio.Protocol):
    upstream_port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.upstream: asyncio.Transport | None = None
        self.early: list[bytes] = []
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.upstream, _ = await loop.create_connection(
            lambda: Upstream(self), "127.0.0.1", self.upstream_port
        )
        for data in self.early:
            self.upstream.write(data)

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    Client.upstream_port = int(sys.argv[2])
    uvloop.run(serve(int(sys.argv[1])))
