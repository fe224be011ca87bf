"""Heartbeats: how the liveness probe tells a wedged thread from a quiet one.

A process whose threads are all alive can still be useless: a watcher stuck in an event handler
(a deadlock, a call without a timeout) never sees another change, a worker stuck in one reconcile
never takes the next key.  The kubelet only restarts what ``/healthz`` reports, so each long-lived
loop *beats* here with a deadline for its next beat, and ``/healthz`` fails once any deadline has
passed (controller-runtime's ``healthz.Checker`` idea, with the deadline chosen by the loop that
knows how long one step may legitimately take).

Waiting for work is not being wedged: a worker blocked on an empty queue calls :meth:`idle`, which
removes its deadline until it beats again.  A loop that ends on purpose calls :meth:`forget`.
Time comes from the caller's clock (``now``), so tests drive it virtually.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stale:
    """A loop that missed its deadline: its name and how long ago it last beat."""

    name: str
    since: float

    def __str__(self) -> str:
        return f"{self.name} (no progress for {self.since:.0f}s)"


class Heartbeats:
    """Named deadlines; :meth:`stale` lists the loops that missed theirs."""

    def __init__(self, *, now: Callable[[], float]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[float, float]] = {}  # name -> (last beat, deadline)

    def beat(self, name: str, *, within: float) -> None:
        """``name`` made progress now and promises to beat again (or go idle) within ``within`` seconds."""
        now = self._now()
        with self._lock:
            self._beats[name] = (now, now + within)

    def idle(self, name: str) -> None:
        """``name`` waits for work by design; no deadline until its next :meth:`beat`."""
        with self._lock:
            self._beats.pop(name, None)

    forget = idle

    def stale(self) -> list[Stale]:
        now = self._now()
        with self._lock:
            items = list(self._beats.items())
        return [Stale(name, now - last) for name, (last, deadline) in sorted(items) if now > deadline]


__all__ = ["Heartbeats", "Stale"]
