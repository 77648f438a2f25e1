"""A stand-in inventory on a raw TCP socket that records every byte the gateway sends it.

Each request is judged strictly: its head must be clean HTTP/1.1 (CRLF only, no NUL, no
obs-fold, token names), carry exactly one Host (the upstream's own), exactly one X-Request-ID,
no hop-by-hop or framing header but Content-Length, a path under /api/movies without
dot-segments, encoded separators, NUL or fragment, and the bytes
must parse under h11 as exactly one complete request. Anything else is a violation (listed in
`violations`, the connection is dropped).

The answer is chosen by the target's query: `size=N` (N pattern bytes; `chunked=1`, `close=1`
for a close-delimited answer), `delay=S`, `bad=KIND` (a malformed answer, BAD_ANSWERS),
`extra=1` (an unsolicited second answer right behind), `interim=1` (a 100 Continue first),
`hop=1` (hop-by-hop headers), `stall=1` (half the body, the rest after `release`);
`/api/movies/hold` waits for `release` before answering. Otherwise a JSON echo of
what arrived. Answers from here carry X-Recorder-Seq and X-Recorder-Connection."""

import contextlib
import hashlib
import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import h11

_REQUEST_LINE = re.compile(rb"([A-Z]+) (/[\x21-\x7e]*) HTTP/1\.1")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Dot-segments, encoded separators, NUL, fragments: never in a path the gateway forwards.
_UNSAFE_PATH = re.compile(rb"(^|/)\.\.?(/|$)|%2e|%2f|%5c|%00|\\|#", re.IGNORECASE)
FORBIDDEN = {
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"expect",
}
BAD_ANSWERS = {
    "bare-lf": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-a: 1\nset-cookie: evil=1"
    b"\r\nContent-Length: 2\r\n\r\n{}",
    "nul": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-a: 1\x00set-cookie: evil=1"
    b"\r\nContent-Length: 2\r\n\r\n{}",
    "cr": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-a: 1\rset-cookie: evil=1"
    b"\r\nContent-Length: 2\r\n\r\n{}",
    "duplicate-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2"
    b"\r\nContent-Length: 40\r\nset-cookie: evil=1\r\n\r\n{}",
    "signed-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: +2"
    b"\r\nset-cookie: evil=1\r\n\r\n{}",
    "status-line": b"HTTP/1.1 2OO OK\r\nset-cookie: evil=1\r\nContent-Length: 2\r\n\r\n{}",
}
UNSOLICITED = b'HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{"unsolicited": 1}\n'


def pattern(size: int) -> bytes:
    block = hashlib.sha256(b"gateway").digest() * 2048
    return (block * (size // len(block) + 1))[:size]


class Violation(Exception):
    pass


class Fields:
    """A parsed message's header fields, lower-case names in order, and their lookup."""

    headers: list[tuple[str, str]]

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass
class Seen(Fields):
    """One request as the upstream received it."""

    seq: int
    connection: int
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes = field(repr=False)


@dataclass
class UpstreamConnection:
    index: int
    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    unfinished: bytearray = field(default_factory=bytearray)
    requests: list[Seen] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    answering: threading.Event = field(default_factory=threading.Event)


def h11_problem(raw: bytes) -> str | None:
    """None when h11, as a server, reads `raw` as exactly one complete request."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=4 * 1024 * 1024)
    conn.receive_data(raw)
    events = []
    try:
        while (event := conn.next_event()) is not h11.NEED_DATA:
            events.append(type(event).__name__)
            if isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as error:
        return f"h11: {error}"
    if not events or events[0] != "Request" or events[-1] != "EndOfMessage":
        return f"h11 read {events}"
    if conn.trailing_data[0]:
        return f"h11 saw {len(conn.trailing_data[0])} bytes after the request"
    return None


def parse_request(buffer: bytearray, host: bytes) -> tuple[bytes, bytes, list, bytes] | None:
    """(request line, raw request, headers, body) of the first request in `buffer`; None when
    it is not complete yet; Violation when it is not what a strict proxy writes."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if b"\n\n" in buffer or b"\r\r" in buffer or b"\x00" in buffer:
            raise Violation(f"unclean head {bytes(buffer[:300])!r}")
        return None
    head = bytes(buffer[: end + 2])
    if (
        b"\x00" in head
        or head.count(b"\n") != head.count(b"\r\n")
        or b"\r" in head.replace(b"\r\n", b"")
    ):
        raise Violation(f"NUL or bare CR/LF in {head!r}")
    request_line, *lines = head[:-2].split(b"\r\n")
    if not _REQUEST_LINE.fullmatch(request_line):
        raise Violation(f"request line {request_line!r}")
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or re.search(rb"[\x00-\x08\x0a-\x1f]", value):
            raise Violation(f"header line {line!r}")
        headers.append((name.lower(), value.strip(b" \t")))
    names = [name for name, _ in headers]
    hop = [n for n in names if n in FORBIDDEN or n.startswith(b"proxy-")]
    if hop:
        raise Violation(f"forwarded {hop}: {head!r}")
    if [v for n, v in headers if n == b"host"] != [host]:
        raise Violation(f"Host is not exactly {host!r}: {head!r}")
    if names.count(b"x-request-id") != 1 or names.count(b"content-length") > 1:
        raise Violation(f"X-Request-ID or Content-Length not single: {head!r}")
    length = [v for n, v in headers if n == b"content-length"]
    if length and not length[0].isdigit():
        raise Violation(f"Content-Length {length[0]!r}")
    size = int(length[0]) if length else 0
    if len(buffer) < end + 4 + size:
        return None
    raw = bytes(buffer[: end + 4 + size])
    target = _REQUEST_LINE.fullmatch(request_line)[2]
    path = target.partition(b"?")[0]
    if not path.startswith(b"/api/movies") or _UNSAFE_PATH.search(path) or b"#" in target:
        raise Violation(f"unsafe target: {request_line!r}")
    if problem := h11_problem(raw):
        raise Violation(f"{problem}: {raw[:300]!r}")
    return request_line, raw, headers, raw[end + 4 :]


class Recorder:
    """The recording upstream: `with Recorder() as recorder:` listens on 127.0.0.1."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}".encode()
        self.lock = threading.Lock()
        self.connections: list[UpstreamConnection] = []
        self.requests: list[Seen] = []
        self.violations: list[str] = []
        self.release = threading.Event()

    def __enter__(self) -> "Recorder":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.sock.close()

    # --- what tests ask -----------------------------------------------------------------------
    def mark(self) -> tuple[int, int]:
        with self.lock:
            return len(self.requests), len(self.connections)

    def requests_since(self, mark: tuple[int, int]) -> list[Seen]:
        with self.lock:
            return self.requests[mark[0] :]

    def connections_since(self, mark: tuple[int, int]) -> list[UpstreamConnection]:
        with self.lock:
            return self.connections[mark[1] :]

    def unfinished_bytes(self) -> bytes:
        """Bytes of requests not (yet) complete, on connections still open."""
        with self.lock:
            return b"".join(bytes(c.unfinished) for c in self.connections if not c.closed.is_set())

    def wait_for_requests(self, mark: tuple[int, int], count: int, within: float = 5) -> list[Seen]:
        deadline = time.monotonic() + within
        while len(seen := self.requests_since(mark)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream got {len(seen)} of {count} requests: {seen}")
            time.sleep(0.01)
        return seen

    # --- serving ------------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                conn = UpstreamConnection(len(self.connections), sock)
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: UpstreamConnection) -> None:
        try:
            while True:
                try:
                    parsed = parse_request(conn.unfinished, self.host)
                except Violation as violation:
                    self.violations.append(f"connection {conn.index}: {violation}")
                    return
                if parsed is None:
                    chunk = conn.sock.recv(262144)
                    if not chunk:
                        if conn.unfinished:
                            self.violations.append(
                                f"connection {conn.index} closed inside a request: "
                                f"{bytes(conn.unfinished[:300])!r}"
                            )
                        return
                    conn.received += chunk
                    conn.unfinished += chunk
                    continue
                request_line, raw, headers, body = parsed
                del conn.unfinished[: len(raw)]
                if not self._answer(conn, request_line, raw, headers, body):
                    return
        except OSError:
            return
        finally:
            conn.closed.set()
            conn.sock.close()

    def _answer(self, conn, request_line: bytes, raw: bytes, headers, body: bytes) -> bool:
        method, target, _ = request_line.decode("latin-1").split(" ")
        with self.lock:
            seen = Seen(
                len(self.requests),
                conn.index,
                method,
                target,
                [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                body,
                raw,
            )
            self.requests.append(seen)
            conn.requests.append(seen)
        params = {k: v[-1] for k, v in parse_qs(target.partition("?")[2]).items()}
        conn.answering.set()
        if target.startswith("/api/movies/hold") and not self._hold(conn):
            return False
        if "delay" in params:
            time.sleep(float(params["delay"]))  # an upstream that is slow on purpose
        if "bad" in params:
            conn.sock.sendall(BAD_ANSWERS[params["bad"]])
            return True
        answer = self._write_answer(seen, params)
        if "stall" in params:  # half the body, then nothing until `release`
            half = len(answer) - int(params.get("size", 0)) // 2
            conn.sock.sendall(answer[:half])
            if not self._hold(conn):
                return False
            answer = answer[half:]
        conn.sock.sendall(answer)
        return "close" not in params

    def _hold(self, conn: UpstreamConnection) -> bool:
        """Waits for `release` while watching the connection: False when the gateway closes it."""
        deadline = time.monotonic() + 30
        while not self.release.wait(0.01) and time.monotonic() < deadline:
            if select.select([conn.sock], [], [], 0)[0] and not conn.sock.recv(1, socket.MSG_PEEK):
                return False
        return True

    def _write_answer(self, seen: Seen, params: dict[str, str]) -> bytes:
        if "size" in params:
            body, kind = pattern(int(params["size"])), b"application/octet-stream"
        else:
            echo = {
                "seq": seen.seq,
                "connection": seen.connection,
                "method": seen.method,
                "target": seen.target,
                "headers": seen.headers,
                "body_length": len(seen.body),
                "body_sha256": hashlib.sha256(seen.body).hexdigest(),
                "late": seen.target.startswith("/api/movies/hold"),
            }
            body, kind = json.dumps(echo).encode(), b"application/json"
        head = [
            b"HTTP/1.1 200 OK",
            b"Content-Type: " + kind,
            b"X-Recorder-Seq: %d" % seen.seq,
            b"X-Recorder-Connection: %d" % seen.connection,
        ]
        if "hop" in params:
            head += [b"Connection: x-hop", b"X-Hop: 1", b"Keep-Alive: timeout=1", b"Upgrade: h2c"]
        if "chunked" in params:
            head.append(b"Transfer-Encoding: chunked")
            step = 65536
            framed = b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
                for i in range(0, len(body), step)
            )
            payload = framed + b"0\r\n\r\n"
        elif "close" in params:
            head.append(b"Connection: close")
            payload = body
        else:
            head.append(b"Content-Length: %d" % len(body))
            payload = body
        answer = b"\r\n".join(head) + b"\r\n\r\n" + (b"" if seen.method == "HEAD" else payload)
        if "interim" in params:
            answer = b"HTTP/1.1 100 Continue\r\n\r\n" + answer
        if "extra" in params:
            answer += UNSOLICITED
        return answer
