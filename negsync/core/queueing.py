"""A de-duplicating, rate-limited work queue with client-go semantics and a priority lane.

Hand-written: no maintained Python package has client-go's workqueue contract (dirty/processing
sets, per-key back-off), and kopf's queueing is bound to asyncio; the core is threaded.

Guarantees (the ones controllers rely on):

* a key added many times while waiting is processed once;
* a key is never handed to two workers at once — re-added while processing, it is marked dirty
  and queued again when the worker calls :meth:`WorkQueue.done`;
* :meth:`WorkQueue.add_rate_limited` delays a key by a per-key exponential back-off (base × 2^n,
  capped; :class:`~negsync.core.backoff.Backoff`), reset by :meth:`WorkQueue.forget`;
* :meth:`WorkQueue.add_after` schedules a key for later; an earlier schedule wins;
* ``priority=True`` puts a key in a lane served before the normal one, and promotes a key that
  is already waiting — this is how detaches of terminating endpoints overtake attaches.

Threads, not asyncio: every SDK negsync drives is blocking.  Time comes from a :class:`Clock`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from negsync.core.backoff import Backoff
from negsync.core.clock import Clock, RealClock

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and drained."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
    ) -> None:
        self._clock = clock or RealClock()
        self._backoff = Backoff(base=base_delay, cap=max_delay)  # client-go's: no jitter
        self._cond = threading.Condition()
        self._lanes: tuple[deque[K], deque[K]] = (deque(), deque())  # (priority, normal)
        self._queued: dict[K, int] = {}  # key -> lane index it waits in
        self._dirty_priority: dict[K, bool] = {}  # keys re-added while processing
        self._processing: set[K] = set()
        self._delayed: list[tuple[float, int, K, bool]] = []
        self._delayed_due: dict[K, float] = {}
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._added_at: dict[K, float] = {}
        self._shutting_down = False

    # -- adding -------------------------------------------------------------------------------
    def add(self, key: K, *, priority: bool = False) -> None:
        with self._cond:
            if self._shutting_down:
                return
            self._add_locked(key, priority)

    def _add_locked(self, key: K, priority: bool) -> None:
        if key in self._processing:
            self._dirty_priority[key] = self._dirty_priority.get(key, False) or priority
            return
        lane = self._queued.get(key)
        if lane is not None:
            if priority and lane == 1:
                self._lanes[1].remove(key)
                self._lanes[0].append(key)
                self._queued[key] = 0
            return
        index = 0 if priority else 1
        self._lanes[index].append(key)
        self._queued[key] = index
        self._added_at.setdefault(key, self._clock.now())
        self._cond.notify()

    def add_after(self, key: K, delay: float, *, priority: bool = False) -> None:
        if delay <= 0:
            self.add(key, priority=priority)
            return
        with self._cond:
            if self._shutting_down:
                return
            due = self._clock.now() + delay
            if self._delayed_due.get(key, float("inf")) <= due:
                return
            self._delayed_due[key] = due
            heapq.heappush(self._delayed, (due, next(self._seq), key, priority))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> float:
        """Re-add after the key's next back-off delay; returns the delay used."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = self._backoff.delay(failures + 1)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # -- taking -------------------------------------------------------------------------------
    def _promote_due_locked(self) -> float | None:
        """Move due delayed keys into the lanes; return seconds until the next one, if any."""
        now = self._clock.now()
        while self._delayed:
            due, _, key, priority = self._delayed[0]
            if self._delayed_due.get(key) != due:
                heapq.heappop(self._delayed)  # superseded by an earlier schedule
                continue
            if due > now:
                return due - now
            heapq.heappop(self._delayed)
            del self._delayed_due[key]
            self._add_locked(key, priority)
        return None

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process, or None when ``timeout`` passes first.

        Raises :class:`ShutDown` once the queue is shut down and nothing is left to hand out.
        """
        deadline = None if timeout is None else self._clock.now() + timeout
        with self._cond:
            while True:
                wait = self._promote_due_locked()
                for lane in self._lanes:
                    if lane:
                        key = lane.popleft()
                        del self._queued[key]
                        self._processing.add(key)
                        self._added_at.pop(key, None)
                        return key
                if self._shutting_down:
                    raise ShutDown
                if deadline is not None:
                    remaining = deadline - self._clock.now()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._clock.wait(self._cond, wait)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty_priority:
                priority = self._dirty_priority.pop(key)
                if not self._shutting_down:
                    self._add_locked(key, priority)
            self._cond.notify_all()

    # -- introspection and shutdown -----------------------------------------------------------
    def __len__(self) -> int:
        with self._cond:
            return len(self._queued)

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting key has waited (queue latency for metrics)."""
        with self._cond:
            if not self._added_at:
                return 0.0
            return self._clock.now() - min(self._added_at.values())

    def busy(self) -> bool:
        """Anything queued, processing, or delayed and already due (a quiescence check for tests)."""
        with self._cond:
            now = self._clock.now()
            due = any(d <= now for d in self._delayed_due.values())
            return bool(self._queued or self._processing or due)

    def is_processing(self, key: K) -> bool:
        with self._cond:
            return key in self._processing

    def shutdown(self) -> None:
        """Stop accepting keys; workers drain what is queued, then :meth:`get` raises ShutDown."""
        with self._cond:
            self._shutting_down = True
            self._delayed.clear()
            self._delayed_due.clear()
            self._cond.notify_all()

    def drained(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or processing."""
        deadline = None if timeout is None else self._clock.now() + timeout
        with self._cond:
            while self._queued or self._processing:
                remaining = None if deadline is None else deadline - self._clock.now()
                if remaining is not None and remaining <= 0:
                    return False
                self._clock.wait(self._cond, remaining)
            return True
