"""Client connections (http1.py) and pooled upstream connections (upstream.py) over several
requests: order, reuse, keep-alive, requests split over reads, answers rebuilt by the gateway."""

import asyncio
import time
from urllib.parse import urlsplit

from .recording_upstream import Recorder

UPSTREAM_TIMEOUT = 0.5  # of the gateway under test, where a test waits for it


async def _raw_exchange(url: str, request: bytes, until: bytes, within: float = 5.0) -> bytes:
    """Sends raw bytes, reads until `until` has been seen (or EOF) and returns all of it."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    received = b""
    try:
        writer.write(request)
        async with asyncio.timeout(within):
            while until not in received:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
    finally:
        writer.close()
    return received


async def test_pipelined_requests_are_answered_in_order(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        warm = [gw.client.get("/api/movies/slow?seconds=0.2") for _ in range(4)]
        assert [r.status_code for r in await asyncio.gather(*warm)] == [200] * 4  # 4 pooled
        request = b"".join(
            [
                b"GET /api/movies/slow?seconds=0.3 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /api/movies/2 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /api/movies/3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
                b"GET /api/movies/4 HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
        )
        received = await _raw_exchange(gw.url, request, b'"raw_path": "/api/movies/4"')
    answers = [
        received.index(marker)
        for marker in (
            b'{"slow": true}',
            b'"raw_path": "/api/movies/2"',
            b'"method": "POST", "raw_path": "/api/movies/3"',
            b'"raw_path": "/api/movies/4"',
        )
    ]
    assert answers == sorted(answers)
    assert received.count(b"HTTP/1.1 200 OK") == 4


async def test_http_1_0_client_gets_its_answer_and_the_connection_closed(
    gateway_factory, inventory
):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        assert (await gw.client.get("/api/movies/0")).status_code == 200
        received = await _raw_exchange(gw.url, b"GET /api/movies/5 HTTP/1.0\r\n\r\n", b"\0")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in head.lower()
    assert b'"raw_path": "/api/movies/5"' in body  # whole body, then EOF (read ended)


async def test_a_client_leaving_mid_request_harms_no_later_request(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        assert (await gw.client.get("/api/movies/0")).status_code == 200
        parts = urlsplit(gw.url)
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(b"GET /api/movies/slow?seconds=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        writer.close()  # gone before the answer
        later = []
        deadline = time.monotonic() + 1.0  # spans the abandoned answer's arrival (0.3 s)
        while time.monotonic() < deadline:
            later.append(await gw.client.get(f"/api/movies/{len(later)}"))
    assert [r.status_code for r in later] == [200] * len(later)
    assert [r.json()["raw_path"] for r in later] == [f"/api/movies/{i}" for i in range(len(later))]


async def test_a_slow_upstream_on_a_pooled_connection_is_a_504(gateway_factory):
    with Recorder() as upstream:  # /api/movies/hold is answered only after `release`
        async with gateway_factory(
            inventory_urls=upstream.url, gateway_upstream_timeout=UPSTREAM_TIMEOUT
        ) as gw:
            assert (await gw.client.get("/api/movies/0")).status_code == 200
            started = time.monotonic()
            response = await gw.client.get("/api/movies/hold")
            elapsed = time.monotonic() - started
            upstream.release.set()  # only now may the held answer go out: the 504 came first
            after = await gw.client.get("/api/movies/1")
    warm, held = upstream.requests[:2]
    assert held.connection == warm.connection  # the held request went on the pooled connection
    assert response.status_code == 504
    assert response.json() == {"error": "inventory timed out"}
    assert response.headers["x-request-id"]
    assert elapsed >= UPSTREAM_TIMEOUT  # its own timeout fired, not an early give-up
    assert after.status_code == 200
    assert after.json()["target"] == "/api/movies/1"  # not the held request's late answer
    assert after.json()["connection"] != held.connection  # that connection was dropped
    assert not upstream.violations


async def test_answers_are_the_same_on_a_new_and_a_pooled_connection(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        first, second = [
            await gw.client.get("/api/movies/9?q=1", headers={"X-Request-ID": "same-id"})
            for _ in range(2)
        ]
    assert first.content == second.content
    volatile = {"date"}
    assert [(k, v) for k, v in first.headers.multi_items() if k not in volatile] == [
        (k, v) for k, v in second.headers.multi_items() if k not in volatile
    ]
    assert second.headers["x-request-id"] == "same-id"


async def test_the_answer_head_is_written_by_the_gateway(gateway_factory, raw_upstream):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Odd-Case: Keep Me\r\n\r\n{}"
    async with (
        raw_upstream(lambda head, body, i: answer) as upstream,
        gateway_factory(inventory_urls=upstream.url) as gw,
    ):
        assert (await gw.client.get("/api/movies/1")).status_code == 200  # pools a connection
        request = b"GET /api/movies/2 HTTP/1.1\r\nHost: x\r\nX-Request-ID: r-2\r\n\r\n"
        received = await _raw_exchange(gw.url, request, b"{}")
    assert received == (
        b"HTTP/1.1 200 OK\r\nx-odd-case: Keep Me\r\nx-request-id: r-2\r\n"
        b"content-length: 2\r\n\r\n{}"
    )
    assert b"x-request-id: r-2" in upstream.requests[-1]


async def test_a_request_split_over_several_reads_is_answered(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        assert (await gw.client.get("/api/movies/0")).status_code == 200
        parts = urlsplit(gw.url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(b"GET /api/movies/3 HTTP/1.1\r\nHo")
            await writer.drain()
            await asyncio.sleep(0.05)  # lets the first part arrive alone (not a synchronisation)
            writer.write(b"st: x\r\n\r\n")
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b'"raw_path": "/api/movies/3"' in body


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    gateway_factory, inventory
):
    """The timeout counts from the last answer, not the first one on the connection."""
    keep_alive, idle = 1.0, 0.6  # idle between the answers: less than the timeout
    async with gateway_factory(inventory_urls=inventory.url, keep_alive_timeout=keep_alive) as gw:
        assert (await gw.client.get("/api/movies/0")).status_code == 200
        parts = urlsplit(gw.url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        request = b"GET /api/movies/4 HTTP/1.1\r\nHost: x\r\n\r\n"
        try:
            answered = []
            for _ in range(2):
                writer.write(request)
                async with asyncio.timeout(5):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                answered.append(time.monotonic())
                if len(answered) == 1:
                    await asyncio.sleep(idle)  # the idleness under test, not a synchronisation
            async with asyncio.timeout(5 * keep_alive):  # a deadline for the close, not a bound
                assert await reader.read(1) == b""  # closed by the gateway
            closed = time.monotonic()
        finally:
            writer.close()
    # Counted from the first answer, the close would come `keep_alive - idle` after the second;
    # counted from the second, `keep_alive` after it (less the answer's way to this client).
    assert closed - answered[1] > keep_alive - idle / 2


async def test_sequential_gets_reuse_one_upstream_connection(gateway_factory, raw_upstream):
    def respond(head: bytes, body: bytes, index: int) -> bytes:
        rid = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"x-request-id:")
        )
        return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: " + rid + b"\r\n\r\n{}"

    async with raw_upstream(respond) as upstream:
        async with gateway_factory(inventory_urls=upstream.url) as gw:
            for number in range(20):
                response = await gw.client.get(f"/api/movies/{number}")
                assert response.status_code == 200 and response.json() == {}
    assert len(upstream.requests) == 20
    assert upstream.connections == 1  # kept alive and pooled
