"""polling, the waits every harness relies on: the condition's own value back once it holds,
a failure naming what was awaited (and the last answer) once the deadline has passed."""

import pytest

from polling import eventually, wait_until


def answers(*values):
    """A probe answering `values` in turn, then the last one for ever."""
    sequence = list(values)
    return lambda: sequence.pop(0) if len(sequence) > 1 else sequence[0]


def test_wait_until_returns_the_first_truthy_answer():
    assert wait_until(answers(None, 0, {"id": 7}), within=5, interval=0) == {"id": 7}


def test_wait_until_fails_after_the_deadline_with_the_message_and_last_answer():
    with pytest.raises(AssertionError, match=r"order stored: not within 0.05s \(last: \[\]\)"):
        wait_until(answers(None, []), within=0.05, interval=0.01, message="order stored")


async def test_eventually_awaits_an_async_probe_and_returns_its_answer():
    probe = answers(None, 3)

    async def async_probe():
        return probe()

    assert await eventually(async_probe, within=5, interval=0) == 3


async def test_eventually_takes_a_sync_probe_and_fails_after_the_deadline():
    with pytest.raises(AssertionError, match=r"queue empty: not within 0.05s \(last: 0\)"):
        await eventually(answers(None, 0), within=0.05, interval=0.01, message="queue empty")
