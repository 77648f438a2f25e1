"""The rate limiter and the API keys as pure logic: every clock reading is passed in (`now`).

The limiter reads the clock itself only once, when it is made (the first sweep is due a minute
later); the tests pin that reading to CLOCK so every instant below is exact.
"""

import time

import pytest

from gateway.guard import ApiKeys, RateLimiter, retry_after

CLOCK = 1000.0  # the monotonic clock when a limiter is made


def limiter(monkeypatch: pytest.MonkeyPatch, rate: float, burst: int, **kw: int) -> RateLimiter:
    with monkeypatch.context() as patch:
        patch.setattr(time, "monotonic", lambda: CLOCK)
        return RateLimiter(rate, burst, **kw)


# --- API keys ----------------------------------------------------------------------------------
def test_api_keys_are_on_only_when_some_are_configured() -> None:
    assert not ApiKeys([])
    assert ApiKeys(["k1"])


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer k1", b"Bearer k2", b"bearer k2", b"BEARER  k1 ", b"Bearer k1\t"],
)
def test_any_configured_key_is_accepted(authorization: bytes) -> None:
    assert ApiKeys(["k1", "k2"]).allows(authorization) is True


@pytest.mark.parametrize(
    "authorization",
    [None, b"", b"Bearer", b"Bearer ", b"Bearer k3", b"Bearer 1", b"Bearerk1", b"Basic k1", b"k1"],
)
def test_a_missing_or_unknown_key_is_refused(authorization: bytes | None) -> None:
    assert ApiKeys(["k1", "k2"]).allows(authorization) is False


# --- the token bucket --------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0), (0, 0)])
def test_a_limiter_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be > 0 and burst >= 1"):
        RateLimiter(rate, burst)


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (1, 1), (1, 2)])
def test_the_smallest_valid_limits_are_accepted(rate: float, burst: int) -> None:
    assert RateLimiter(rate, burst).wait("a") == 0.0


def test_a_burst_goes_then_the_wait_is_the_time_to_the_next_token(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=2, burst=3)
    assert [limits.wait("a", now=CLOCK) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limits.wait("a", now=CLOCK) == 0.5  # one token every 1/2 s


def test_a_refused_client_gets_in_when_its_next_token_is_there(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=2, burst=2)
    assert limits.wait("a", now=CLOCK) == 0.0
    assert limits.wait("a", now=CLOCK) == 0.0
    assert limits.wait("a", now=CLOCK) == 0.5
    # A refusal takes no token and loses none: half a token has come in a quarter second.
    assert limits.wait("a", now=CLOCK + 0.25) == 0.25
    assert limits.wait("a", now=CLOCK + 0.5) == 0.0  # exactly one token: it goes
    assert limits.wait("a", now=CLOCK + 0.5) == 0.5


def test_a_bucket_refills_up_to_the_burst_only(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=4, burst=2)
    assert limits.wait("a", now=CLOCK) == 0.0
    later = CLOCK + 30  # long idle: 120 tokens' worth, but the bucket holds 2
    assert [limits.wait("a", now=later) for _ in range(3)] == [0.0, 0.0, 0.25]


def test_clients_have_separate_buckets(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=1, burst=1)
    assert limits.wait("a", now=CLOCK) == 0.0
    assert limits.wait("a", now=CLOCK) == 1.0
    assert limits.wait("b", now=CLOCK) == 0.0
    assert len(limits) == 2


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.001, b"1"), (0.5, b"1"), (1.0, b"1"), (1.01, b"2"), (3.0, b"3")]
)
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: bytes) -> None:
    assert retry_after(seconds) == header


# --- memory: the idle sweep and the bound on tracked clients ----------------------------------
def test_the_sweep_waits_a_minute_and_drops_only_clients_whose_bucket_is_full_again(
    monkeypatch,
) -> None:
    # rate 2, burst 4: an empty bucket is full again 2 s later; from then on its client is idle.
    limits = limiter(monkeypatch, rate=2, burst=4)
    for _ in range(4):
        limits.wait("idle", now=CLOCK + 50)
    limits.wait("just-idle", now=CLOCK + 58)
    for _ in range(4):
        limits.wait("active", now=CLOCK + 59.5)  # empty, half a second before the sweep
    assert limits.wait("new-1", now=CLOCK + 59.9) == 0.0  # no sweep before the minute
    assert len(limits) == 4
    assert limits.wait("new-2", now=CLOCK + 60) == 0.0  # the sweep, due now, runs first
    assert len(limits) == 3  # "idle" and "just-idle" (full for exactly 0 s) are dropped
    # The active client kept its state: one token came in half a second, and it is used.
    assert limits.wait("active", now=CLOCK + 60) == 0.0
    assert limits.wait("active", now=CLOCK + 60) == 0.5


def test_the_next_sweep_is_a_minute_after_the_last(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=1, burst=1)
    limits.wait("a", now=CLOCK + 60)  # first sweep (nothing to drop)
    limits.wait("b", now=CLOCK + 70)
    assert limits.wait("c", now=CLOCK + 119) == 0.0  # "a" and "b" idle, but no sweep yet
    assert len(limits) == 3
    assert limits.wait("d", now=CLOCK + 120) == 0.0
    assert len(limits) == 1  # only "d": the three others were idle


def test_when_full_the_least_recently_seen_half_is_evicted(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=1, burst=1, max_clients=4)
    for n, client in enumerate("abcd"):
        assert limits.wait(client, now=CLOCK + n / 10) == 0.0  # seen at +0.0 ... +0.3
    assert limits.wait("a", now=CLOCK + 0.35) > 0  # "a" seen again: now the most recent
    # Nobody is idle (a bucket takes 1 s to fill), so a fifth client evicts the three least
    # recently seen (half of 4, plus one): b, c, d. It is not the order of arrival.
    assert limits.wait("e", now=CLOCK + 0.4) == 0.0
    assert len(limits) == 2
    assert limits.wait("a", now=CLOCK + 0.45) > 0  # kept: still empty
    assert limits.wait("b", now=CLOCK + 0.45) == 0.0  # evicted: a fresh bucket


def test_the_number_of_tracked_clients_stays_bounded(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=1, burst=1, max_clients=10)
    sizes = []
    for n in range(100):
        limits.wait(f"client-{n}", now=CLOCK + n / 1000)  # all active
        sizes.append(len(limits))
    assert max(sizes) == 10
    assert sizes[:11] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 5]


def test_by_default_a_hundred_thousand_clients_are_tracked(monkeypatch) -> None:
    limits = limiter(monkeypatch, rate=1, burst=1)
    for n in range(100_000):
        limits.wait(str(n), now=CLOCK)
    assert len(limits) == 100_000
    limits.wait("one more", now=CLOCK)
    assert len(limits) == 100_000 - 50_001 + 1
