"""Who a NEG belongs to: the JSON in its ``description``, and when that was last checked.

The NEG ``description`` holds ``{"managed-by": "negsync", "cluster-uid", "namespace",
"binding"}``.  It is checked before every change — create-or-adopt in ``ensure_target``,
re-read before an attach/detach once the last check is ``ttl`` old (default 300 s, the
controller's resync period) or a change on the NEG failed, always before delete — and a NEG that
is not ours raises :class:`OwnershipConflict`; negsync never attaches to, detaches from or deletes
such a NEG.  NEGs have no update method, so the description can only change by
delete-and-recreate; :meth:`OwnershipChecks.verify` also compares the NEG's numeric id to catch
exactly that.  This module makes no API call: the caller reads the NEG and hands it in.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from negsync.core.clock import Clock
from negsync.core.model import BindingKey, TargetRef
from negsync.errors import OwnershipConflict

__all__ = ["MANAGED_BY", "NegOwner", "OwnershipChecks"]

MANAGED_BY: Final = "negsync"


@dataclass(frozen=True, slots=True)
class NegOwner:
    """Who a NEG belongs to, as recorded in its ``description``."""

    cluster_uid: str
    namespace: str
    binding: str

    def description(self) -> str:
        return json.dumps(
            {
                "managed-by": MANAGED_BY,
                "cluster-uid": self.cluster_uid,
                "namespace": self.namespace,
                "binding": self.binding,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, description: str | None) -> NegOwner | None:
        """The owner recorded in a description; None when it is not a negsync description."""
        try:
            data = json.loads(description or "")
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("managed-by") != MANAGED_BY:
            return None
        fields = [data.get(k) for k in ("cluster-uid", "namespace", "binding")]
        if not all(isinstance(f, str) and f for f in fields):
            return None
        return cls(str(fields[0]), str(fields[1]), str(fields[2]))

    def __str__(self) -> str:
        return f"binding {self.namespace}/{self.binding} of cluster {self.cluster_uid}"


@dataclass(frozen=True, slots=True)
class _Verified:
    """The last ownership check of one NEG."""

    neg_id: str
    checked_at: float


class OwnershipChecks:
    """Which binding each NEG serves, and when its description was last found to say so."""

    def __init__(self, *, cluster_uid: str, ttl: float, clock: Clock) -> None:
        self._cluster_uid = cluster_uid
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._owners: dict[TargetRef, BindingKey] = {}
        self._verified: dict[TargetRef, _Verified] = {}

    def assign(self, ref: TargetRef, binding: BindingKey) -> None:
        """``binding`` is the one that must own ``ref`` (from targets_for, adoption, ensure_target)."""
        with self._lock:
            self._owners[ref] = binding

    def check(self, ref: TargetRef, neg: Mapping[str, Any], binding: BindingKey | None) -> None:
        """Raise OwnershipConflict unless ``neg`` is this cluster's (and ``binding``'s, when given)."""
        owner = NegOwner.parse(neg.get("description"))
        if owner is None:
            raise OwnershipConflict(f"{ref} exists and is not managed by negsync; it is left untouched")
        expected = (self._cluster_uid, binding.namespace, binding.name) if binding else None
        if owner.cluster_uid != self._cluster_uid or (
            expected is not None and (owner.cluster_uid, owner.namespace, owner.binding) != expected
        ):
            raise OwnershipConflict(f"{ref} belongs to {owner}; it is left untouched")
        with self._lock:
            self._verified[ref] = _Verified(str(neg.get("id", "")), self._clock.now())

    def due(self, ref: TargetRef) -> bool:
        """Whether ``ref`` must be read and checked again before the next change."""
        with self._lock:
            last = self._verified.get(ref)
        return last is None or self._clock.now() - last.checked_at >= self._ttl

    def verify(self, ref: TargetRef, neg: Mapping[str, Any]) -> None:
        """Check a freshly read NEG against the binding assigned to ``ref``."""
        with self._lock:
            last = self._verified.get(ref)
            binding = self._owners.get(ref)
        if last is not None and last.neg_id and str(neg.get("id", "")) != last.neg_id:
            # Deleted and re-created behind our back: whatever it is now, re-check from scratch.
            self.invalidate(ref)
        self.check(ref, neg, binding)

    def invalidate(self, ref: TargetRef) -> None:
        """The NEG may have been deleted or replaced: the next change re-reads its owner first."""
        with self._lock:
            self._verified.pop(ref, None)

    def forget(self, ref: TargetRef) -> None:
        with self._lock:
            self._verified.pop(ref, None)
            self._owners.pop(ref, None)
