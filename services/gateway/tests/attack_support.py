"""The attacker's kit: the real gateway as a process (`python server.py`; the rate-limit and
metrics tests start theirs here too), an upstream that records every byte it receives and judges
each request strictly (recording_upstream.py), and a raw-socket client with a small strict
reader of answers.

GATEWAY_TEST_SERVER_DIR (default: this service) runs another checkout's gateway, e.g. a worktree
of an older commit, to prove that these tests fail there."""

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .recording_upstream import Fields, Recorder

ROOT = Path(__file__).resolve().parents[3]
SERVER_DIR = Path(os.environ.get("GATEWAY_TEST_SERVER_DIR", ROOT / "services" / "gateway"))

# What a test gateway is started with unless a module says otherwise: small timeouts.
TEST_SETTINGS = {
    "GATEWAY_HEADER_TIMEOUT": 1,
    "GATEWAY_BODY_TIMEOUT": 1,
    "GATEWAY_UPSTREAM_TIMEOUT": 1,
    "GATEWAY_KEEP_ALIVE_TIMEOUT": 2,
    "GATEWAY_MAX_HEADER_BYTES": 16384,
    "GATEWAY_MAX_BODY_BYTES": 1024 * 1024,
    "GATEWAY_MAX_CONNECTIONS": 1000,
}


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(condition, within: float, what: str):
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.01)
    return result


# --- the gateway as a process ---------------------------------------------------------------
@dataclass
class GatewayProcess:
    port: int
    process: subprocess.Popen
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _environment(port: int, inventory_url: str, settings: dict) -> dict[str, str]:
    env = {
        **os.environ,
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "1",
        "INVENTORY_URLS": inventory_url,
        "BILLING_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "GATEWAY_API_KEYS": "",
        "GATEWAY_RATE_LIMIT": "0",
        **{name: str(value) for name, value in {**TEST_SETTINGS, **settings}.items()},
    }
    if "GATEWAY_TEST_SERVER_DIR" in os.environ:  # that checkout's code wins over the install
        libs = SERVER_DIR.parents[1] / "libs" / "crud_common" / "src"
        env["PYTHONPATH"] = f"{SERVER_DIR / 'src'}{os.pathsep}{libs}"
    return env


def _answers_openapi(port: int) -> bool:
    try:
        with Client(port, timeout=1) as client:
            client.send(b"GET /openapi.json HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
            answer = client.answer(within=2)
            return answer is not None and answer.status == 200
    except (OSError, AssertionError):
        return False


@contextlib.contextmanager
def running_gateway(log_dir: Path, inventory_url: str, **settings) -> Iterator[GatewayProcess]:
    """`python server.py` on a free port in front of `inventory_url`, with TEST_SETTINGS and
    `settings` (variables: GATEWAY_WORKERS=2); yields once it answers, stops it after."""
    port = free_port()
    log = log_dir / f"gateway-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "server.py"],
            cwd=SERVER_DIR,
            env=_environment(port, inventory_url, settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gateway = GatewayProcess(port, process, log)
    try:
        deadline = time.monotonic() + 30
        while not _answers_openapi(port):
            if process.poll() is not None:
                raise AssertionError(f"the gateway exited:\n{gateway.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not answer /openapi.json:\n{log}")
            time.sleep(0.05)
        yield gateway
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def gateway_fixtures(**settings):
    """The module-scoped fixtures `recorder` (a Recorder) and `gateway` (the port of a gateway
    started with `settings` in front of it); a test module binds them by those two names:
    `recorder, gateway = gateway_fixtures(GATEWAY_UPSTREAM_TIMEOUT=2)`."""

    @pytest.fixture(scope="module")
    def recorder():
        with Recorder() as recorder:
            yield recorder

    @pytest.fixture(scope="module")
    def gateway(recorder, tmp_path_factory):
        directory = tmp_path_factory.mktemp("gateway")
        with running_gateway(directory, recorder.url, **settings) as gateway:
            yield gateway.port

    return recorder, gateway


# --- the client side --------------------------------------------------------------------------
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [\x20-\x7e\x80-\xff]*")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class Answer(Fields):
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{len(values)} {name} headers in {self.head!r}"
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)

    @property
    def from_upstream(self) -> bool:
        return self.header("x-recorder-seq") is not None


def strict_head_problem(head: bytes) -> str | None:
    """Why these head bytes (ending in CRLF CRLF) are not a clean HTTP/1.1 head, or None."""
    if b"\x00" in head:
        return "NUL"
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n"):
        return "bare CR or LF"
    for line in head[:-4].split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return f"bad header line {line!r}"
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value):
            return f"control byte in {line!r}"
    return None


class Client:
    """One raw TCP connection to the gateway; `answer()` reads one answer strictly."""

    def __init__(self, port: int, *, timeout: float = 5, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = bytearray()
        self.received = bytearray()
        self.eof = False
        self.reset = False
        self.piece = 65536

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_in_background(self, data: bytes) -> threading.Thread:
        """Sends while the test reads; a gateway that stops reading may end it (ignored)."""

        def run() -> None:
            with contextlib.suppress(OSError):
                self.sock.sendall(data)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def shut_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _more(self, deadline: float) -> bool:
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"nothing more within the deadline; have {bytes(self.buffer)!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(self.piece)
        except TimeoutError:
            raise AssertionError(
                f"nothing more within the deadline; have {bytes(self.buffer[:300])!r}"
            ) from None
        except ConnectionResetError:
            self.reset, chunk = True, b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        self.received += chunk
        return True

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self._more(deadline):
                raise AssertionError(f"closed inside a body: {len(self.buffer)} of {size} bytes")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._more(deadline):
                raise AssertionError("closed inside a chunked body")
        end = self.buffer.index(b"\r\n")
        return self._take(end + 2, deadline)[:-2]

    def _chunked(self, deadline: float) -> bytes:
        body = bytearray()
        while True:
            size_line = self._line(deadline)
            assert re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_line), f"chunk size {size_line!r}"
            size = int(size_line, 16)
            if size == 0:
                while self._line(deadline):  # trailers, up to the blank line
                    pass
                return bytes(body)
            body += self._take(size, deadline)
            assert self._take(2, deadline) == b"\r\n", "chunk not followed by CRLF"

    def answer(self, *, head_only: bool = False, within: float = 5) -> Answer | None:
        """The next answer, or None when the connection closes before any byte of one."""
        deadline = time.monotonic() + within
        while b"\r\n\r\n" not in self.buffer:
            if not self._more(deadline):
                if not self.buffer:
                    return None
                raise AssertionError(f"closed inside an answer head: {bytes(self.buffer)!r}")
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = self._take(end, deadline)
        problem = strict_head_problem(head)
        assert problem is None, f"answer head with {problem}: {head!r}"
        status_line, *lines = head[:-4].split(b"\r\n")
        match = _STATUS_LINE.fullmatch(status_line)
        assert match, f"status line {status_line!r}"
        status = int(match[1])
        headers = []
        for line in lines:
            name, _, value = line.partition(b":")
            headers.append((name.decode().lower(), value.strip(b" \t").decode("latin-1")))
        answer = Answer(status, headers, b"", head)
        lengths = answer.all("content-length")
        if head_only or status in (204, 304) or status < 200:
            return answer
        if answer.header("transfer-encoding") is not None:
            assert answer.header("transfer-encoding") == "chunked", head
            assert not lengths, f"Content-Length with Transfer-Encoding: {head!r}"
            answer.body = self._chunked(deadline)
        elif lengths:
            assert len(lengths) == 1 and lengths[0].isdigit(), head
            answer.body = self._take(int(lengths[0]), deadline)
        else:
            while self._more(deadline):
                pass
            answer.body, self.buffer = bytes(self.buffer), bytearray()
        return answer

    def answers_until_closed(self, within: float = 5) -> list[Answer]:
        deadline = time.monotonic() + within
        answers = []
        while (answer := self.answer(within=max(deadline - time.monotonic(), 0.01))) is not None:
            answers.append(answer)
        return answers

    def closed(self, within: float = 5) -> bool:
        """True once the gateway closes this connection; fails on any byte before that."""
        deadline = time.monotonic() + within
        try:
            while self._more(deadline):
                pass
        except AssertionError:
            assert not self.buffer, f"unexpected bytes: {bytes(self.buffer[:300])!r}"
            return False
        assert not self.buffer, f"unexpected bytes: {bytes(self.buffer[:300])!r}"
        return True


def exchange(port: int, data: bytes, *, count: int = 1, head_only: bool = False) -> list[Answer]:
    """Sends `data` on a fresh connection; reads up to `count` answers (fewer if it closes)."""
    with Client(port) as client:
        client.send(data)
        answers = []
        for _ in range(count):
            answer = client.answer(head_only=head_only)
            if answer is None:
                break
            answers.append(answer)
        return answers


def assert_gateway_error(answer: Answer | None, status: int, error: str | None = None) -> None:
    """An answer the gateway made itself: this status, JSON {"error": ...}, framed, traced."""
    assert answer is not None, "the connection closed without an answer"
    assert answer.status == status, (answer.status, answer.body[:300])
    assert not answer.from_upstream, "this answer came from the upstream"
    assert (answer.header("content-type") or "").startswith("application/json"), answer.head
    assert answer.header("content-length") == str(len(answer.body)), answer.head
    assert answer.header("x-request-id"), answer.head
    message = answer.json()["error"]
    assert isinstance(message, str) and message, answer.body
    if error is not None:
        assert message == error


def assert_refused_and_closed(client: Client, status: int, error: str | None = None) -> None:
    """A framing refusal: the error answer says `Connection: close`, then the socket closes."""
    answer = client.answer()
    assert_gateway_error(answer, status, error)
    assert answer is not None and answer.header("connection") == "close", answer.head
    assert client.closed(), "the gateway kept the connection open"


def barrier(port: int, recorder: Recorder) -> None:
    """One ordinary request answered end to end: what was forwarded before it has arrived."""
    answer = exchange(port, b"GET /api/movies/barrier HTTP/1.1\r\nHost: b\r\n\r\n")[0]
    assert answer.status == 200 and answer.json()["target"] == "/api/movies/barrier"


def assert_nothing_forwarded(port: int, recorder: Recorder, mark) -> None:
    """Since `mark` the upstream got nothing but a barrier request: no bytes of the attack."""
    barrier(port, recorder)
    forwarded = [(r.method, r.target) for r in recorder.requests_since(mark)]
    assert forwarded == [("GET", "/api/movies/barrier")], forwarded
    assert recorder.unfinished_bytes() == b"", recorder.unfinished_bytes()[:300]


def assert_refused(
    port: int,
    recorder: Recorder,
    request: bytes,
    status: int,
    error: str | None = None,
    *,
    closes: bool = False,
) -> None:
    """`request` on a fresh connection gets the gateway's own `status` answer (and `error`); with
    `closes`, a framing refusal: `Connection: close`, then the socket closes. Nothing of it reaches
    the upstream. Sent from a thread: the gateway may answer before it has read it all."""
    mark = recorder.mark()
    with Client(port) as client:
        sender = client.send_in_background(request)
        if closes:
            assert_refused_and_closed(client, status, error)
        else:
            assert_gateway_error(client.answer(), status, error)
        sender.join(5)
    assert_nothing_forwarded(port, recorder, mark)
