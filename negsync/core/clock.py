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
import math
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


_Deadline = tuple[int, int, threading.Condition]  # (nanoseconds, registration order, whom to wake)
_NEVER = 2**63  # an infinite wait's deadline: no advance() reaches it


def _nanoseconds(seconds: float) -> int:
    return _NEVER if math.isinf(seconds) else round(seconds * 1e9)  # NaN: ValueError, a bug to surface


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
    Time is kept in whole nanoseconds: summed floats drift (eight steps of 0.1 s are less than
    0.8 s), and a sleeper would then wait one step longer than the steps that add up to its sleep.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now_ns = _nanoseconds(start)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._deadlines: list[_Deadline] = []

    def now(self) -> float:
        with self._lock:
            return self._now_ns / 1e9

    def _register(self, seconds: float, condition: threading.Condition) -> _Deadline:
        with self._lock:
            entry = (self._now_ns + _nanoseconds(seconds), next(self._seq), condition)
            heapq.heappush(self._deadlines, entry)
        return entry

    def _unregister(self, entry: _Deadline) -> None:
        with self._lock:
            if entry in self._deadlines:  # not yet popped by advance()
                self._deadlines.remove(entry)
                heapq.heapify(self._deadlines)

    def _before(self, deadline_ns: int) -> bool:
        with self._lock:
            return self._now_ns < deadline_ns

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        condition = threading.Condition()
        with condition:
            deadline_ns = self._register(seconds, condition)[0]
            while self._before(deadline_ns):
                condition.wait(1.0)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            return
        entry = None if timeout is None else self._register(timeout, condition)
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
            return self._deadlines[0][0] / 1e9 if self._deadlines else None

    def advance(self, seconds: float) -> None:
        """Move time forward and wake everything whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now_ns += _nanoseconds(seconds)
            due: list[threading.Condition] = []
            while self._deadlines and self._deadlines[0][0] <= self._now_ns:
                due.append(heapq.heappop(self._deadlines)[2])
        for condition in due:
            with condition:
                condition.notify_all()
