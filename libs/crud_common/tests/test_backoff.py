"""The delays between reconnection and retry attempts (crud_common.backoff), used by billing's
consumer (broker and database) and the gateway's publisher. Pure function, no services needed."""

from itertools import islice

import pytest
from crud_common.backoff import backoff


def test_delays_double_from_the_start_until_the_cap_then_stay_there() -> None:
    assert list(islice(backoff(0.5, 10.0), 8)) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_the_defaults_are_the_consumers_half_second_to_ten_seconds() -> None:
    delays = list(islice(backoff(), 7))
    assert delays[0] == 0.5
    assert delays[-2:] == [10.0, 10.0]


def test_a_start_equal_to_the_cap_never_grows() -> None:
    assert list(islice(backoff(3.0, 3.0), 3)) == [3.0, 3.0, 3.0]


def test_each_generator_starts_again_from_the_start() -> None:
    first = backoff(1.0, 8.0)
    assert [next(first) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert next(backoff(1.0, 8.0)) == 1.0  # a fresh one after a success


@pytest.mark.parametrize(("start", "cap"), [(0.0, 10.0), (-1.0, 10.0), (5.0, 1.0)])
def test_a_start_that_is_not_positive_or_above_the_cap_is_refused(start: float, cap: float) -> None:
    # A zero start would retry in a busy loop; a start above the cap would exceed the cap.
    with pytest.raises(ValueError, match="0 < start <= cap"):
        backoff(start, cap)
