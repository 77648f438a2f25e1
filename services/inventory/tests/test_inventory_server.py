"""server.py as a real process on a real socket, and its one-write-per-response transport."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from inventory.coalescing import CoalescingTransport
from inventory.config import Settings

SERVER = Path(__file__).resolve().parents[1] / "server.py"


@pytest.fixture
def server(settings: Settings, migrated: None) -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"INVENTORY_PORT": str(port), "INVENTORY_WORKERS": "1"}
    process = subprocess.Popen([sys.executable, str(SERVER)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not _healthy(f"http://127.0.0.1:{port}/health"):
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert b"Traceback" not in stderr, stderr.decode()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: inventory\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _split(response: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines)
    return status, headers, body


def test_a_keep_alive_connection_answers_each_post_whole(server: tuple[str, int]) -> None:
    movie = orjson.dumps({"title": "One write", "description": "d"})
    with socket.create_connection(server, timeout=5) as sock:
        for _ in range(3):
            sock.sendall(_request("POST", "/api/movies", movie))
            received = sock.recv(65536)
            while b"\r\n\r\n" not in received or not received.endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, "connection closed early"
                received += chunk
            status, headers, body = _split(received)
            assert status == b"HTTP/1.1 201 Created"
            assert len(body) == int(headers[b"content-length"])
            created = orjson.loads(body)
            assert headers[b"location"] == f"/api/movies/{created['id']}".encode()


def test_pipelined_requests_are_answered_in_order(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(_request("GET", "/health") + _request("GET", "/api/movies/424242"))
        received = b""
        while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            received += chunk
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and b'"status":"ok"' in first
    assert second.startswith(b"404 ") and b"not found" in second


class RecordingTransport:
    """Stands in for uvloop's transport: records each write (pure logic, no socket)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


async def test_the_writes_of_one_loop_iteration_go_out_as_one() -> None:
    sent = RecordingTransport()
    transport = CoalescingTransport(sent, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert sent.writes == []
    await asyncio.sleep(0)  # the end of this iteration
    assert sent.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert sent.writes[1:] == [b"next"]
    assert transport.get_extra_info("peername") == "info peername"  # the rest passes through


async def test_close_sends_what_was_written_before_it() -> None:
    sent = RecordingTransport()
    transport = CoalescingTransport(sent, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last words")
    transport.close()
    assert (sent.writes, sent.closed) == ([b"last words"], True)
    await asyncio.sleep(0)
    assert sent.writes == [b"last words"]  # not sent twice
