"""RegisterTargets and DeregisterTargets: validated first, in chunks of 200, deregistered as AWS reported.

* **Register.** Endpoints AWS would refuse raise :class:`InvalidEndpoints` before any call.
  IPs outside the VPC are registered in zone ``all``, or in their own zone (noted per binding by
  the provider's ``targets_for``) where the group wants that
  (:meth:`~negsync.providers.aws.groups.TargetGroups.wants_own_zone`); a ValidationError asking
  for a zone (LBC issue #4477) switches the group to own zones and registers the batch again.
  What was registered is remembered exactly as sent: a later DeregisterTargets names it as sent,
  without a listing in between (issue 18: own writes cost no read).
* **Deregister what AWS reported.** Each member's TargetDescription as DescribeTargetHealth last
  reported it (or as this process registered it) is what DeregisterTargets gets: a recomputed
  zone that differs deregisters nothing (LBC PR #4544).  DeregisterTargets succeeds for a target
  that is not registered, so success proves nothing for a member whose description had to be
  computed: then the group is listed afterwards, a member still registered (and not draining) is
  deregistered once more as reported, and if it is still there the call fails as transient.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from negsync.core.batching import chunks
from negsync.core.model import BindingKey, Health, TargetEndpoint, TargetRef
from negsync.errors import RejectedError, TransientError
from negsync.providers.aws.calls import error_code
from negsync.providers.aws.groups import TargetGroups
from negsync.providers.aws.health import ReportedTarget
from negsync.providers.aws.validation import (
    InvalidEndpoints,
    Network,
    inside,
    invalid_endpoints,
    networks,
    target_description,
)

__all__ = ["MAX_TARGETS_PER_CALL", "Registrations"]

log = logging.getLogger(__name__)

#: RegisterTargets / DeregisterTargets accept at most this many targets per call.
MAX_TARGETS_PER_CALL: Final = 200

# Words of AWS's ValidationError when an outside-VPC IP needs a zone other than "all" (LBC #4477).
_ZONE_NEEDED: Final = ("cross-zone load balancing is disabled", "must specify an availability zone")


def _needs_own_zone(err: BaseException) -> bool:
    """Whether a rejection is AWS asking for a zone other than ``all`` (LBC issue #4477)."""
    text = str(err).lower()
    return error_code(err) == "ValidationError" and any(words in text for words in _ZONE_NEEDED)


class Registrations:
    """What is registered in each target group as AWS describes it, and the calls that change it."""

    def __init__(
        self,
        *,
        call: Callable[..., dict[str, Any]],
        groups: TargetGroups,
        list_members: Callable[[TargetRef], Mapping[TargetEndpoint, Health]],
    ) -> None:
        self._call = call
        self._groups = groups
        self._list_members = list_members
        self._lock = threading.Lock()
        # Per target group: each member as DescribeTargetHealth last reported it (deregister with
        # exactly that), and per binding (several shared bindings may feed one group) the zones of
        # its desired endpoints outside the VPC.
        self._reported: dict[str, dict[TargetEndpoint, ReportedTarget]] = {}
        self._endpoint_zones: dict[str, dict[BindingKey, dict[TargetEndpoint, str]]] = {}

    def note_zones(self, ref: TargetRef, binding: BindingKey, zones: Mapping[TargetEndpoint, str]) -> None:
        with self._lock:
            self._endpoint_zones.setdefault(ref.name, {})[binding] = dict(zones)

    def drop_zones(self, ref: TargetRef, binding: BindingKey) -> None:
        with self._lock:
            self._endpoint_zones.get(ref.name, {}).pop(binding, None)

    def listed(self, ref: TargetRef, reported: Mapping[TargetEndpoint, ReportedTarget]) -> None:
        """A DescribeTargetHealth of ``ref`` described its members so."""
        with self._lock:
            self._reported[ref.name] = dict(reported)

    def reported(self, ref: TargetRef) -> dict[TargetEndpoint, ReportedTarget]:
        """The members of ``ref`` as the last DescribeTargetHealth described them."""
        with self._lock:
            return dict(self._reported.get(ref.name, {}))

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        """RegisterTargets, validated first and chunked to 200 (the reconciler chunks too)."""
        if not endpoints:
            return
        info, cidrs = self._groups.usable(ref)
        vpc = networks(cidrs)
        bad = invalid_endpoints(endpoints, family=info.ip_family, vpc_cidrs=cidrs)
        outside = [e for e in endpoints if e not in bad and not inside(e.ip, vpc)]
        own_zone = self._groups.wants_own_zone(ref, info) if outside else False
        if own_zone:
            zones = self._zones_of(ref)
            for endpoint in outside:
                if not zones.get(endpoint):
                    bad[endpoint] = (
                        f"{endpoint.ip} is outside the VPC and cross-zone load balancing is off on the target "
                        "group, so AWS needs the endpoint's zone, which is unknown (no topology.kubernetes.io/zone "
                        "on its node)"
                    )
        if bad:
            sample = "; ".join(f"{e}: {why}" for e, why in sorted(bad.items())[:5])
            group = info.name or ref.name
            raise InvalidEndpoints(
                f"{len(bad)} of {len(endpoints)} endpoints cannot be targets of {group}: {sample}",
                reasons=bad,
            )
        for batch in chunks(set(endpoints), limit=MAX_TARGETS_PER_CALL):
            try:
                self._register(ref, batch, vpc)
            except RejectedError as err:
                if own_zone or not _needs_own_zone(err) or not any(not inside(e.ip, vpc) for e in batch):
                    if any(not inside(e.ip, vpc) for e in batch):
                        # Perhaps the VPC gained a CIDR since we cached it and the zone was wrong.
                        log.info("RegisterTargets rejected on %s; re-reading the CIDRs of %s", ref, info.vpc_id)
                        self._groups.forget_vpc(ref.location, info.vpc_id)
                    raise
                # AWS says what the attribute did not (or could not be read): remember it and retry.
                log.info("%s wants zones for IPs outside its VPC (cross-zone off); registering with them", ref)
                self._groups.use_own_zone(ref)
                self.attach(ref, batch)
                own_zone = True

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        """DeregisterTargets with the descriptions AWS reported, in chunks of 200; then confirm by listing.

        A member named exactly as AWS reported it, or as this process registered it, needs no
        confirmation (see the module docstring).
        """
        if not endpoints:
            return
        _, cidrs = self._groups.usable(ref)
        vpc = networks(cidrs)
        with self._lock:
            known = set(self._reported.get(ref.name, {}))
        for batch in chunks(set(endpoints), limit=MAX_TARGETS_PER_CALL):
            self._deregister(ref, batch, vpc)
        if all(e in known for e in endpoints):
            # Every description was one AWS reported or one negsync registered and AWS accepted:
            # AWS matches it exactly, so success is proof and no confirming listing is spent.
            with self._lock:
                kept = dict(self._reported.get(ref.name, {}))
                for e in endpoints:
                    kept.pop(e, None)
                self._reported[ref.name] = kept
            return
        stuck = self._still_registered(ref, endpoints)
        if stuck:
            log.info("%d targets still registered in %s after DeregisterTargets; retrying as reported", len(stuck), ref)
            for batch in chunks(stuck, limit=MAX_TARGETS_PER_CALL):
                self._deregister(ref, batch, vpc)
            stuck = self._still_registered(ref, endpoints)
        if stuck:
            sample = ", ".join(str(e) for e in sorted(stuck)[:5])
            raise TransientError(
                f"DeregisterTargets on {ref.name} succeeded, but {len(stuck)} targets are still registered: {sample}"
            )

    def _zones_of(self, ref: TargetRef) -> dict[TargetEndpoint, str]:
        with self._lock:
            per_binding = list(self._endpoint_zones.get(ref.name, {}).values())
        merged: dict[TargetEndpoint, str] = {}
        for zones in per_binding:
            merged.update(zones)
        return merged

    def _own_zones(self, ref: TargetRef) -> dict[TargetEndpoint, str] | None:
        """The endpoints' zones if ``ref`` registers outside IPs in their own zone, else None ("all")."""
        return self._zones_of(ref) if self._groups.uses_own_zone(ref) else None

    def _register(self, ref: TargetRef, batch: Sequence[TargetEndpoint], vpc: Sequence[Network]) -> None:
        zones = self._own_zones(ref)
        targets = [target_description(e, vpc, zones) for e in batch]
        self._call("elbv2", ref.location, "RegisterTargets", TargetGroupArn=ref.name, Targets=targets)
        # AWS now holds exactly these descriptions: a later DeregisterTargets names them as sent.
        with self._lock:
            known = dict(self._reported.get(ref.name, {}))
            for member, target in zip(batch, targets, strict=True):
                zone = target.get("AvailabilityZone")
                known[member] = ReportedTarget(str(target["Id"]), int(target["Port"]), str(zone) if zone else None)
            self._reported[ref.name] = known

    def _deregister(self, ref: TargetRef, batch: Sequence[TargetEndpoint], vpc: Sequence[Network]) -> None:
        # What AWS reported for the member, exactly; a computed description only for members
        # never listed (e.g. an attach whose response was lost, detached before the next list).
        reported = self.reported(ref)
        zones = self._own_zones(ref)
        targets = [reported[e].description() if e in reported else target_description(e, vpc, zones) for e in batch]
        self._call("elbv2", ref.location, "DeregisterTargets", TargetGroupArn=ref.name, Targets=targets)

    def _still_registered(self, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> list[TargetEndpoint]:
        present = self._list_members(ref)
        return [e for e in endpoints if e in present and present[e] is not Health.DRAINING]
