"""Capped exponential delays between reconnection or retry attempts."""

from collections.abc import Iterator


def backoff(start: float = 0.5, cap: float = 10.0) -> Iterator[float]:
    """Delays `start`, twice that, four times, ... never above `cap`; endless.

    Take one per failed attempt (`next(delays)`); start a new one after a success.
    """
    if not 0 < start <= cap:
        raise ValueError(f"backoff needs 0 < start <= cap, got start={start}, cap={cap}")
    return _doubling(start, cap)


def _doubling(delay: float, cap: float) -> Iterator[float]:
    while True:
        yield delay
        delay = min(delay * 2, cap)
