"""The gateway as an attacker meets it (issue 12): exact bytes on raw sockets against the real
gateway process, and what the recording upstream actually received checked together with what
the client got. The recorder also judges every forwarded request (recording_upstream.py)."""

import select

import pytest

from .attack_support import (
    Client,
    assert_gateway_error,
    assert_nothing_forwarded,
    assert_refused,
    assert_refused_and_closed,
    barrier,
    exchange,
    gateway_fixtures,
    running_gateway,
    sha256,
    wait_until,
)
from .recording_upstream import BAD_ANSWERS

HOST = b"Host: a\r\n"


recorder, gateway = gateway_fixtures()


@pytest.fixture(scope="module")
def patient(recorder, tmp_path_factory):
    """Waits 10 s for an upstream answer: a test can watch a held request."""
    directory = tmp_path_factory.mktemp("patient")
    with running_gateway(directory, recorder.url, GATEWAY_UPSTREAM_TIMEOUT=10) as gateway:
        yield gateway.port


@pytest.fixture(scope="module")
def bounded(recorder, tmp_path_factory):
    """At most four client connections, kept open long enough to hold them."""
    settings = {
        "GATEWAY_MAX_CONNECTIONS": 4,
        "GATEWAY_KEEP_ALIVE_TIMEOUT": 10,
        "GATEWAY_HEADER_TIMEOUT": 10,
    }
    with running_gateway(tmp_path_factory.mktemp("bounded"), recorder.url, **settings) as gateway:
        yield gateway.port


@pytest.fixture(autouse=True)
def upstream_judged(recorder):
    recorder.release.clear()
    yield
    recorder.release.set()
    violations = list(recorder.violations)
    recorder.violations.clear()
    assert violations == [], "the upstream received requests a strict gateway never writes"
    assert recorder.unfinished_bytes() == b"", "bytes beyond the last forwarded request"


def get(target: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + HOST + extra + b"\r\n"


def assert_each_gets_its_own_answer(port: int, after: bytes, count: int = 4) -> list:
    """`count` requests after an incident, one per client connection, each answered with the
    answer to itself: no pooled upstream connection the incident spoiled serves them."""
    answers = []
    for index in range(count):
        target = b"/api/movies/after-%s-%d" % (after, index)
        answer = exchange(port, get(target))[0]
        assert answer.json()["target"] == target.decode(), answer.body[:300]
        answers.append(answer)
    return answers


# --- issue 12, items 1 and 2: smuggling through Connection and Upgrade --------------------------
def test_connection_naming_content_length_cannot_smuggle_a_second_request(gateway, recorder):
    smuggled = b"DELETE /api/movies HTTP/1.1\r\nHost: x\r\nX-Smuggled: 1\r\n\r\n"
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(
            b"GET /api/movies HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
        )
        assert client.answer().json()["target"] == "/api/movies"
        client.send(get(b"/api/movies/next"))
        assert client.answer().json()["target"] == "/api/movies/next"
    barrier(gateway, recorder)
    seen = recorder.requests_since(mark)
    assert [(r.method, r.target) for r in seen] == [
        ("GET", "/api/movies"),
        ("GET", "/api/movies/next"),
        ("GET", "/api/movies/barrier"),
    ]
    assert seen[0].body == smuggled
    assert seen[0].all("content-length") == [str(len(smuggled))]


@pytest.mark.parametrize(
    "upgrade",
    [
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 10\r\n",
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABk\r\n",
    ],
    ids=["with-length-no-body", "websocket", "h2c"],
)
def test_upgrade_is_refused_and_poisons_no_pooled_connection(gateway, recorder, upgrade):
    assert_refused(gateway, recorder, get(b"/api/movies", upgrade), 400, closes=True)
    assert_each_gets_its_own_answer(gateway, b"upgrade", 3)


# --- items 3 to 6: answers reach the right client, pipelining, disconnects ----------------------
def test_late_answer_after_a_504_never_reaches_the_next_client(gateway, recorder):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(get(b"/api/movies/hold"))
        assert_gateway_error(client.answer(), 504)
    held = recorder.requests_since(mark)[0].connection
    recorder.release.set()  # the late answer is written if that connection is still open
    answers = assert_each_gets_its_own_answer(gateway, b"timeout")
    assert [answer.json()["late"] for answer in answers] == [False] * 4
    wait_until(recorder.connections[held].closed.is_set, 3, "the timed-out connection to close")


def test_answer_stalled_mid_body_is_cut_off_and_its_connection_never_reused(gateway, recorder):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(get(b"/api/movies/stalled?size=100000&stall=1"))
        try:  # a 504 if the gateway still holds the head, else the body is cut off
            assert_gateway_error(client.answer(within=8), 504)
        except AssertionError as cut:
            assert "closed inside a body" in str(cut)
    stalled = recorder.requests_since(mark)[0].connection
    wait_until(recorder.connections[stalled].closed.is_set, 3, "the stalled connection to close")
    recorder.release.set()
    assert_each_gets_its_own_answer(gateway, b"stall")


PIPELINE = [
    (b"GET /api/movies/slow?delay=0.2 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", b""),
    (
        b"POST /api/movies/p HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n",
        "POST",
        b"p" * 3000,
    ),
    (b"GET /api/movies?title=The%20Matrix&x=a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", "GET", b""),
    (b"HEAD /api/movies/h HTTP/1.1\r\nHost: a\r\n\r\n", "HEAD", b""),
    (
        b"PUT /api/movies/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n",
        "PUT",
        b"abcdef",
    ),
    (b"GET /api/movies/plain HTTP/1.1\r\nHost: a\r\n\r\n", "GET", b""),
    (b"DELETE /api/movies/d HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}", "DELETE", b"{}"),
]


def _target(request: bytes) -> str:
    return request.split(b" ")[1].decode()


@pytest.mark.parametrize("piece", [0, 1, 7, 1000], ids=["one-send", "bytes", "7", "1000"])
def test_pipelined_requests_are_answered_in_order_with_bodies_intact(gateway, recorder, piece):
    data = b"".join(
        request if b"chunked" in request else request + body for request, _, body in PIPELINE
    )
    mark = recorder.mark()
    with Client(gateway) as client:
        for start in range(0, len(data), piece or len(data)):
            client.send(data[start : start + (piece or len(data))])
        for request, method, body in PIPELINE:
            answer = client.answer(head_only=method == "HEAD")
            assert answer.status == 200
            if method != "HEAD":
                echo = answer.json()
                assert (echo["method"], echo["target"]) == (method, _target(request))
                assert (echo["body_length"], echo["body_sha256"]) == (len(body), sha256(body))
    seen = recorder.wait_for_requests(mark, len(PIPELINE))
    assert sorted((r.method, r.target, r.body) for r in seen) == sorted(
        (method, _target(request), body) for request, method, body in PIPELINE
    )


def test_half_closed_client_still_gets_its_answers(patient, recorder):
    with Client(patient) as client:
        client.send(get(b"/api/movies/one?delay=0.3") + get(b"/api/movies/two"))
        client.shut_write()
        # interim 1xx answers are allowed (RFC 9110 §15.2: clients parse unexpected ones)
        answers = [a for a in client.answers_until_closed() if a.status >= 200]
    assert [a.status for a in answers] == [200, 200], [a.head for a in answers]
    assert [a.json()["target"] for a in answers] == ["/api/movies/one?delay=0.3", "/api/movies/two"]


@pytest.mark.parametrize(
    "unfinished",
    [
        b"GET /api/movies HTTP/1.1\r\nHost: a\r\n",
        b"POST /api/movies HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        b"POST /api/movies HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
    ids=["head", "body", "chunked-body"],
)
def test_eof_inside_a_request_forwards_nothing(gateway, recorder, unfinished):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(unfinished)
        client.shut_write()
        for answer in client.answers_until_closed():
            assert_gateway_error(answer, 400)
    assert_nothing_forwarded(gateway, recorder, mark)


def test_client_leaving_mid_request_closes_the_upstream_connection(patient, recorder):
    mark = recorder.mark()
    with Client(patient) as client:
        client.send(get(b"/api/movies/hold"))
        seen = recorder.wait_for_requests(mark, 1)
    connection = recorder.connections[seen[0].connection]
    wait_until(connection.closed.is_set, 3, "the upstream connection of a departed client to close")
    recorder.release.set()
    assert_each_gets_its_own_answer(patient, b"departure")


# --- item 7: slow clients, and the connection bound --------------------------------------------
def test_slow_heads_hold_no_upstream_connection_and_get_408(gateway, recorder):
    mark = recorder.mark()
    clients = [Client(gateway) for _ in range(5)]
    try:
        for client in clients:
            client.send(b"GET /api/movies HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        for client in clients:
            assert_refused_and_closed(client, 408)
    finally:
        for client in clients:
            client.sock.close()
    assert recorder.connections_since(mark) == []
    assert recorder.requests_since(mark) == []


def test_slow_body_holds_no_upstream_connection_and_gets_408(gateway, recorder):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(b"POST /api/movies HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        assert_refused_and_closed(client, 408)
    assert recorder.connections_since(mark) == []
    assert recorder.requests_since(mark) == []


def test_head_trickled_a_byte_at_a_time_gets_408(gateway, recorder):
    head = b"GET /api/movies HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 200
    mark = recorder.mark()
    with Client(gateway) as client:
        for byte in head:
            if select.select([client.sock], [], [], 0.2)[0]:  # the gateway answered or closed
                break
            client.send(bytes([byte]))
        else:
            raise AssertionError("the gateway read a 200-byte head for 40 s")
        assert_refused_and_closed(client, 408)
    assert recorder.requests_since(mark) == []


def test_connection_beyond_the_bound_gets_503_and_a_freed_slot_is_served(bounded, recorder):
    held = [Client(bounded) for _ in range(4)]
    try:
        for index, client in enumerate(held):
            client.send(get(b"/api/movies/held-%d" % index))
            assert client.answer().status == 200
        with Client(bounded) as extra:
            extra.send(get(b"/api/movies/beyond-the-bound"))
            assert_refused_and_closed(extra, 503)
        held.pop().sock.close()

        def served() -> bool:
            answer = exchange(bounded, get(b"/api/movies/freed"))
            return bool(answer) and answer[0].status == 200

        wait_until(served, 5, "a connection to be served once a slot is free")
    finally:
        for client in held:
            client.sock.close()
    assert "/api/movies/beyond-the-bound" not in [r.target for r in recorder.requests]


def test_idle_connection_is_closed_silently(gateway):
    with Client(gateway) as client:
        client.send(get(b"/api/movies/idle"))
        assert client.answer().status == 200
        assert client.closed(within=4)


# --- item 8: header size ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "head",
    [
        get(b"/api/movies", b"X-Big: " + b"a" * 1024 * 1024 + b"\r\n"),
        get(b"/api/movies", b"X-Big: " + b"a" * 16400 + b"\r\n"),
        get(b"/api/movies", b"".join(b"X-Many-%d: %s\r\n" % (i, b"b" * 100) for i in range(170))),
        # never finished: 431 must come before the head ends
        b"GET /api/movies HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-More-%d: %s\r\n" % (i, b"d" * 1000) for i in range(1024)),
    ],
    ids=["1MB-line", "just-over", "many-lines", "unfinished-growing"],
)
def test_oversized_head_gets_431_and_nothing_forwarded(gateway, recorder, head):
    assert_refused(gateway, recorder, head, 431, closes=True)


def test_head_just_under_the_limit_is_forwarded_intact(gateway, recorder):
    value = b"e" * 15000
    mark = recorder.mark()
    answer = exchange(gateway, get(b"/api/movies/big-head", b"X-Big: " + value + b"\r\n"))[0]
    assert answer.status == 200
    assert recorder.requests_since(mark)[0].all("x-big") == [value.decode()]


# --- item 9: trailers --------------------------------------------------------------------------
def test_chunked_trailers_never_become_headers(gateway, recorder):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(
            b"POST /api/movies HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Request-ID: evil\r\nX-Injected: 1\r\n\r\n"
        )
        echo = client.answer().json()
        client.send(get(b"/api/movies/after-trailers"))
        assert client.answer().json()["target"] == "/api/movies/after-trailers"
    seen = recorder.requests_since(mark)[0]
    assert (seen.body, seen.all("content-length")) == (b"hello world", ["11"])
    assert seen.all("x-injected") == []
    assert seen.all("x-request-id") != ["evil"]
    assert (echo["body_length"], echo["method"]) == (11, "POST")


def test_framing_fields_in_trailers_are_dropped_or_refused_never_forwarded(gateway, recorder):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(
            b"POST /api/movies HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nHost: evil\r\nContent-Length: 40\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + get(b"/api/movies/after-trailers")
        )
        answer = client.answer()
        if answer is not None and answer.status == 400:  # refusing them is as safe
            assert_gateway_error(answer, 400)
            assert answer.header("connection") == "close" and client.closed()
            assert_nothing_forwarded(gateway, recorder, mark)
            return
        assert answer.json()["body_length"] == 5
        assert client.answer().json()["target"] == "/api/movies/after-trailers"
    seen = recorder.requests_since(mark)[0]
    assert (seen.body, seen.all("content-length"), seen.all("host")) == (
        b"hello",
        ["5"],
        [recorder.host.decode()],
    )


# --- item 10: what the upstream answers --------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
def test_malformed_upstream_answer_becomes_502_and_its_connection_closes(gateway, recorder, kind):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(get(b"/api/movies/bad?bad=" + kind.encode()))
        assert_gateway_error(client.answer(), 502, "inventory sent an invalid answer")
        assert b"evil" not in client.received
    seen = recorder.wait_for_requests(mark, 1)
    wait_until(recorder.connections[seen[0].connection].closed.is_set, 3, "that connection closed")


def test_unsolicited_answer_never_reaches_another_client(gateway, recorder):
    mark = recorder.mark()
    first = exchange(gateway, get(b"/api/movies/first?extra=1"))[0]
    assert first.json()["target"] == "/api/movies/first?extra=1"
    for answer in assert_each_gets_its_own_answer(gateway, b"extra"):
        assert b"unsolicited" not in answer.body
    carrier = recorder.requests_since(mark)[0].connection
    wait_until(recorder.connections[carrier].closed.is_set, 3, "the connection with extra bytes")


def test_hop_by_hop_answer_headers_are_dropped(gateway):
    answer = exchange(gateway, get(b"/api/movies/hop?hop=1"))[0]
    assert answer.status == 200
    names = {name for name, _ in answer.headers}
    assert not names & {"x-hop", "keep-alive", "upgrade"}, answer.head
    assert set((answer.header("connection") or "keep-alive").split(",")) <= {"keep-alive"}


def test_interim_answer_is_swallowed(gateway):
    with Client(gateway) as client:
        client.send(get(b"/api/movies/interim?interim=1"))
        answer = client.answer()
        assert (answer.status, answer.json()["target"]) == (200, "/api/movies/interim?interim=1")


# --- item 11: Host -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hosts",
    [
        b"",
        b"Host: a\r\nHost: b\r\n",
        b"Host: a\r\nHost: a\r\n",
        b"Host: a b\r\n",
        b"Host: a/b\r\n",
        b"Host: user@a\r\n",
        b"Host: a:x\r\n",
        b"Host: [::1\r\n",
    ],
    ids=["missing", "two", "two-equal", "space", "slash", "userinfo", "bad-port", "bad-ipv6"],
)
def test_host_must_be_present_single_and_valid(gateway, recorder, hosts):
    assert_refused(gateway, recorder, b"GET /api/movies/host HTTP/1.1\r\n" + hosts + b"\r\n", 400)


def test_http10_without_host_is_served_and_closed(gateway, recorder):
    with Client(gateway) as client:
        client.send(b"GET /api/movies/old HTTP/1.0\r\n\r\n")
        answer = client.answer()
        assert (answer.status, answer.header("connection")) == (200, "close")
        assert client.closed()


# --- the classic desync classes: ambiguous framing and bad bytes in heads ---------------------
def post(headers: bytes, body: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /api/movies " + version + b"\r\nHost: a\r\n" + headers + b"\r\n" + body


CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
REFUSED_FRAMING = {
    "cl-te": post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG"),
    "te-cl": post(
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n"
    ),
    "te-xchunked": post(b"Transfer-Encoding: xchunked\r\n", CHUNKED),
    "te-space-before-colon": post(b"Transfer-Encoding : chunked\r\n", CHUNKED),
    "te-twice": post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", CHUNKED),
    "te-chunked-identity": post(b"Transfer-Encoding: chunked, identity\r\n", CHUNKED),
    "te-identity": post(b"Transfer-Encoding: identity\r\n", CHUNKED),
    "te-gzip-chunked": post(b"Transfer-Encoding: gzip, chunked\r\n", CHUNKED),
    "te-obs-fold": post(b"Transfer-Encoding:\r\n chunked\r\n", CHUNKED),
    "te-after-bare-lf": post(b"X-A: 1\nTransfer-Encoding: chunked\r\n", CHUNKED),
    "te-vertical-tab": post(b"Transfer-Encoding:\x0bchunked\r\n", CHUNKED),
    "te-on-http10": post(b"Transfer-Encoding: chunked\r\n", CHUNKED, b"HTTP/1.0"),
    "cl-twice-equal": post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
    "cl-twice-different": post(b"Content-Length: 5\r\nContent-Length: 0\r\n", b"hello"),
    "cl-list": post(b"Content-Length: 5, 5\r\n", b"hello"),
    "cl-plus": post(b"Content-Length: +5\r\n", b"hello"),
    "cl-minus": post(b"Content-Length: -5\r\n", b"hello"),
    "cl-hex": post(b"Content-Length: 0x5\r\n", b"hello"),
    "cl-inner-space": post(b"Content-Length: 1 0\r\n", b"hellohello"),
    "chunk-size-hex-prefix": post(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-negative": post(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow": post(b"Transfer-Encoding: chunked\r\n", b"1" * 20 + b"\r\nhello\r\n"),
    "chunk-without-crlf": post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhelloX0\r\n\r\n"),
    "obs-fold": post(b"X-A: 1\r\n folded\r\nContent-Length: 5\r\n", b"hello"),
    "nul-in-value": get(b"/api/movies", b"X-A: 1\x002\r\n"),
    "nul-in-target": get(b"/api/movies\x00x"),
    "bare-cr-in-value": get(b"/api/movies", b"X-A: 1\r2\r\n"),
    "bare-lf-line-end": b"GET /api/movies HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n",
    "bare-lf-request-line": b"GET /api/movies HTTP/1.1\nHost: a\r\n\r\n",
    "space-before-colon": get(b"/api/movies", b"X-A : 1\r\n"),
    "bad-name-byte": get(b"/api/movies", b"X(A): 1\r\n"),
    "no-colon": get(b"/api/movies", b"X-A 1\r\n"),
}


@pytest.mark.parametrize("request_bytes", REFUSED_FRAMING.values(), ids=REFUSED_FRAMING.keys())
def test_ambiguous_framing_and_bad_head_bytes_are_refused(gateway, recorder, request_bytes):
    smuggling = request_bytes + get(b"/api/movies/smuggled")
    assert_refused(gateway, recorder, smuggling, 400, closes=True)


ACCEPTED_FRAMING = {
    "cl-with-ows": post(b"Content-Length:   5  \r\n", b"hello"),
    "te-case": post(b"Transfer-Encoding: Chunked\r\n", CHUNKED),
    "te-with-ows": post(b"Transfer-Encoding:  chunked \r\n", CHUNKED),
    "chunk-extension": post(b"Transfer-Encoding: chunked\r\n", b"5;ext=1\r\nhello\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("request_bytes", ACCEPTED_FRAMING.values(), ids=ACCEPTED_FRAMING.keys())
def test_valid_framing_is_forwarded_with_the_gateways_own_length(gateway, recorder, request_bytes):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(request_bytes + get(b"/api/movies/next"))
        answer = client.answer()
        assert (answer.status, answer.json().get("body_length")) == (200, 5), answer.body
        assert client.answer().json()["target"] == "/api/movies/next"
    seen = recorder.requests_since(mark)
    assert [(r.body, r.all("content-length")) for r in seen] == [(b"hello", ["5"]), (b"", [])]


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /api/movies HTTP/1.2", 400),  # not a version the parser knows: malformed
        (b"GET /api/movies HTTP/2.0", 505),  # well-formed, not served over HTTP/1 framing
        (b"GET /api/movies HTTP/0.9", 505),
        (b"GET /api/movies HTTP/1.1x", 400),
        (b"GET /api/movies HTTP/11", 400),
        (b"GET /api/movies http/1.1", 400),
        (b"GET /api/movies", 505),  # an HTTP/0.9 request line
    ],
)
def test_versions_other_than_1_0_and_1_1_are_refused(gateway, recorder, request_line, status):
    assert_refused(gateway, recorder, request_line + b"\r\nHost: a\r\n\r\n", status, closes=True)


# --- targets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [b"http://evil/api/movies", b"http://a/api/movies", b"evil:80", b"*", b"api/movies"],
    ids=["absolute-form", "absolute-form-same-host", "authority-form", "asterisk", "relative"],
)
def test_targets_not_in_origin_form_are_refused(gateway, recorder, target):
    assert_refused(gateway, recorder, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400)


@pytest.mark.parametrize(
    "target",
    [
        b"/api/movies/../admin",
        b"/api/movies/..",
        b"/api/movies/./1",
        b"/api/movies/%2e%2e/x",
        b"/api/movies/%2E%2e",
        b"/api/movies/.%2e/x",
        b"/api/movies%2f..%2fx",
        b"/api/movies/%2F1",
        b"/api/movies/%5c..",
        b"/api/movies/%5C1",
        b"/api/movies\\..\\x",
        b"/api/movies/%00",
        b"/api/movies/%zz",
        b"/api/movies/%2",
        b"/api/movies#frag",
        b"/api/movies/1#x?y",
    ],
)
def test_dot_segments_and_encoded_separators_in_paths_are_refused(gateway, recorder, target):
    assert_refused(gateway, recorder, get(target), 400, "invalid request target")


@pytest.mark.parametrize(
    "target",
    [
        b"/api/movies?title=The%20Matrix&limit=1",
        b"/api/movies?title=Am%C3%A9lie",
        b"/api/movies?title=a%2Fb%2e%2e&q=..",
        b"/api/movies/?title=100%25",
    ],
)
def test_percent_encoded_queries_are_forwarded_byte_for_byte(gateway, recorder, target):
    mark = recorder.mark()
    answer = exchange(gateway, get(target, b"X-Custom: kept\r\n"))[0]
    assert answer.json()["target"] == target.decode()
    seen = recorder.requests_since(mark)[0]
    assert (seen.target, seen.all("x-custom")) == (target.decode(), ["kept"])


# --- methods, Expect, Connection, HTTP/1.0 ------------------------------------------------------
@pytest.mark.parametrize(
    "request_line",
    [b"TRACE /api/movies HTTP/1.1", b"CONNECT a:443 HTTP/1.1", b"PROPFIND /api/movies HTTP/1.1"],
    ids=["TRACE", "CONNECT", "PROPFIND"],
)
def test_unknown_methods_get_405(gateway, recorder, request_line):
    assert_refused(gateway, recorder, request_line + b"\r\nHost: a\r\n\r\n", 405)


def test_expect_100_continue_is_answered_by_the_gateway(gateway, recorder):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b""))
        assert client.answer().status == 100
        client.send(b"hello")
        answer = client.answer()
        assert (answer.status, answer.json()["body_length"]) == (200, 5)
    assert recorder.requests_since(mark)[0].body == b"hello"


def test_unknown_expectation_gets_417(gateway, recorder):
    assert_refused(gateway, recorder, post(b"Expect: teapot\r\nContent-Length: 0\r\n", b""), 417)


def test_hop_by_hop_request_headers_are_never_forwarded(gateway, recorder):
    mark = recorder.mark()
    extra = (
        b"Connection: x-custom, keep-alive, host, content-length\r\nX-Custom: 1\r\n"
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic eDp4\r\nX-Forwarded-Host: evil\r\n"
        b"X-Forwarded-Proto: gopher\r\n"
        b"Content-Length: 2\r\nX-End-To-End: kept\r\n"
    )
    with Client(gateway) as client:
        client.send(b"POST /api/movies/hop HTTP/1.1\r\n" + HOST + extra + b"\r\n{}")
        assert client.answer().json()["body_length"] == 2
    seen = recorder.requests_since(mark)[0]
    assert seen.all("x-custom") == []
    assert (seen.all("content-length"), seen.body) == (["2"], b"{}")
    assert seen.all("x-end-to-end") == ["kept"]
    assert (seen.all("x-forwarded-host"), seen.all("x-forwarded-proto")) == (["a"], ["http"])


def test_http10_keep_alive_is_not_honoured(gateway, recorder):
    mark = recorder.mark()
    with Client(gateway) as client:
        client.send(
            b"GET /api/movies/first HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            b"GET /api/movies/second HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        )
        answer = client.answer()
        assert answer.json()["target"] == "/api/movies/first"
        assert answer.header("connection") == "close"
        assert client.closed()
    barrier(gateway, recorder)
    assert [r.target for r in recorder.requests_since(mark)] == [
        "/api/movies/first",
        "/api/movies/barrier",
    ]


# --- bodies too large: 413 while the client is still sending (lingering close) ----------------
@pytest.mark.parametrize(
    "head",
    [
        b"POST /api/billing HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Content-Length: 3145728\r\n\r\n",
        b"POST /api/movies HTTP/1.1\r\nHost: a\r\nContent-Length: 3145728\r\n\r\n",
    ],
    ids=["billing", "movies"],
)
def test_oversized_body_gets_413_that_a_still_sending_client_reads(gateway, recorder, head):
    assert_refused(gateway, recorder, head + b"x" * 3 * 1024 * 1024, 413, closes=True)


def test_oversized_chunked_body_gets_413_mid_stream(gateway, recorder):
    chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
    head = b"POST /api/movies HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert_refused(gateway, recorder, head + chunk * 48, 413, closes=True)
