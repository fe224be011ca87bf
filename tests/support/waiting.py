"""Waiting in real time for something another thread does: one polling helper for every test.

Polling, not events: the conditions tests wait for (a watcher caught up, a member attached, a
status written) live in other threads, processes and emulators that signal nothing a test could
block on.  Every wait is bounded, and a timeout fails the test with what was awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition", *,
             interval: float = 0.02, describe: Callable[[], str] | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``timeout`` s.

    ``describe`` adds the state worth seeing to the failure message (called only on failure).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s" + (f"\n{describe()}" if describe else ""))
        time.sleep(interval)
