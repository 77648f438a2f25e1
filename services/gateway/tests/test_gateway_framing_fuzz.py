"""Fuzzing the gateway's door (issue 12): thousands of random and mutated request heads from a
seeded generator, each on its own connection (half-closed after sending), and one invariant: the
upstream only ever sees requests the gateway meant to send. Every forwarded request is judged by
the recorder (one complete clean request, one Host, no hop-by-hop or framing header but its own
Content-Length, a safe target under /api/movies), each answer from the upstream reaches exactly
the client whose request it was, and nothing is forwarded that no client gets an answer for."""

import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from .attack_support import Client, barrier, gateway_fixtures

SEED = 20261203
CASES = 12000
TIME_BUDGET = 50.0  # seconds; the run stops generating after this (the count is printed)

METHODS = [b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"]
TARGETS = [
    b"/api/movies",
    b"/api/movies/",
    b"/api/movies/7",
    b"/api/movies?title=The%20Matrix&limit=2",
    b"/api/movies?title=Am%C3%A9lie",
    b"/api/movies/?title=a%2Fb&offset=10",
]
BAD_TARGETS = [
    b"http://evil/api/movies",
    b"//evil/api/movies",
    b"evil:80",
    b"*",
    b"/api/movies/../x",
    b"/api/movies/%2e%2e/x",
    b"/api/movies%2fx",
    b"/api/movies/%5c",
    b"/api/movies/%00",
    b"/api/movies#x",
    b"/api/movies/%zz",
    b"/health/../api/movies",
    b"/api/movies/\xff",
    b"/api/movies x",
]
VERSIONS = [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1 ", b""]
BAD_METHODS = [b"get", b"TRACE", b"CONNECT", b"G ET", b"GET\x00", b"X" * 40, b"PROPFIND"]
INJECTIONS = [b"\r", b"\n", b"\x00", b" ", b"\t", b"\r\n ", b":", b"\x0b", b"\x7f", b"\xff"]
LENGTHS = ["{n}", "{m}", "-{n}", "+{n}", "0x{n:x}", "{n}, {n}", "{n} {n}", " {n} ", "", "1" * 25]
ENCODINGS = [
    b"chunked",
    b"Chunked",
    b" chunked ",
    b"xchunked",
    b"chunked, identity",
    b"identity",
    b"gzip, chunked",
    b"chunked\x00",
    b"chunked\r\n x",
]
HOP = [
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"Expect: nonsense",
    b"TE: trailers",
    b"Trailer: X-T",
    b"Keep-Alive: timeout=9",
    b"Proxy-Connection: keep-alive",
    b"Proxy-Authorization: Basic eDp4",
    b"X-Forwarded-Host: evil",
    b"X-Request-ID: fuzz\x01",
]
CONNECTION_TOKENS = [b"close", b"keep-alive", b"content-length", b"host", b"transfer-encoding"]
CONNECTION_TOKENS += [b"upgrade", b"x-case", b"te", b"x-forwarded-for"]
SMUGGLED = b"DELETE /api/movies HTTP/1.1\r\nHost: x\r\nX-Smuggled: 1\r\n\r\n"


class Request:
    def __init__(self, rng: random.Random, case: int) -> None:
        self.method = rng.choice(METHODS)
        self.target = rng.choice(TARGETS)
        self.version = b"HTTP/1.1"
        self.headers = [b"Host: a", b"X-Case: %d" % case, b"Accept: */*"]
        self.body = b""
        if self.method in (b"POST", b"PUT", b"PATCH") or rng.random() < 0.1:
            self.body = rng.choice([b"{}", b'{"title": "t"}', SMUGGLED, b"x" * 3000])
            self.headers.append(b"Content-Length: %d" % len(self.body))

    def render(self) -> bytes:
        head = [self.method + b" " + self.target + b" " + self.version, *self.headers]
        return b"".join(line + b"\r\n" for line in head) + b"\r\n" + self.body


def _drop(request: Request, name: bytes) -> None:
    request.headers = [h for h in request.headers if not h.lower().startswith(name + b":")]


def _mutate(rng: random.Random, request: Request) -> None:
    kind = rng.randrange(12)
    headers = request.headers
    if kind == 0 and headers:
        headers.insert(rng.randrange(len(headers) + 1), rng.choice(headers))
    elif kind == 1 and headers:
        index = rng.randrange(len(headers))
        name, _, value = headers[index].partition(b":")
        headers[index] = bytes(
            c ^ 32 if rng.random() < 0.5 and chr(c).isalpha() else c for c in name
        )
        headers[index] += b":" + value
    elif kind == 2:
        index = rng.randrange(len(headers) + 1)
        line = headers[index - 1] if index else request.method
        at = rng.randrange(len(line) + 1)
        line = line[:at] + rng.choice(INJECTIONS) + line[at:]
        if index:
            headers[index - 1] = line
        else:
            request.method = line
    elif kind == 3 and headers:
        headers.insert(rng.randrange(1, len(headers) + 1), rng.choice([b" folded", b"\tx"]))
    elif kind == 4:
        _drop(request, b"content-length")
        value = rng.choice(LENGTHS).format(n=len(request.body), m=len(request.body) + 3)
        headers.append(b"Content-Length:" + value.encode())
    elif kind == 5:
        encoding = rng.choice(ENCODINGS)
        if rng.random() < 0.7:
            _drop(request, b"content-length")
        headers.append(b"Transfer-Encoding: " + encoding)
        if rng.random() < 0.8:
            trailer = rng.choice([b"", b"X-Request-ID: evil\r\n", b"Host: evil\r\n"])
            size = rng.choice([b"%x" % len(request.body), b"-1", b"0x2", b"f" * 17])
            request.body = size + b"\r\n" + request.body + b"\r\n0\r\n" + trailer + b"\r\n"
    elif kind == 6:
        request.version = rng.choice(VERSIONS)
    elif kind == 7:
        request.target = rng.choice(BAD_TARGETS)
    elif kind == 8:
        request.method = rng.choice(BAD_METHODS)
    elif kind == 9:
        tokens = rng.sample(CONNECTION_TOKENS, rng.randint(1, 3))
        headers.append(b"Connection: " + b", ".join(tokens))
    elif kind == 10:
        headers.append(rng.choice(HOP))
    else:
        _drop(request, b"host")
        headers.append(rng.choice([b"", b"Host: a", b"Host: b", b"Host: a b", b"Host: @x"]))
        if headers[-1] == b"":
            headers.pop()


def fuzz_case(rng: random.Random, case: int) -> bytes:
    requests = [Request(rng, case) for _ in range(2 if rng.random() < 0.3 else 1)]
    for request in requests:
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            _mutate(rng, request)
    data = b"".join(request.render() for request in requests)
    if rng.random() < 0.1:  # a bare LF somewhere, or a request cut short
        at = data.find(b"\r\n", rng.randrange(len(data)))
        data = data[:at] + data[at + 1 :] if at >= 0 else data
    if rng.random() < 0.05:
        data = data[: rng.randrange(len(data))]
    return data


recorder, gateway = gateway_fixtures(GATEWAY_UPSTREAM_TIMEOUT=2, GATEWAY_MAX_BODY_BYTES=65536)


def run_case(port: int, case: int, data: bytes) -> list[int]:
    """Sends one fuzz case, half-closes, returns the upstream seqs of the answers it got."""
    with Client(port) as client:
        try:
            client.send(data)
            client.shut_write()
        except OSError:
            pass  # the gateway refused and closed while we were still sending
        answers = client.answers_until_closed(within=8)
    seqs = []
    for answer in answers:
        assert answer.status != 500 and answer.status < 600, (case, data, answer)
        if answer.from_upstream:
            echo = answer.json()
            assert echo["target"].encode() in data, (case, data, echo)
            cases = [
                re.sub(r"\D", "", value) for name, value in echo["headers"] if name == "x-case"
            ]
            assert set(cases) <= {str(case)}, ("another client's answer", case, data, echo)
            seqs.append(echo["seq"])
    return seqs


def test_upstream_only_ever_sees_requests_the_gateway_meant_to_send(gateway, recorder, capsys):
    rng = random.Random(SEED)
    cases = [fuzz_case(rng, case) for case in range(CASES)]
    mark = recorder.mark()
    started = time.monotonic()
    answered: list[int] = []
    done = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for start in range(0, CASES, 200):
            batch = range(start, min(start + 200, CASES))
            for seqs in pool.map(lambda i: run_case(gateway, i, cases[i]), batch):
                answered += seqs
            done = batch.stop
            if time.monotonic() - started > TIME_BUDGET:
                break
    elapsed = time.monotonic() - started
    barrier(gateway, recorder)
    forwarded = [r.seq for r in recorder.requests_since(mark) if r.target != "/api/movies/barrier"]
    with capsys.disabled():
        print(f"\nfuzz: {done} cases in {elapsed:.1f}s, {len(forwarded)} requests forwarded")
    assert recorder.violations == []
    assert Counter(answered) == Counter(forwarded), "forwarded requests without their answer"
    assert recorder.unfinished_bytes() == b""
    assert done >= 1000
