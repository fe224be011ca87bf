"""Members and health of a NEG, read from ``listNetworkEndpoints`` as GKE reads them.

ingress-gce ``pkg/neg/readiness/poller.go`` and ``pkg/neg/syncers/utils.go``:
``listNetworkEndpoints`` with ``healthStatus: SHOW`` is both the actual member set and its
health.  Every listed endpoint is a member whatever its state (a DRAINING member is not attached
again); only ``healths`` entries naming a backend service count; HEALTHY in any of them wins,
then DRAINING, UNHEALTHY, UNKNOWN.  No counted entry means no backend service health-checks the
NEG → :attr:`Health.NO_HEALTH_CHECK` (the gate passes with reason NoHealthCheck) — unless other
endpoints of the same NEG have one, or the caller knows a health-checked backend uses it; then
the endpoint has not been probed yet → :attr:`Health.INITIAL`.  Pure functions over the payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from negsync.core.model import Health, TargetEndpoint
from negsync.providers.gcp.naming import last_segment

__all__ = ["health_from_item", "is_health_checked", "members_with_health"]

_HEALTH_STATES: Final[Mapping[str, Health]] = {
    "HEALTHY": Health.HEALTHY,
    "UNHEALTHY": Health.UNHEALTHY,
    "DRAINING": Health.DRAINING,
    "UNKNOWN": Health.UNKNOWN,
}


def _counted(entry: Mapping[str, Any]) -> bool:
    """Whether a ``healths`` entry is a backend service's health check.

    ingress-gce pkg/neg/readiness/poller.go (hasSupportedHealthStatus, getHealthyBackendService)
    counts only entries naming a backend service; others (e.g. forwarding-rule-only entries of a
    passthrough load balancer) neither pass the gate nor prove the NEG is health-checked.
    """
    service = entry.get("backendService")
    return isinstance(service, Mapping) and bool(service.get("backendService"))


def is_health_checked(item: Mapping[str, Any]) -> bool:
    return any(_counted(h) for h in item.get("healths") or () if isinstance(h, Mapping))


def health_from_item(item: Mapping[str, Any], *, health_checked: bool) -> Health:
    """One ``listNetworkEndpoints`` item's health, read as GKE reads it.

    ingress-gce pkg/neg/readiness/poller.go: the gate passes when the endpoint is HEALTHY in *any*
    backend service (getHealthyBackendService), so HEALTHY wins over every other state; otherwise
    DRAINING, UNHEALTHY, then UNKNOWN.  No counted entry means nothing health-checks the NEG,
    unless ``health_checked`` says it is just not probed yet (the poller's healthChecked flag).
    """
    states = {str(h.get("healthState") or "UNKNOWN") for h in item.get("healths") or ()
              if isinstance(h, Mapping) and _counted(h)}
    if not states:
        return Health.INITIAL if health_checked else Health.NO_HEALTH_CHECK
    for state in ("HEALTHY", "DRAINING", "UNHEALTHY"):
        if state in states:
            return _HEALTH_STATES[state]
    return Health.UNKNOWN


def members_with_health(
    items: Iterable[Mapping[str, Any]], *, health_check_known: Callable[[], bool] | None = None
) -> dict[TargetEndpoint, Health]:
    """Every listed endpoint of one NEG (all pages) with its health.

    One endpoint reporting health proves a health-checked backend uses the NEG: the others are
    merely not probed yet, and must not pass the readiness gate as NoHealthCheck.
    ``health_check_known`` (asked only when no endpoint reports health) says whether a
    health-checked backend service is known to use the NEG.
    """
    listed = list(items)
    checked = any(is_health_checked(item) for item in listed) or bool(health_check_known and health_check_known())
    members: dict[TargetEndpoint, Health] = {}
    for item in listed:
        raw = item.get("networkEndpoint") or {}
        if not raw.get("ipAddress") or raw.get("port") is None:
            continue
        member = TargetEndpoint(str(raw["ipAddress"]), int(raw["port"]), last_segment(raw.get("instance")))
        members[member] = health_from_item(item, health_checked=checked)
    return members
