"""Members and health from DescribeTargetHealth, and how often the readiness gates may poll it.

* **Health.** DescribeTargetHealth is both the actual member set and the health:
  initial/healthy/unhealthy/unused/draining map one-to-one onto :class:`Health`; ``unavailable``
  is :attr:`Health.NO_HEALTH_CHECK` when the group has health checks disabled, else UNKNOWN.
  Draining members do not count as present (the reconciler registers a reused pod IP again).
* **Deregister what AWS reported.** Each target comes back as AWS recorded it (Id, Port,
  AvailabilityZone): :class:`ReportedTarget` keeps exactly that for DeregisterTargets, because a
  recomputed zone that differs deregisters nothing (LBC PR #4544).
* **One call.** DescribeTargetHealth has no paginator in botocore's model (elbv2 2015-12-01
  ``paginators-1.json`` lists none, and ``DescribeTargetHealthInput`` has no ``Marker``): one
  call returns every target.
* **Poll budget.** Health polls share the Describe budget: :class:`HealthPolls` spaces the polls
  of one target group so that all groups polled in the last minute fit in
  :data:`HEALTH_POLL_SHARE` of it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from negsync.core.clock import Clock
from negsync.core.model import Health, TargetEndpoint
from negsync.providers.aws.validation import canonical_ip

__all__ = ["HEALTH_POLL_SHARE", "HealthPolls", "ReportedTarget", "health_from_state", "read_target_health"]

#: The share of the Describe budget that health polls for readiness gates may use.
HEALTH_POLL_SHARE: Final = 0.5
# A group counts as being polled for this long after its last DescribeTargetHealth.
_POLL_WINDOW: Final = 60.0

_HEALTH_STATES: Final[Mapping[str, Health]] = {
    "initial": Health.INITIAL,
    "healthy": Health.HEALTHY,
    "unhealthy": Health.UNHEALTHY,
    "unused": Health.UNUSED,
    "draining": Health.DRAINING,
    # "unhealthy.draining" is the NLB's state for a draining target that also fails its checks.
    "unhealthy.draining": Health.DRAINING,
}


@dataclass(frozen=True, slots=True)
class ReportedTarget:
    """A TargetDescription exactly as DescribeTargetHealth returned it: what DeregisterTargets needs."""

    id: str
    port: int
    zone: str | None = None

    def description(self) -> dict[str, Any]:
        target: dict[str, Any] = {"Id": self.id, "Port": self.port}
        if self.zone:
            target["AvailabilityZone"] = self.zone
        return target


def health_from_state(state: str, *, health_check_enabled: bool = True) -> Health:
    """Map a DescribeTargetHealth state onto :class:`Health` (the readiness gate passes on HEALTHY)."""
    if state == "unavailable":
        # Reported when the group's health checks are disabled: the LB routes without checking.
        return Health.NO_HEALTH_CHECK if not health_check_enabled else Health.UNKNOWN
    return _HEALTH_STATES.get(state, Health.UNKNOWN)


def read_target_health(
    response: Mapping[str, Any], *, default_port: int | None, health_check_enabled: bool
) -> tuple[dict[TargetEndpoint, Health], dict[TargetEndpoint, ReportedTarget]]:
    """Members with health, and each member's description as reported, from one DescribeTargetHealth."""
    members: dict[TargetEndpoint, Health] = {}
    reported: dict[TargetEndpoint, ReportedTarget] = {}
    for description in response.get("TargetHealthDescriptions") or ():
        target = description.get("Target") or {}
        port = target.get("Port", default_port)
        if "Id" not in target or port is None:
            continue
        state = (description.get("TargetHealth") or {}).get("State", "")
        member = TargetEndpoint(canonical_ip(str(target["Id"])), int(port))
        members[member] = health_from_state(state, health_check_enabled=health_check_enabled)
        zone = target.get("AvailabilityZone")
        reported[member] = ReportedTarget(str(target["Id"]), int(port), str(zone) if zone else None)
    return members, reported


class HealthPolls:
    """When each target group's health was last polled, and the interval that keeps polls within budget."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._polled: dict[str, float] = {}  # target group ARN → when its health was last polled

    def polled(self, arn: str) -> None:
        with self._lock:
            self._polled[arn] = self._clock.now()

    def interval(self, arn: str, *, describe_rate: float | None) -> float:
        """Least seconds between two polls of ``arn`` so that all polled groups fit the budget.

        Every target group polled in the last minute takes one DescribeTargetHealth per interval;
        together they may use :data:`HEALTH_POLL_SHARE` of ``describe_rate`` (the tightest group
        DescribeTargetHealth pays into), leaving the rest for DescribeTargetGroups, attribute
        reads and other tools.  30 gated groups at 5/s × 0.5 → one poll per group every 12 s.
        """
        if describe_rate is None:
            return 0.0
        now = self._clock.now()
        with self._lock:
            for stale in [a for a, at in self._polled.items() if now - at > _POLL_WINDOW]:
                del self._polled[stale]
            polled = len(self._polled | {arn: now})
        return polled / (describe_rate * HEALTH_POLL_SHARE)
