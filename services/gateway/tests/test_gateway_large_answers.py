"""Answers of every size around the buffer limits (issue 18): each arrives whole, and the pooled
upstream connection it came on answers the next requests at once. Before the fix, a 256-512 KB
answer on the percent-encoded-query path left that connection unread and the next request got a
504 after the upstream timeout."""

import pytest

from .attack_support import Client, exchange, gateway_fixtures, sha256, wait_until
from .recording_upstream import pattern

SIZES = [0, 1, 65535, 65536, 65537, 262144, 300_000, 350_000, 400_000, 402_192, 450_000, 524288]
SIZES += [1048576, 4194304]
FOLLOWERS = [b"/api/movies?title=The%20Matrix&limit=1", b"/api/movies/next", b"/api/movies?t=x"]


recorder, gateway = gateway_fixtures(GATEWAY_UPSTREAM_TIMEOUT=2)


@pytest.fixture(autouse=True)
def upstream_judged(recorder):
    yield
    violations = list(recorder.violations)
    recorder.violations.clear()
    assert violations == [], "the upstream received requests a strict gateway never writes"


def request(method: bytes, target: bytes, body: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return method + b" " + target + b" HTTP/1.1\r\nHost: a\r\n" + length + b"\r\n" + body


def big_target(size: int, variant: str, framing: str) -> bytes:
    target = b"/api/movies/big?size=%d" % size
    if variant == "encoded":
        target += b"&title=The%20Matrix&genre=Com%C3%A9die"
    if framing != "length":
        target += b"&" + framing.encode() + b"=1"
    return target


def assert_followers_answered(client: Client) -> None:
    for target in FOLLOWERS:
        client.send(request(b"GET", target))
        answer = client.answer()
        assert answer.status == 200, answer.body
        assert answer.json()["target"] == target.decode()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("variant", ["plain", "encoded", "post"])
def test_answer_arrives_whole_and_its_pooled_connection_answers_next(
    gateway, recorder, variant, framing, size
):
    method, body = (b"POST", b'{"title": "x"}') if variant == "post" else (b"GET", b"")
    slow = size >= 262144
    mark = recorder.mark()
    with Client(gateway, rcvbuf=4096 if slow else None) as client:
        client.piece = 4096 if slow else 65536
        client.send(request(method, big_target(size, variant, framing), body))
        answer = client.answer(within=10)
        assert answer.status == 200, answer.body[:200]
        assert (len(answer.body), sha256(answer.body)) == (size, sha256(pattern(size)))
        assert_followers_answered(client)
    seen = recorder.requests_since(mark)
    assert len(seen) == 1 + len(FOLLOWERS)
    assert {r.connection for r in seen} == {seen[0].connection}, "not one pooled connection"
    assert seen[0].body == body


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", ["plain", "encoded"])
def test_head_of_a_large_answer_is_followed_by_answers_at_once(gateway, variant, size):
    with Client(gateway) as client:
        client.send(request(b"HEAD", big_target(size, variant, "length")))
        answer = client.answer(head_only=True)
        assert (answer.status, answer.header("content-length")) == (200, str(size))
        assert_followers_answered(client)


@pytest.mark.parametrize("size", [0, 65537, 300_000, 1048576])
def test_close_delimited_answer_arrives_whole_and_the_next_goes_on_a_new_connection(
    gateway, recorder, size
):
    mark = recorder.mark()
    answers = exchange(gateway, request(b"GET", big_target(size, "encoded", "close")))
    assert (len(answers[0].body), sha256(answers[0].body)) == (size, sha256(pattern(size)))
    with Client(gateway) as client:
        assert_followers_answered(client)
    seen = recorder.requests_since(mark)
    wait_until(recorder.connections[seen[0].connection].closed.is_set, 3, "that connection closed")
    assert seen[0].connection not in {r.connection for r in seen[1:]}


def test_large_answers_alternating_with_small_searches_never_stall(gateway):
    for _ in range(6):
        big = exchange(gateway, request(b"GET", big_target(402192, "encoded", "length")))[0]
        assert (big.status, len(big.body)) == (200, 402192)
        small = exchange(gateway, request(b"GET", b"/api/movies?title=The%20Matrix&limit=1"))[0]
        assert small.status == 200
