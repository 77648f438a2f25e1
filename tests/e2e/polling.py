"""Waiting for a condition with a deadline, the one way every test harness here waits
(importable as `polling` by all test suites: pyproject.toml's pytest `pythonpath`).

A probe returns something truthy once the condition holds, and that value is returned; it may
raise to fail at once (e.g. a process that died). After `within` seconds: AssertionError naming
`message` and the probe's last answer."""

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    probe: Callable[[], Any], within: float, *, interval: float = 0.1, message: str = "condition"
) -> Any:
    """Call `probe()` every `interval` seconds until it returns a truthy value."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: not within {within}s (last: {result!r})")
        time.sleep(interval)


async def eventually(
    probe: Callable[[], Any], within: float, *, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Call `probe()` (sync, or async: awaited) every `interval` seconds until it returns a
    truthy value, without blocking the event loop in between."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: not within {within}s (last: {result!r})")
        await asyncio.sleep(interval)
