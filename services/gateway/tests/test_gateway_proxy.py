"""The /api/movies pass-through, against stand-in inventories on 127.0.0.1."""

import asyncio
import contextlib
import hashlib
import json
import socket
import time

import pytest

from .recording_upstream import Recorder

UNREACHABLE = {"error": "inventory unreachable"}
# Timeouts of the gateways under test: short ones that tests wait for, and a long one that a
# test shows was not waited for.
UPSTREAM_TIMEOUT = 0.5
CONNECT_TIMEOUT = 0.5
LONG_TIMEOUT = 10.0


async def raw_request(url: str, request: bytes) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """Send exact request bytes; (status line, headers, body) of a Content-Length answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [
            (name.strip().lower(), value.strip())
            for name, value in (line.split(":", 1) for line in lines[1:] if line)
        ]
        length = int(dict(headers).get("content-length", "0"))
        body = await reader.readexactly(length)
        return lines[0].encode(), headers, body
    finally:
        writer.close()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_query_and_body_arrive_verbatim(gateway_factory, inventory, method):
    target = "/api/movies/42?title=a%20b&x=%2F&x=2&empty="
    body = b'{"title": "Alien", "description": "\xc3\xa9"}' if method != "GET" else b""
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        response = await gw.client.request(method, target, content=body)
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == method
    assert echoed["raw_path"] == target
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert inventory.seen[-1]["body"] == body


@pytest.mark.parametrize("path", ["/api/movies", "/api/movies/", "/api/movies/7/"])
async def test_collection_and_trailing_slash_paths_are_forwarded_as_is(
    gateway_factory, inventory, path
):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        response = await gw.client.get(path)
    assert response.status_code == 200
    assert response.json()["raw_path"] == path


async def test_lookalike_paths_are_not_forwarded(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        response = await gw.client.get("/api/moviesX")
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert inventory.seen == []


async def test_status_headers_and_body_come_back_untouched(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        created = await gw.client.post("/api/movies/created", content=b"{}")
        gone = await gw.client.get("/api/movies/404?status=404")
        nothing = await gw.client.delete("/api/movies/nothing")
    assert created.status_code == 201
    assert created.headers["location"] == "/api/movies/7"
    assert created.headers["x-total-count"] == "41"
    assert created.headers["link"] == '</api/movies?offset=100>; rel="next"'
    assert sorted(created.headers.get_list("set-cookie")) == ["a=1; Path=/", "b=2; Path=/"]
    assert created.content == b'{"id": 7, "title": "t", "description": "d"}'
    assert gone.status_code == 404
    assert gone.json()["raw_path"] == "/api/movies/404?status=404"
    assert nothing.status_code == 204
    assert nothing.content == b""


async def test_hop_by_hop_request_headers_dropped_and_forwarded_headers_set(
    gateway_factory, inventory
):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        status, _, body = await raw_request(
            gw.url,
            b"GET /api/movies/1 HTTP/1.1\r\n"
            b"Host: films.example:8082\r\n"
            b"Connection: keep-alive, X-Drop-Me\r\n"
            b"X-Drop-Me: 1\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"TE: trailers\r\n"
            b"Trailer: X-Checksum\r\n"
            b"X-Forwarded-For: 203.0.113.9\r\n"
            b"X-Forwarded-Proto: https\r\n"
            b"X-Keep: yes\r\n"
            b"Accept-Encoding: gzip\r\n"
            b"\r\n",
        )
    assert status == b"HTTP/1.1 200 OK"
    headers = dict(json.loads(body)["headers"])
    for dropped in (
        "x-drop-me",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
    ):
        assert dropped not in headers, dropped
    assert headers.get("connection", "keep-alive").lower() == "keep-alive"  # the client's own
    assert headers["x-keep"] == "yes"
    assert headers["accept-encoding"] == "gzip"
    assert headers["host"] == inventory.url.removeprefix("http://")
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "films.example:8082"
    assert "user-agent" not in headers  # no client-library header added


async def test_hop_by_hop_response_headers_dropped_and_the_rest_relayed_once(
    gateway_factory, raw_upstream
):
    answer = (
        b"HTTP/1.1 200 OK\r\n"
        b"Date: Mon, 01 Jan 2001 00:00:00 GMT\r\n"
        b"Server: inventory-standin\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 2\r\n"
        b"Connection: keep-alive, X-Hop-Resp\r\n"
        b"X-Hop-Resp: 1\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Authenticate: Basic\r\n"
        b"X-End: kept\r\n"
        b"\r\n{}"
    )
    async with (
        raw_upstream(lambda head, body, i: answer) as upstream,
        gateway_factory(inventory_urls=upstream.url) as gw,
    ):
        status, headers, body = await raw_request(
            gw.url, b"GET /api/movies/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"{}"
    names = [name for name, _ in headers]
    assert "x-hop-resp" not in names
    assert "keep-alive" not in names
    assert "proxy-authenticate" not in names
    assert dict(headers)["x-end"] == "kept"
    # The upstream's Date and Server, exactly once each (the server adds none of its own).
    assert [v for n, v in headers if n == "date"] == ["Mon, 01 Jan 2001 00:00:00 GMT"]
    assert [v for n, v in headers if n == "server"] == ["inventory-standin"]


async def test_head_and_body_arriving_apart_are_relayed_whole(gateway_factory, raw_upstream):
    parts = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n",
        b'{"id": 1,',
        b' "x": 2}',
    ]
    async with (
        raw_upstream(lambda head, body, i: parts) as upstream,
        gateway_factory(inventory_urls=upstream.url) as gw,
    ):
        responses = [await gw.client.get("/api/movies/1") for _ in range(3)]
    for response in responses:
        assert response.status_code == 200
        assert response.headers["content-length"] == "17"
        assert response.json() == {"id": 1, "x": 2}


async def test_a_small_body_that_never_comes_is_a_504(gateway_factory, raw_upstream):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    parts = [head, *[b""] * 30, b"0123456789"]  # the body ~1.5 s after the head
    async with (
        raw_upstream(lambda h, b, i: parts) as upstream,
        gateway_factory(
            inventory_urls=upstream.url,
            gateway_upstream_timeout=0.5,
        ) as gw,
    ):
        response = await gw.client.get("/api/movies/1")
    assert response.status_code == 504
    assert response.json() == {"error": "inventory timed out"}


async def test_large_bodies_are_streamed_both_ways(gateway_factory, inventory, pattern):
    upload = pattern(3 * 1024 * 1024 + 7)

    async def chunks():
        for start in range(0, len(upload), 100_000):
            yield upload[start : start + 100_000]

    async with gateway_factory(
        inventory_urls=inventory.url, gateway_max_body_bytes=16 * 1024 * 1024
    ) as gw:
        sized = await gw.client.post("/api/movies/upload", content=upload)
        chunked = await gw.client.post("/api/movies/upload", content=chunks())
        download = await gw.client.get("/api/movies/big?size=5000001")
        streamed = await gw.client.get("/api/movies/big?size=5000001&chunked=1")
    for response in (sized, chunked):
        assert response.status_code == 200
        assert response.json()["body_length"] == len(upload)
        assert response.json()["body_sha256"] == hashlib.sha256(upload).hexdigest()
    assert download.headers["content-length"] == "5000001"
    assert download.content == pattern(5000001)
    assert streamed.content == pattern(5000001)
    assert "content-length" not in streamed.headers


async def test_slow_upstream_is_a_504_after_the_upstream_timeout(gateway_factory):
    with Recorder() as upstream:  # /api/movies/hold is answered only after `release`
        async with gateway_factory(
            inventory_urls=upstream.url, gateway_upstream_timeout=UPSTREAM_TIMEOUT
        ) as gw:
            started = time.monotonic()
            response = await gw.client.get("/api/movies/hold")
            elapsed = time.monotonic() - started
            upstream.release.set()  # only now may the held answer go out: the 504 came first
            fine = await gw.client.get("/api/movies/1")
    assert response.status_code == 504
    assert response.json() == {"error": "inventory timed out"}
    assert elapsed >= UPSTREAM_TIMEOUT  # its own timeout fired, not an early give-up
    assert fine.status_code == 200  # the timed-out connection was not handed out again:
    assert fine.json()["target"] == "/api/movies/1"  # not the late answer of the held one
    assert fine.json()["connection"] != upstream.requests[0].connection
    assert not upstream.violations


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_closed_port_is_a_502_without_waiting_for_the_connect_timeout(
    gateway_factory, unused_port, method
):
    async with gateway_factory(
        inventory_urls=f"http://127.0.0.1:{unused_port()}", gateway_connect_timeout=LONG_TIMEOUT
    ) as gw:
        started = time.monotonic()
        response = await gw.client.request(method, "/api/movies", content=b"{}")
        elapsed = time.monotonic() - started
    assert response.status_code == 502
    assert response.json() == UNREACHABLE
    assert elapsed < LONG_TIMEOUT  # refused is final: not retried until the connect timeout


async def test_connect_timeout_is_a_502_within_the_connect_timeout(gateway_factory):
    # A listener whose accept queue is full: the kernel drops further SYNs, connects hang.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            async with gateway_factory(
                inventory_urls=f"http://127.0.0.1:{port}",
                gateway_connect_timeout=CONNECT_TIMEOUT,
                gateway_upstream_timeout=LONG_TIMEOUT,
            ) as gw:
                started = time.monotonic()
                response = await gw.client.get("/api/movies/1")
                elapsed = time.monotonic() - started
        finally:
            for filler in fillers:
                filler.close()
    assert response.status_code == 502
    assert response.json() == UNREACHABLE
    # The connect timeout fired, not the whole request's deadline.
    assert CONNECT_TIMEOUT <= elapsed < LONG_TIMEOUT


async def test_a_dead_upstream_among_two_loses_no_request(gateway_factory, inventory, unused_port):
    dead = f"http://127.0.0.1:{unused_port()}"
    async with gateway_factory(inventory_urls=f"{dead},{inventory.url}") as gw:
        gets = [await gw.client.get(f"/api/movies/{i}") for i in range(20)]
        post = await gw.client.post("/api/movies", content=b'{"title": "x"}')
    assert [r.status_code for r in gets] == [200] * 20
    assert post.status_code == 200  # refused before anything was sent: safe to try the next
    assert len(inventory.seen) == 21


async def test_requests_are_spread_round_robin(gateway_factory):
    from aiohttp import web

    hits = {"a": 0, "b": 0}

    def app(name: str) -> web.Application:
        async def handle(_: web.Request) -> web.Response:
            hits[name] += 1
            return web.json_response({"upstream": name})

        application = web.Application()
        application.router.add_get("/{tail:.*}", handle)
        return application

    runners = []
    urls = []
    for name in hits:
        runner = web.AppRunner(app(name))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        async with gateway_factory(inventory_urls=",".join(urls)) as gw:
            for _ in range(10):
                assert (await gw.client.get("/api/movies")).status_code == 200
    finally:
        for runner in runners:
            await runner.cleanup()
    assert hits == {"a": 5, "b": 5}


async def test_stale_keepalive_connection_is_retried_for_idempotent_methods_only(
    gateway_factory, raw_upstream
):
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"

    # Like a server closing an idle keep-alive connection just as the next request arrives:
    # every connection answers its first request, then closes on the second one.
    def respond(head: bytes, body: bytes, index: int) -> bytes | None:
        return ok if index == 0 else None

    async with (
        raw_upstream(respond) as upstream,
        gateway_factory(inventory_urls=upstream.url) as gw,
    ):
        first = await gw.client.get("/api/movies/1")
        second = await gw.client.get("/api/movies/1")  # its pooled connection is stale: retried
        stale_post = await gw.client.post("/api/movies", content=b"{}")  # stale: not replayed
        fresh_post = await gw.client.post("/api/movies", content=b"{}")  # new connection
    assert first.status_code == 200
    assert second.status_code == 200
    assert stale_post.status_code == 502
    assert stale_post.json() == UNREACHABLE
    assert fresh_post.status_code == 200
    assert sum(head.startswith(b"POST") for head in upstream.requests) == 2


async def test_unasked_for_bytes_never_answer_a_later_request(gateway_factory, raw_upstream):
    def answer(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    # Each answer is followed by a second, unrequested one on the same connection.
    def respond(head: bytes, body: bytes, index: int) -> bytes:
        path = head.split(b" ")[1]
        return answer(b"for " + path) + answer(b"unrequested")

    async with (
        raw_upstream(respond) as upstream,
        gateway_factory(inventory_urls=upstream.url) as gw,
    ):
        bodies = [(await gw.client.get(f"/api/movies/{i}")).content for i in range(3)]
    assert bodies == [b"for /api/movies/0", b"for /api/movies/1", b"for /api/movies/2"]


async def test_upstream_restart_keeps_the_gateway_working(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        assert (await gw.client.get("/api/movies/1")).status_code == 200
        await inventory.stop()
        down = await gw.client.get("/api/movies/1")
        await inventory.start()  # same port
        after = [(await gw.client.get("/api/movies/1")).status_code for _ in range(5)]
    assert down.status_code == 502
    assert after == [200] * 5


async def test_head_answer_has_no_body_and_connection_stays_usable(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        head = await gw.client.head("/api/movies/big?size=1000")
        get = await gw.client.get("/api/movies/big?size=1000")
    assert head.status_code == 200
    assert head.headers["content-length"] == "1000"
    assert head.content == b""
    assert len(get.content) == 1000


async def test_a_silent_pooled_connection_to_a_vanished_upstream_is_a_fast_502(gateway_factory):
    """A network cut leaves pooled connections silent, not closed: the gateway notices that no
    new connection can be opened either and answers 502 well before the upstream timeout."""
    requests = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                requests += 1
                if requests == 1:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    listener.close()  # the host "goes away": no new connection can be opened

    listener = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with gateway_factory(inventory_urls=url, gateway_upstream_timeout=30) as gw:
        assert (await gw.client.get("/api/movies/1")).status_code == 200  # pools the connection
        async with asyncio.timeout(10):  # far below the 30 s upstream timeout
            response = await gw.client.get("/api/movies/2")
    assert response.status_code == 502
    assert response.json() == {"error": "inventory unreachable"}
    assert requests == 2  # it was sent on the pooled connection, which never answered
