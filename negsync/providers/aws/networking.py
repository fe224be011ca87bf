"""Security-group rules for TargetBindings: ``spec.target.awsTargetGroup.networking``, as LBC's ``networking``.

The load balancer reaches pod IPs directly, so the security group on the pods' ENIs must admit
it on the pod port; without this section users edit rules by hand.  :class:`SecurityGroupRules`
keeps, per security group, the union of the rules every binding of this process asks for:

* **Which group.** ``networking.securityGroup`` if set; otherwise the security group of the ENIs
  holding the endpoints' IPs (DescribeNetworkInterfaces, filter ``addresses.private-ip-address``,
  which matches secondary IPs — where the VPC CNI puts pod IPs).  If those ENIs carry more than one
  group the binding must name one (a condition says so), because opening the wrong group is
  worse than opening none.  The answer is cached per IP.
* **Ownership.** Every rule negsync authorizes carries the description
  :data:`OWNER_DESCRIPTION`, as LBC's networking manager marks its rules with
  ``elbv2.k8s.aws/targetGroupBinding=shared`` (``pkg/targetgroupbinding/networking_manager.go``).
  Rules are read back with DescribeSecurityGroupRules; only rules with that description are ever
  revoked, and only those some binding of this process asked for earlier and none asks for now
  (a rule with negsync's description that no binding here ever wanted — left by an earlier
  process — is kept: the safe side).  Rules without the description are never touched.  A rule
  that already exists without it (``InvalidPermission.Duplicate``) is someone else's: left alone.
* **Cost.** A group is synchronised (one DescribeSecurityGroupRules, then authorize/revoke what
  differs) only when the union of its rules changed, or every :data:`RESYNC_SECONDS`.

The EC2 calls go through the provider's ``call`` (pacing, error mapping, and every page of
DescribeNetworkInterfaces and DescribeSecurityGroupRules through botocore's paginators); nothing here
imports boto3.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from negsync.core.batching import chunks
from negsync.core.bindings import AwsNetworking
from negsync.core.clock import Clock
from negsync.core.model import BindingKey, TargetEndpoint
from negsync.errors import InvalidTarget, ProviderError

__all__ = ["OWNER_DESCRIPTION", "RESYNC_SECONDS", "IngressPermission", "SecurityGroupRules", "desired_permissions"]

log = logging.getLogger(__name__)

#: The description on every rule negsync authorizes; the mark of ownership.
OWNER_DESCRIPTION: Final = "negsync.io/targetbinding=shared"
#: A group whose wanted rules did not change is still read back this often (someone may revoke ours).
RESYNC_SECONDS: Final = 300.0
# DescribeNetworkInterfaces accepts at most 200 values per filter (EC2 API reference, Filter).
_FILTER_VALUES: Final = 200

Call = Callable[..., dict[str, Any]]


@dataclass(frozen=True, slots=True, order=True)
class IngressPermission:
    """One ingress rule: ``protocol`` ``port`` from ``peer`` (a security group ID or a CIDR)."""

    protocol: str
    port: int
    peer: str

    def ip_permission(self) -> dict[str, Any]:
        """The EC2 ``IpPermissions`` entry, marked with :data:`OWNER_DESCRIPTION`."""
        permission: dict[str, Any] = {"IpProtocol": self.protocol, "FromPort": self.port, "ToPort": self.port}
        if self.peer.startswith("sg-"):
            permission["UserIdGroupPairs"] = [{"GroupId": self.peer, "Description": OWNER_DESCRIPTION}]
        elif ":" in self.peer:
            permission["Ipv6Ranges"] = [{"CidrIpv6": self.peer, "Description": OWNER_DESCRIPTION}]
        else:
            permission["IpRanges"] = [{"CidrIp": self.peer, "Description": OWNER_DESCRIPTION}]
        return permission


def desired_permissions(networking: AwsNetworking, endpoints: Iterable[TargetEndpoint]) -> frozenset[IngressPermission]:
    """Rules the binding asks for; a rule without ``ports`` opens the endpoints' own (TCP) ports."""
    endpoint_ports = sorted({("tcp", e.port) for e in endpoints})
    wanted: set[IngressPermission] = set()
    for rule in networking.ingress:
        for protocol, port in rule.ports or tuple(endpoint_ports):
            wanted.update(IngressPermission(protocol, port, peer) for peer in rule.peers)
    return frozenset(wanted)


def _permission_of(rule: Mapping[str, Any]) -> IngressPermission | None:
    """A DescribeSecurityGroupRules entry as an :class:`IngressPermission` (None: not one we make)."""
    if rule.get("IsEgress") or rule.get("FromPort") != rule.get("ToPort"):
        return None
    peer = (rule.get("ReferencedGroupInfo") or {}).get("GroupId") or rule.get("CidrIpv4") or rule.get("CidrIpv6")
    if not peer:
        return None
    return IngressPermission(str(rule.get("IpProtocol", "")), int(rule.get("FromPort") or 0), str(peer))


class SecurityGroupRules:
    """The rules of every binding with ``networking``, kept on their security groups."""

    def __init__(self, *, call: Call, clock: Clock) -> None:
        self._call = call
        self._clock = clock
        self._lock = threading.Lock()
        # (region, group) → binding → the rules it wants there.
        self._wanted: dict[tuple[str, str], dict[BindingKey, frozenset[IngressPermission]]] = {}
        self._group_of: dict[BindingKey, tuple[str, str]] = {}
        # (region, group) → every rule a binding of this process ever wanted there (revocable ones).
        self._ever: dict[tuple[str, str], set[IngressPermission]] = {}
        # (region, group) → (the union last written, when).
        self._synced: dict[tuple[str, str], tuple[frozenset[IngressPermission], float]] = {}
        self._eni_groups: dict[tuple[str, str], tuple[str, ...]] = {}  # (region, ip) → ENI's groups

    def reconcile(
        self, *, region: str, vpc_id: str, binding: BindingKey, networking: AwsNetworking | None,
        endpoints: Iterable[TargetEndpoint],
    ) -> str | None:
        """Keep ``binding``'s rules; returns the security group kept (None: no networking section)."""
        if networking is None or not networking.ingress:
            self.release(binding)
            return None
        members = list(endpoints)
        group = networking.security_group or self._endpoint_group(region, vpc_id, members)
        if not group:
            return None  # no endpoints yet: nothing to open, nothing to find the group by
        wanted = desired_permissions(networking, members)
        key = (region, group)
        with self._lock:
            previous = self._group_of.get(binding)
            self._group_of[binding] = key
            self._wanted.setdefault(key, {})[binding] = wanted
            self._ever.setdefault(key, set()).update(wanted)
            if previous is not None and previous != key:
                self._wanted.get(previous, {}).pop(binding, None)
        if previous is not None and previous != key:
            self._sync(previous)
        self._sync(key)
        return group

    def release(self, binding: BindingKey) -> None:
        """The binding is gone (or dropped its networking): revoke what only it needed."""
        with self._lock:
            key = self._group_of.pop(binding, None)
            if key is not None:
                self._wanted.get(key, {}).pop(binding, None)
        if key is not None:
            self._sync(key, force=True)

    # -- internals ---------------------------------------------------------------------------------------
    def _endpoint_group(self, region: str, vpc_id: str, endpoints: list[TargetEndpoint]) -> str:
        ips = sorted({e.ip for e in endpoints})
        with self._lock:
            unknown = [ip for ip in ips if (region, ip) not in self._eni_groups]
        for batch in chunks(unknown, limit=_FILTER_VALUES):
            response = self._call(
                "ec2", region, "DescribeNetworkInterfaces",
                Filters=[{"Name": "addresses.private-ip-address", "Values": list(batch)},
                         {"Name": "vpc-id", "Values": [vpc_id]}],
            )
            with self._lock:
                for eni in response.get("NetworkInterfaces") or ():
                    groups = tuple(sorted(str(g["GroupId"]) for g in eni.get("Groups") or ()))
                    for address in eni.get("PrivateIpAddresses") or ():
                        self._eni_groups[(region, str(address.get("PrivateIpAddress")))] = groups
        with self._lock:
            found = {self._eni_groups[(region, ip)] for ip in ips if (region, ip) in self._eni_groups}
        candidates = sorted({g for combination in found for g in combination})
        if not candidates:
            if ips:
                raise InvalidTarget(
                    f"no ENI in {vpc_id} holds the endpoints' IPs ({', '.join(ips[:3])}...); "
                    "set spec.target.awsTargetGroup.networking.securityGroup"
                )
            return ""
        if len(candidates) > 1:
            raise InvalidTarget(
                f"the endpoints' ENIs carry several security groups ({', '.join(candidates)}); name the one to open "
                "in spec.target.awsTargetGroup.networking.securityGroup"
            )
        return candidates[0]

    def _sync(self, key: tuple[str, str], *, force: bool = False) -> None:
        region, group = key
        now = self._clock.now()
        with self._lock:
            union = frozenset().union(*self._wanted.get(key, {}).values())
            last = self._synced.get(key)
            revocable = set(self._ever.get(key, set()))
        if not force and last is not None and last[0] == union and now - last[1] < RESYNC_SECONDS:
            return
        response = self._call("ec2", region, "DescribeSecurityGroupRules",
                              Filters=[{"Name": "group-id", "Values": [group]}])
        ours: dict[IngressPermission, str] = {}
        others: set[IngressPermission] = set()
        for rule in response.get("SecurityGroupRules") or ():
            permission = _permission_of(rule)
            if permission is None:
                continue
            if rule.get("Description") == OWNER_DESCRIPTION:
                ours[permission] = str(rule["SecurityGroupRuleId"])
            else:
                others.add(permission)
        missing = sorted(union - set(ours) - others)
        extra = sorted(p for p in set(ours) - union if p in revocable)
        for permission in missing:
            try:
                self._call("ec2", region, "AuthorizeSecurityGroupIngress", GroupId=group,
                           IpPermissions=[permission.ip_permission()])
            except ProviderError as err:
                if "InvalidPermission.Duplicate" not in str(err):
                    raise
                log.info("rule %s on %s already exists (not negsync's); left as is", permission, group)
        if extra:
            self._call("ec2", region, "RevokeSecurityGroupIngress", GroupId=group,
                       SecurityGroupRuleIds=[ours[p] for p in extra])
            with self._lock:
                self._ever.get(key, set()).difference_update(extra)
        if missing or extra:
            log.info("security group %s: authorized %d rules, revoked %d", group, len(missing), len(extra))
        with self._lock:
            self._synced[key] = (union, now)
