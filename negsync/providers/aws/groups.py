"""Target-group resolution: the ARN's ref, what DescribeTargetGroups says, the VPC's CIDRs, the zone rule.

negsync never creates or deletes target groups; a binding names one by ARN, and one target group
is one ``TargetRef("aws", <region>, <arn>)`` (the region comes from the ARN).

* **Cached descriptions.** DescribeTargetGroups once per ARN (a group's type, VPC and family
  cannot change).  VPC CIDRs (primary, secondary and IPv6 associations from DescribeVpcs) are
  cached for a few minutes, because EKS custom networking adds secondary CIDRs to live VPCs; a
  rejected batch that named a zone drops the cache at once (:meth:`TargetGroups.forget_vpc`).
* **Own zones outside the VPC.** IPs outside the VPC need a zone: ``all``, except on an ALB
  target group whose ``load_balancing.cross_zone.enabled`` attribute is ``false`` — there AWS
  refuses ``all`` and wants the endpoint's own zone (LBC issue #4477).  The attribute is read
  (DescribeTargetGroupAttributes) the first time an outside IP is registered in a group; a
  ValidationError about the zone switches the group to zones too; the choice is remembered per
  group.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from negsync.core.bindings import AwsTargetGroupTarget, TargetSpec
from negsync.core.clock import Clock
from negsync.core.model import TargetRef
from negsync.errors import InvalidTarget, TargetNotFound, TransientError

__all__ = ["TargetGroupInfo", "TargetGroups", "check_ref", "ref_of"]

log = logging.getLogger(__name__)

# VPC CIDRs change (secondary CIDRs for pods), target group types do not: only the former expires.
_VPC_CACHE_SECONDS: Final = 300.0

Call = Callable[..., dict[str, Any]]


@dataclass(frozen=True, slots=True)
class TargetGroupInfo:
    """What DescribeTargetGroups says about a group, cached per ARN."""

    arn: str
    name: str
    target_type: str
    vpc_id: str
    protocol: str
    port: int | None
    ip_family: str  # "ipv4" or "ipv6": the group's IpAddressType
    health_check_enabled: bool
    load_balancer_arns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _VpcCidrs:
    cidrs: tuple[str, ...]
    expires: float


def ref_of(spec: TargetSpec) -> TargetRef:
    """The one target of an ``awsTargetGroup`` spec."""
    if not isinstance(spec, AwsTargetGroupTarget):
        raise InvalidTarget(f"the aws provider cannot manage a {spec.kind!r} target")
    if not spec.region:
        raise InvalidTarget(f"{spec.arn!r} is not an ELBv2 target group ARN")
    return TargetRef("aws", spec.region, spec.arn)


def check_ref(ref: TargetRef) -> str:
    """The ARN of an AWS ref whose location is the ARN's region."""
    if ref.kind != "aws":
        raise InvalidTarget(f"the aws provider cannot manage {ref}")
    if AwsTargetGroupTarget(arn=ref.name).region != ref.location:
        raise InvalidTarget(f"{ref}: the location must be the region of the target group ARN")
    return ref.name


class TargetGroups:
    """Descriptions of target groups and their VPCs, read through the provider's paced ``call``."""

    def __init__(self, *, call: Call, clock: Clock) -> None:
        self._call = call
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, TargetGroupInfo] = {}
        self._vpcs: dict[tuple[str, str], _VpcCidrs] = {}
        self._own_zone: dict[str, bool] = {}

    def describe(self, ref: TargetRef) -> TargetGroupInfo:
        """DescribeTargetGroups once per ARN (a group's type, VPC and family cannot change)."""
        arn = check_ref(ref)
        with self._lock:
            cached = self._groups.get(arn)
        if cached is not None:
            return cached
        try:
            response = self._call("elbv2", ref.location, "DescribeTargetGroups", TargetGroupArns=[arn])
        except TargetNotFound:
            raise TargetNotFound(f"target group {arn} does not exist") from None
        groups = response.get("TargetGroups") or []
        if not groups:
            raise TargetNotFound(f"target group {arn} does not exist")
        raw = groups[0]
        port = raw.get("Port")
        info = TargetGroupInfo(
            arn=arn,
            name=str(raw.get("TargetGroupName", "")),
            target_type=str(raw.get("TargetType", "instance")),
            vpc_id=str(raw.get("VpcId", "")),
            protocol=str(raw.get("Protocol", "")),
            port=int(port) if port is not None else None,
            ip_family="ipv6" if raw.get("IpAddressType") == "ipv6" else "ipv4",
            health_check_enabled=bool(raw.get("HealthCheckEnabled", True)),
            load_balancer_arns=tuple(raw.get("LoadBalancerArns") or ()),
        )
        with self._lock:
            self._groups[arn] = info
        return info

    def known_cidrs(self, ref: TargetRef) -> tuple[str, ...] | None:
        """The CIDRs of the group's VPC if both are cached (no call); None when not known yet."""
        with self._lock:
            info = self._groups.get(ref.name)
            known = self._vpcs.get((ref.location, info.vpc_id)) if info is not None else None
        return known.cidrs if known is not None else None

    def vpc_cidrs(self, region: str, vpc_id: str) -> tuple[str, ...]:
        """IPv4 and IPv6 CIDRs associated with the VPC (DescribeVpcs, cached for a few minutes)."""
        key = (region, vpc_id)
        now = self._clock.now()
        with self._lock:
            cached = self._vpcs.get(key)
        if cached is not None and cached.expires > now:
            return cached.cidrs
        response = self._call("ec2", region, "DescribeVpcs", VpcIds=[vpc_id])
        vpcs = response.get("Vpcs") or []
        if not vpcs:
            raise InvalidTarget(f"VPC {vpc_id} of the target group does not exist")
        vpc = vpcs[0]
        live = ("associated", "associating")
        cidrs = {vpc["CidrBlock"]} if vpc.get("CidrBlock") else set()
        for assoc in vpc.get("CidrBlockAssociationSet") or ():
            if assoc.get("CidrBlockState", {}).get("State", "associated") in live:
                cidrs.add(assoc["CidrBlock"])
        for assoc in vpc.get("Ipv6CidrBlockAssociationSet") or ():
            if assoc.get("Ipv6CidrBlockState", {}).get("State", "associated") in live:
                cidrs.add(assoc["Ipv6CidrBlock"])
        result = tuple(sorted(cidrs))
        with self._lock:
            self._vpcs[key] = _VpcCidrs(result, now + _VPC_CACHE_SECONDS)
        return result

    def forget_vpc(self, region: str, vpc_id: str) -> None:
        with self._lock:
            self._vpcs.pop((region, vpc_id), None)

    def usable(self, ref: TargetRef) -> tuple[TargetGroupInfo, tuple[str, ...]]:
        """The group's description and its VPC's CIDRs; InvalidTarget unless its type is ``ip``."""
        info = self.describe(ref)
        if info.target_type != "ip":
            raise InvalidTarget(f"target group {info.name or ref.name} has target type {info.target_type!r}")
        return info, self.vpc_cidrs(ref.location, info.vpc_id)

    def wants_own_zone(self, ref: TargetRef, info: TargetGroupInfo) -> bool:
        """Whether IPs outside the VPC must name their own zone in ``ref`` (remembered per group).

        Only an ALB target group with cross-zone load balancing off refuses ``all`` (ELBv2 API
        reference, TargetDescription; LBC PR #4496 "this does not apply to NLB"); the group
        attribute says so.  ``use_load_balancer_configuration`` (the default) follows the ALB,
        where cross-zone is on.  If the attribute cannot be read, ``all`` is tried and AWS's
        ValidationError corrects it (:meth:`use_own_zone`).
        """
        with self._lock:
            known = self._own_zone.get(ref.name)
        if known is not None:
            return known
        own = False
        if info.protocol in ("HTTP", "HTTPS"):
            try:
                response = self._call("elbv2", ref.location, "DescribeTargetGroupAttributes", TargetGroupArn=ref.name)
            except (InvalidTarget, TransientError) as err:
                log.info("cannot read the attributes of %s (%s); trying zone 'all' first", ref, err)
                return False
            attributes = {a.get("Key"): a.get("Value") for a in response.get("Attributes") or ()}
            own = attributes.get("load_balancing.cross_zone.enabled") == "false"
        with self._lock:
            self._own_zone[ref.name] = own
        return own

    def uses_own_zone(self, ref: TargetRef) -> bool:
        """Whether ``ref`` is known to want own zones (False until decided: ``all``)."""
        with self._lock:
            return self._own_zone.get(ref.name, False)

    def use_own_zone(self, ref: TargetRef) -> None:
        """AWS said what the attribute did not (or could not be read): own zones from now on."""
        with self._lock:
            self._own_zone[ref.name] = True
