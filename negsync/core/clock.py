"""Time as a dependency: a real monotonic clock and a virtual one for tests and the simulator.

Everything in negsync that waits or measures takes a :class:`Clock`, so the same code runs
against wall time in production and against a hand-cranked :class:`VirtualClock` in tests.
The one design decision a reader must know: waiting is expressed as
``clock.wait(condition, timeout)`` on a caller-owned :class:`threading.Condition`, so a
virtual clock can wake every waiter whose deadline passed when a test calls ``advance``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds plus the two ways code waits on them."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on ``condition`` (held by the caller) until notified or ``timeout`` passes."""
        ...


class RealClock:
    """Wall-clock time from :func:`time.monotonic`."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout if timeout is None else max(0.0, timeout))


class VirtualClock:
    """A clock that only moves when :meth:`advance` is called.

    Sleepers and waiters register a deadline; ``advance`` moves time forward and wakes those
    whose deadline has come.  ``wait`` also returns on a real notification, like a condition.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._deadlines: list[tuple[float, int, threading.Condition]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def _register(self, deadline: float, condition: threading.Condition) -> None:
        with self._lock:
            heapq.heappush(self._deadlines, (deadline, next(self._seq), condition))

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        condition = threading.Condition()
        deadline = self.now() + seconds
        with condition:
            self._register(deadline, condition)
            while self.now() < deadline:
                condition.wait(1.0)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        if timeout is not None:
            if timeout <= 0:
                return
            self._register(self.now() + timeout, condition)
        # A real timeout as well keeps a forgotten advance() from hanging a test forever.
        condition.wait(1.0)

    def next_deadline(self) -> float | None:
        """The earliest registered deadline still in the future, if any."""
        with self._lock:
            return self._deadlines[0][0] if self._deadlines else None

    def advance(self, seconds: float) -> None:
        """Move time forward and wake everything whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
            due: list[threading.Condition] = []
            while self._deadlines and self._deadlines[0][0] <= self._now:
                due.append(heapq.heappop(self._deadlines)[2])
        for condition in due:
            with condition:
                condition.notify_all()
