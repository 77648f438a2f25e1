"""The byte-level reading of the lean path (wire.py): what it recognises, what it leaves to
httptools, and the bytes it forwards."""

import re

import pytest

from gateway.wire import header_list, plain_get, whole_answer

PLAIN = b"GET /api/movies/7?x=1 HTTP/1.1\r\nHost: gw:8080\r\nAccept: */*\r\n\r\n"
RID = b"0123456789abcdef0123456789abcdef"


def answer(*headers: bytes, body: bytes = b'{"id":7}') -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def test_a_plain_get_is_read_with_its_parts():
    request = plain_get(PLAIN, b"127.0.0.1", b"http")
    assert request is not None
    assert request.target == b"/api/movies/7?x=1"
    assert request.headers == (
        b"Accept: */*\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n"
        b"x-forwarded-host: gw:8080\r\nx-request-id: " + request.request_id + b"\r\n\r\n"
    )


@pytest.mark.parametrize(
    "given", [None, b"", b"has space", b"x" * 129, b"caf\xc3\xa9", b"a/b"], ids=repr
)
def test_a_missing_or_malformed_request_id_is_replaced_by_a_new_one(given):
    data = b"GET /api/movies HTTP/1.1\r\n" + (
        b"" if given is None else b"X-Request-ID: " + given + b"\r\n"
    )
    first = plain_get(data + b"\r\n", None, b"http")
    second = plain_get(data + b"\r\n", None, b"http")
    assert first is not None and second is not None
    assert re.fullmatch(rb"[0-9a-f]{32}", first.request_id)
    assert first.request_id != second.request_id
    assert first.headers.endswith(b"x-request-id: " + first.request_id + b"\r\n\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"POST /api/movies HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /api/movies HTTP/1.0\r\n\r\n",
        b"GET /api/movies/%37 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/moviesX HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/billing HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nHost: x\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nHost: x\r\n",  # the head is not complete yet
        PLAIN + PLAIN,  # pipelined: one request per read only
        b"GET /api/movies HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
        b"GET /api/movies HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n",
    ],
)
def test_anything_but_one_plain_get_is_left_to_httptools(data):
    assert plain_get(data, b"127.0.0.1", b"http") is None


def test_hop_by_hop_and_forwarding_headers_are_replaced_and_the_rest_kept_verbatim():
    request = plain_get(
        b"GET /api/movies HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n"
        b"Proxy-Authorization: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\nAuthorization: Bearer k\r\nX-Request-ID: abc\r\n"
        b"X-Custom:  Mixed Case \r\n\r\n",
        b"127.0.0.1",
        b"http",
    )
    assert request is not None
    assert request.request_id == b"abc"
    assert request.headers == (
        b"Authorization: Bearer k\r\nX-Custom:  Mixed Case \r\n"
        b"x-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n"
        b"x-forwarded-host: gw\r\nx-request-id: abc\r\n\r\n"
    )


def test_a_request_without_host_gets_no_forwarded_host():
    request = plain_get(
        b"GET /api/movies HTTP/1.1\r\nX-Request-ID: " + RID + b"\r\n\r\n", None, b"http"
    )
    assert request is not None
    assert request.headers == b"x-forwarded-proto: http\r\nx-request-id: " + RID + b"\r\n\r\n"


def test_the_scope_headers_are_those_uvicorn_would_list():
    assert header_list(PLAIN) == [(b"host", b"gw:8080"), (b"accept", b"*/*")]


def test_an_answer_echoing_the_request_id_is_relayed_as_it_came():
    data = answer(b"content-type: application/json", b"x-request-id: " + RID, b"content-length: 8")
    assert whole_answer(data, RID) == (200, data)


def test_the_gateway_request_id_replaces_the_upstreams_or_is_added():
    theirs = answer(b"X-Request-ID: other", b"Content-Length: 8")
    none = answer(b"Content-Length: 8")
    expected = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nx-request-id: " + RID + b'\r\n\r\n{"id":7}'
    assert whole_answer(theirs, RID) == (200, expected)
    assert whole_answer(none, RID) == (200, expected)


def test_status_and_headers_pass_untouched():
    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-Odd-Case: V a l\r\n\r\n{}"
    status, relayed = whole_answer(data, RID)
    assert status == 404
    assert relayed.startswith(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-Odd-Case: V a l\r\n"
    )


@pytest.mark.parametrize(
    "data",
    [
        answer(b"content-length: 9"),  # the body is not all there yet
        answer(b"content-length: 8") + b"HTTP/1.1 200 OK\r\n",  # more than one answer
        answer(b"content-length: 8", b"content-length: 8"),
        answer(b"transfer-encoding: chunked", body=b'8\r\n{"id":7}\r\n0\r\n\r\n'),
        answer(b"content-length: 8", b"Connection: close"),
        answer(b"content-length: 8", b"keep-alive: timeout=5"),
        answer(),  # delimited by the end of the connection
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b'HTTP/1.0 200 OK\r\ncontent-length: 8\r\n\r\n{"id":7}',
        b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n",  # the head is not complete yet
    ],
)
def test_answers_that_need_httptools_are_left_to_it(data):
    assert whole_answer(data, RID) is None
