"""What goes into a reconcile and what comes out: :class:`DesiredBinding` in, :class:`ReconcileResult` out.

Frozen records, so a result can be handed to the status writer, telemetry and tests while the
reconciler moves on.  The kube layer builds a :class:`DesiredBinding` from its caches for every
pass (level-based: never a replay of an earlier one) and turns a :class:`ReconcileResult` into the
binding's status, readiness gates and Events; one :class:`TargetStatus` per target carries the
counts the status shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from negsync.core.bindings import BindingSpec
from negsync.core.endpoints import Skipped
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef


@dataclass(frozen=True, slots=True)
class DesiredBinding:
    """Everything a reconcile needs to know about one binding, read from the caches."""

    key: BindingKey
    spec: BindingSpec
    endpoints: tuple[Endpoint, ...] = ()
    terminating: tuple[Endpoint, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    deleting: bool = False
    # What an endpoint was computed from beyond its own record (its pod's and node's state), for
    # retrying an isolated endpoint at once when they change; None: the Endpoint record alone.
    inputs: Callable[[Endpoint], object] | None = None


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One target's counts, as the binding's status shows them."""

    ref: TargetRef
    desired: int
    registered: int
    healthy: int
    draining: int
    pending: int  # members in flight or waiting for a call
    error: str = ""


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one pass found and did; ``requeue_after`` says when the key must come back."""

    key: BindingKey
    targets: tuple[TargetStatus, ...] = ()
    health: Mapping[TargetEndpoint, Health] = field(default_factory=dict)
    rejected: Mapping[TargetEndpoint, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    requeue_after: float | None = None
    urgent: bool = False  # a detach is waiting (min interval or back-off): re-queue in the priority lane
    finalized: bool = False
    retained: tuple[TargetRef, ...] = ()  # targets left in place on deletion (still in use)
    quota_exceeded: tuple[str, ...] = ()  # a resource quota stops progress: waiting alone won't help

    @property
    def synced(self) -> bool:
        return not self.errors and not self.conflicts and all(t.pending == 0 for t in self.targets)

    def count(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.targets)
