"""The reconciler's view of each target's actual members, kept the way the GKE transaction syncer keeps it.

A completed attach/detach is applied to the cached listing, so negsync's own writes cost no read.
The provider is listed only when the entry is older than ``max_age`` (the shorter of the resync
and member-list periods), after a call failed or its outcome is uncertain (the entry is dropped),
and for gate health polls.  Every completed transaction bumps the target's write count: a listing
that a write overtook (the count moved while it was in flight) is used once and never cached, and
the reconciler sends no plan computed from it.

The cache shares the reconciler's re-entrant lock instead of keeping its own: a pass reads the
write count and the members in flight under one lock, and a transaction's completion moves both
under one lock, so neither ever sees half of the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from negsync.core.model import Health, TargetEndpoint, TargetRef


class MemberCache:
    """Listed members per target with the time of their listing, and completed writes per target."""

    def __init__(self, *, lock: threading.RLock, max_age: float) -> None:
        self._lock = lock
        self._max_age = max_age
        # ref → (listed at, members).  A plain dict, not a TTLCache: applying our own writes must
        # not restart the entry's age, or a busy target would never be listed again.
        self._entries: dict[TargetRef, tuple[float, Mapping[TargetEndpoint, Health]]] = {}
        self._writes: dict[TargetRef, int] = {}  # completed transactions per target

    def fresh(
        self, ref: TargetRef, *, now: float, health_poll: Callable[[], float] | None = None
    ) -> Mapping[TargetEndpoint, Health] | None:
        """The cached members, or None when a listing is due.

        ``health_poll``: the gate needs fresh health, so an entry older than this many seconds
        with a member not yet passing is due as well (read only when it matters).
        """
        with self._lock:
            cached = self._entries.get(ref)
        if cached is None:
            return None
        listed_at, members = cached
        age = now - listed_at
        # age < 0: the clock stepped back; the entry is as old as we can tell, i.e. expired.
        if age >= self._max_age or age < 0:
            return None
        if health_poll is not None and age >= health_poll() and any(not h.lets_gate_pass for h in members.values()):
            return None
        return members

    def version(self, ref: TargetRef) -> int:
        """How many transactions on ``ref`` have completed; read before a listing or a diff."""
        with self._lock:
            return self._writes.get(ref, 0)

    def store(
        self, ref: TargetRef, members: Mapping[TargetEndpoint, Health], *, version: int, listed_at: float
    ) -> None:
        """Cache a listing started at ``version`` unless a write overtook it."""
        with self._lock:
            # A write that finished while we listed makes this list stale: use it once, never cache it.
            if self._writes.get(ref, 0) == version:
                self._entries[ref] = (listed_at, members)

    def wrote(
        self, ref: TargetRef, *, detached: Iterable[TargetEndpoint], attached: Iterable[TargetEndpoint], certain: bool
    ) -> None:
        """A transaction on ``ref`` completed: count it, and fold its outcome into the entry.

        ``certain``: every call answered, so the entry may take the outcome; otherwise (an error
        or an unknown outcome) the entry is dropped and the next pass lists.  A new mapping
        replaces the entry (readers may be iterating the old one), keeping the listing's
        timestamp so ``max_age`` still forces a real listing.
        """
        with self._lock:
            self._writes[ref] = self._writes.get(ref, 0) + 1
            cached = self._entries.get(ref)
            if not certain:
                self._entries.pop(ref, None)
                return
            if cached is None:
                return  # nothing cached: the next reconcile lists anyway
            listed_at, members = cached
            updated = dict(members)
            for member in detached:
                updated.pop(member, None)
            for member in attached:
                updated.setdefault(member, Health.INITIAL)
            self._entries[ref] = (listed_at, updated)

    def drop(self, ref: TargetRef | None = None) -> None:
        """Forget one target's entry (None: every entry); its next read lists."""
        with self._lock:
            if ref is None:
                self._entries.clear()
            else:
                self._entries.pop(ref, None)

    def keep_versions(self, named: set[TargetRef]) -> None:
        """Drop the write counts of targets no binding names any more."""
        with self._lock:
            for ref in [r for r in self._writes if r not in named]:
                del self._writes[ref]
