"""One target's bookkeeping as the reconciler keeps it: what is in flight, when the next call may go, who is isolated.

A :class:`TargetState` exists per (binding, target) — two bindings naming one target each keep
their own, so each proves ownership.  It is mutable and unlocked: the reconciler guards every
access with its one lock, because a pass's diff and a transaction's completion must see each
other's changes whole (the members in flight and the member cache's write count move together).

Three things live here:

* the transaction in flight (``attaching``/``detaching``), which the diff excludes and which makes
  later attaches on the target wait for it (coalescing);
* the pace of calls: ``last_call`` for the minimum interval, and ``not_before`` after a failure,
  a delay drawn from [d, 2d] with d doubling per failure in a row up to a cap, stretched to the
  server's Retry-After;
* isolated members (:class:`Rejection`): a member a bisected batch proved bad is left out of
  attaches for its own doubling back-off (strikes in a row), or until what it was computed from
  changes (its fingerprint).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from negsync.core.backoff import Backoff
from negsync.core.model import TargetEndpoint
from negsync.errors import ProviderError, QuotaExceeded, TargetNotFound, TransientError


@dataclass(slots=True)
class Rejection:
    """An endpoint bisection isolated: left out of attaches until ``retry_at`` or a change."""

    reason: str
    retry_at: float
    fingerprint: int | None = None  # of what the member was computed from; None until next seen


@dataclass
class TargetState:
    """Mutable per-target bookkeeping; guarded by the reconciler's lock."""

    attaching: frozenset[TargetEndpoint] = frozenset()
    detaching: frozenset[TargetEndpoint] = frozenset()
    last_call: float = float("-inf")
    not_before: float = float("-inf")
    failures: int = 0
    error: str = ""
    ensured: bool = False
    rejected: dict[TargetEndpoint, Rejection] = field(default_factory=dict)
    strikes: dict[TargetEndpoint, int] = field(default_factory=dict)  # rejections in a row
    quota: str = ""

    @property
    def busy(self) -> bool:
        return bool(self.attaching or self.detaching)

    def isolate(self, member: TargetEndpoint, reason: str, *, policy: Backoff, now: float) -> None:
        """Leave an isolated member out for a capped, doubling back-off (5 min → 1 h by default)."""
        strikes = self.strikes.get(member, 0) + 1
        self.strikes[member] = strikes
        self.rejected[member] = Rejection(reason, now + policy.delay(strikes))

    def review_rejections(
        self,
        *,
        want: set[TargetEndpoint],
        fingerprint: Callable[[TargetEndpoint], int],
        now: float,
        rejected: dict[TargetEndpoint, str],
        requeue: list[float],
    ) -> None:
        """Release isolated members whose back-off ran out or whose inputs changed; report the rest."""
        for member in [m for m in self.strikes if m not in want]:
            del self.strikes[member]  # left the desired set: a later comeback starts afresh
        for member, rejection in list(self.rejected.items()):
            current = fingerprint(member)
            if rejection.fingerprint is None:
                rejection.fingerprint = current
            if member not in want or rejection.fingerprint != current:
                del self.rejected[member]  # its pod, node or binding changed: try it at once
                self.strikes.pop(member, None)
            elif now >= rejection.retry_at:
                del self.rejected[member]  # back-off over: one more try (strikes kept)
            else:
                wait = rejection.retry_at - now
                requeue.append(wait)
                rejected[member] = f"{rejection.reason} (retried in {wait:.0f}s, or at once when its pod, " \
                                   "node or the binding changes)"

    def note_failure(self, exc: ProviderError) -> None:
        """A missing target is ensured (re-created) on the next pass; a used-up quota is reported."""
        if isinstance(exc, TargetNotFound):
            self.ensured = False
        self.quota = str(exc) if isinstance(exc, QuotaExceeded) else ""

    def back_off(self, exc: Exception, *, policy: Backoff, cap: float, rng: random.Random, now: float) -> float:
        """Count a failure and park the target: the delay from ``policy``, at least the server's hint."""
        self.failures += 1
        delay = policy.delay(self.failures, rng=rng)
        hint = getattr(exc, "retry_after", None) if isinstance(exc, TransientError) else None
        if hint:
            delay = max(delay, float(hint))
        delay = min(delay, cap)
        self.not_before = now + delay
        return delay
