"""Which binding manages which target group: one process-wide registry, so a conflict is a condition, not a tug of war.

A binding owns its whole target group unless ``shared: true``; then the reconciler's
OwnershipStore limits detaches to what this binding registered.  Two bindings on one group where
either is not shared is a conflict: :data:`CLAIMS` lets the first binding keep the group and
raises :class:`OwnershipConflict` (naming the holder) for the second, from the provider's
``ensure_target``.  Claims live in memory: after a restart the first binding to reconcile wins
again (the kube layer can claim in creation order to make that deterministic).  No API call.
"""

from __future__ import annotations

import threading
from typing import Final

from negsync.core.model import BindingKey
from negsync.errors import OwnershipConflict

__all__ = ["CLAIMS", "TargetGroupClaims"]


class TargetGroupClaims:
    """Process-wide record of which binding manages which target group.

    A binding holds at most one group (its spec names one ARN); claiming another drops the old
    claim, so a spec edit moves the claim.  Several bindings may hold one group only if every one
    of them is ``shared``; otherwise the first claimant keeps it and later ones get
    :class:`OwnershipConflict`.  Claims live in memory: after a restart the first binding to
    reconcile wins again (the kube layer can claim in creation order to make that deterministic).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_arn: dict[str, dict[BindingKey, bool]] = {}
        self._by_binding: dict[BindingKey, str] = {}

    def claim(self, arn: str, binding: BindingKey, *, shared: bool) -> None:
        with self._lock:
            holders = self._by_arn.get(arn, {})
            for other, other_shared in sorted(holders.items()):
                if other == binding or (shared and other_shared):
                    continue
                if not other_shared:
                    why = f"binding {other} manages it without shared: true"
                else:
                    why = f"binding {other} shares it, but this binding does not set shared: true"
                raise OwnershipConflict(
                    f"target group {arn} is already in use: {why}; "
                    "set spec.target.awsTargetGroup.shared: true on every binding of the group to share it"
                )
            previous = self._by_binding.get(binding)
            if previous is not None and previous != arn:
                self._drop(binding, previous)
            self._by_arn.setdefault(arn, {})[binding] = shared
            self._by_binding[binding] = arn

    def release(self, binding: BindingKey) -> None:
        """Forget the binding's claim (binding deleted, or moved to another provider)."""
        with self._lock:
            arn = self._by_binding.get(binding)
            if arn is not None:
                self._drop(binding, arn)

    def _drop(self, binding: BindingKey, arn: str) -> None:
        holders = self._by_arn.get(arn, {})
        holders.pop(binding, None)
        if not holders:
            self._by_arn.pop(arn, None)
        self._by_binding.pop(binding, None)

    def holders(self, arn: str) -> dict[BindingKey, bool]:
        """Bindings holding ``arn`` → whether each one shares it."""
        with self._lock:
            return dict(self._by_arn.get(arn, {}))

    def clear(self) -> None:
        with self._lock:
            self._by_arn.clear()
            self._by_binding.clear()


#: The registry every :class:`AwsProvider` in this process uses unless given its own.
CLAIMS: Final = TargetGroupClaims()
