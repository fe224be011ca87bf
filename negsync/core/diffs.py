"""What to detach and what to attach: ``diff(desired, actual, in_flight)``.

Pure set arithmetic, kept separate so it can be property-tested: applying a plan to ``actual``
yields ``desired`` (for the members not in flight).  Members with a call in flight are left out
of both sides — their fate is decided by that call, and the next reconcile after it completes
sees the result — which is how changes arriving during a call coalesce into the next one.
``owned`` narrows what may be detached: on a shared target only what this cluster registered.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from negsync.core.model import TargetEndpoint


@dataclass(frozen=True, slots=True)
class Plan:
    detach: frozenset[TargetEndpoint]
    attach: frozenset[TargetEndpoint]

    def __bool__(self) -> bool:
        return bool(self.detach or self.attach)

    @property
    def size(self) -> int:
        return len(self.detach) + len(self.attach)


EMPTY_PLAN = Plan(frozenset(), frozenset())


def diff(
    desired: Set[TargetEndpoint],
    actual: Set[TargetEndpoint],
    in_flight: Set[TargetEndpoint] = frozenset(),
    *,
    owned: Set[TargetEndpoint] | None = None,
) -> Plan:
    """Detach ``actual - desired`` (only owned ones when ``owned`` is given), attach ``desired - actual``."""
    detach = (actual - desired) - in_flight
    if owned is not None:
        detach &= owned
    attach = (desired - actual) - in_flight
    return Plan(frozenset(detach), frozenset(attach))


def apply(plan: Plan, actual: Set[TargetEndpoint]) -> frozenset[TargetEndpoint]:
    """The member set after a plan succeeds (used by tests and by the in-memory provider)."""
    return frozenset((actual - plan.detach) | plan.attach)
