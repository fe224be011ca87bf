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

    def _register(self, deadline: float, condition: threading.Condition) -> tuple[float, int, threading.Condition]:
        entry = (deadline, next(self._seq), condition)
        with self._lock:
            heapq.heappush(self._deadlines, entry)
        return entry

    def _unregister(self, entry: tuple[float, int, threading.Condition]) -> None:
        with self._lock:
            if entry in self._deadlines:  # not yet popped by advance()
                self._deadlines.remove(entry)
                heapq.heapify(self._deadlines)

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
        if timeout is not None and timeout <= 0:
            return
        entry = None if timeout is None else self._register(self.now() + timeout, condition)
        try:
            # A real timeout as well keeps a forgotten advance() from hanging a test forever.
            condition.wait(1.0)
        finally:
            # A waiter that returns (notified, or by the real timeout) waits no more: its deadline
            # must not stay behind, or next_deadline() would report a thread parked that is not.
            if entry is not None:
                self._unregister(entry)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a sleeper or waiter still parked on this clock, if any."""
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
