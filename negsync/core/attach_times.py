"""When each attach completed, kept per call until a member listing can time its members.

"Attach completed → first healthy report" (``negsync_attach_healthy_latency_seconds``, the
calibration timeline's ``attach`` lines) needs the completion time of every member's attach until
the first listing that shows the member healthy — or shows that the load balancer checks no health
at all, so nothing will ever time it.  For a binding without a readiness gate that listing comes at
the member listing period (60 s by default), so at 100k endpoints the times of every fresh member
are held at once.

A dict entry per member cost ~160 B (the ``(ref, member)`` key tuple and the slot).  Here one
record per attach *call* holds its completion time and the tuple of members it carried — the
member objects are the ones the member cache already holds, so a member costs one pointer (8 B)
plus its share of the record.  The listing that times a target walks that target's records.

Invariants: a member is in at most one record of its target (a later attach moves it to the newer
record; a detach removes it), and a record with no members left is dropped, so what is kept is
bounded by the members attached since their target's last listing.  Not thread-safe: the
reconciler calls it under its lock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from negsync.core.model import Health, TargetEndpoint, TargetRef


@dataclass(frozen=True, slots=True)
class AttachCall:
    """One completed attach: when it finished and the members still waiting to be timed."""

    done_at: float
    members: tuple[TargetEndpoint, ...]


class AttachTimes:
    """Attach completion times per target, one :class:`AttachCall` per call, oldest first."""

    def __init__(self) -> None:
        self._calls: dict[TargetRef, list[AttachCall]] = {}

    def attached(self, ref: TargetRef, members: Collection[TargetEndpoint], *, done_at: float) -> None:
        """An attach of ``members`` completed at ``done_at``; it supersedes their earlier attaches."""
        if not members:
            return
        self._drop(ref, members)
        self._calls.setdefault(ref, []).append(AttachCall(done_at, tuple(members)))

    def detached(self, ref: TargetRef, members: Collection[TargetEndpoint]) -> None:
        """The members left the target: their attach can no longer be timed."""
        self._drop(ref, members)

    def listed(
        self, ref: TargetRef, members: Mapping[TargetEndpoint, Health], *, now: float
    ) -> list[tuple[TargetEndpoint, float]]:
        """A listing of ``ref``: the (member, seconds since its attach) it shows healthy for the first time.

        A member listed ``NO_HEALTH_CHECK`` is forgotten (no health check will ever time it); a
        member not listed yet, or not healthy yet, keeps its time for a later listing.
        """
        calls = self._calls.get(ref)
        if not calls:
            return []
        timed: list[tuple[TargetEndpoint, float]] = []
        kept: list[AttachCall] = []
        for call in calls:
            waiting: list[TargetEndpoint] = []
            for member in call.members:
                health = members.get(member)
                if health is Health.HEALTHY:
                    timed.append((member, now - call.done_at))
                elif health is not Health.NO_HEALTH_CHECK:
                    waiting.append(member)
            if len(waiting) == len(call.members):
                kept.append(call)
            elif waiting:
                kept.append(AttachCall(call.done_at, tuple(waiting)))
        self._store(ref, kept)
        return timed

    def forget(self, refs: Iterable[TargetRef]) -> None:
        """Targets no binding names any more (deleted, or dropped from every binding)."""
        for ref in refs:
            self._calls.pop(ref, None)

    def targets(self) -> set[TargetRef]:
        return set(self._calls)

    def __len__(self) -> int:
        """Members waiting to be timed, over every target."""
        return sum(len(call.members) for calls in self._calls.values() for call in calls)

    def waiting(self, ref: TargetRef) -> dict[TargetEndpoint, float]:
        """The members of ``ref`` waiting to be timed, with their attach completion time."""
        return {member: call.done_at for call in self._calls.get(ref, ()) for member in call.members}

    def _drop(self, ref: TargetRef, members: Collection[TargetEndpoint]) -> None:
        calls = self._calls.get(ref)
        if not calls:
            return
        gone = members if isinstance(members, (set, frozenset)) else set(members)
        kept: list[AttachCall] = []
        for call in calls:
            if gone.isdisjoint(call.members):
                kept.append(call)
                continue
            left = tuple(m for m in call.members if m not in gone)
            if left:
                kept.append(AttachCall(call.done_at, left))
        self._store(ref, kept)

    def _store(self, ref: TargetRef, calls: list[AttachCall]) -> None:
        if calls:
            self._calls[ref] = calls
        else:
            self._calls.pop(ref, None)


__all__ = ["AttachCall", "AttachTimes"]
