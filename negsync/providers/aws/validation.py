"""Which endpoints an ``ip`` target group can take, and the TargetDescription to register each with (pure).

* **Validation lives here.** The real API rejects target IDs that are not IPs of the group's
  family, ports outside 1-65535 and (IPv4) addresses outside the VPC, RFC 1918 and RFC 6598
  ranges; moto accepts anything.  The provider checks before calling AWS and raises
  :class:`InvalidEndpoints` (a :class:`RejectedError` with ``.endpoints``) so the reconciler can
  drop exactly those instead of bisecting.
* **Availability zone.** For IPs inside the VPC's CIDRs AWS detects the zone; IPs outside need
  one: :data:`ALL_ZONES`, or the endpoint's own zone where the group wants it (see
  :mod:`negsync.providers.aws.registration`).
* **Canonical IPs.** Members are compared in compressed text form, so ``fd00:0::1`` from one side
  equals ``fd00::1`` from the other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from negsync.core.model import TargetEndpoint
from negsync.errors import RejectedError

__all__ = [
    "ALL_ZONES",
    "InvalidEndpoints",
    "Network",
    "canonical_ip",
    "inside",
    "invalid_endpoints",
    "networks",
    "target_description",
]

#: The zone value AWS takes for "every enabled zone of the load balancer".
ALL_ZONES: Final = "all"

# RFC 1918 and RFC 6598: the non-VPC IPv4 ranges an ``ip`` target group accepts (with AZ ``all``).
_PRIVATE_V4: Final = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidEndpoints(RejectedError):
    """A batch holds endpoints the API would refuse; found by negsync before calling AWS.

    ``endpoints`` lists exactly the bad members (the reconciler drops them without bisecting),
    ``reasons`` says why for each.
    """

    def __init__(self, message: str, *, reasons: Mapping[TargetEndpoint, str]) -> None:
        super().__init__(message)
        self.reasons: dict[TargetEndpoint, str] = dict(reasons)
        self.endpoints: tuple[TargetEndpoint, ...] = tuple(sorted(self.reasons))


def canonical_ip(ip: str) -> str:
    """The compressed text form, so ``fd00:0::1`` from one side equals ``fd00::1`` from the other."""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip  # left as is: attach reports it as invalid


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def inside(ip: str, within: Sequence[Network]) -> bool:
    """Whether ``ip`` lies in one of the VPC's networks (AWS then detects its zone)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return True  # not an address: validation reports it, no zone to pick
    return any(address.version == n.version and address in n for n in within)


def invalid_endpoints(
    endpoints: Iterable[TargetEndpoint], *, family: str, vpc_cidrs: Iterable[str] = ()
) -> dict[TargetEndpoint, str]:
    """Endpoints RegisterTargets would refuse for an ``ip`` group of ``family``, with the reason.

    Mirrors the documented rules: the ID is an IP address of the group's family; the port is
    1-65535; an IPv4 target lies in the VPC, RFC 1918 or RFC 6598 space (no public addresses);
    loopback, link-local, multicast and unspecified addresses are never targets.
    """
    vpc = networks(vpc_cidrs)
    bad: dict[TargetEndpoint, str] = {}
    want = 6 if family == "ipv6" else 4
    for endpoint in endpoints:
        port = endpoint.port
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            bad[endpoint] = f"port {port!r} is not in 1-65535"
            continue
        try:
            address = ipaddress.ip_address(endpoint.ip)
        except ValueError:
            bad[endpoint] = f"{endpoint.ip!r} is not an IP address"
            continue
        if address.version != want:
            bad[endpoint] = f"{endpoint.ip} is IPv{address.version}, the target group is {family}"
        elif address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
            bad[endpoint] = f"{endpoint.ip} is a loopback, link-local, multicast or unspecified address"
        elif (
            isinstance(address, ipaddress.IPv4Address)
            and not any(address in n for n in vpc)
            and not any(address in n for n in _PRIVATE_V4)
        ):
            bad[endpoint] = f"{endpoint.ip} is outside the VPC and the RFC 1918/6598 ranges"
    return bad


def target_description(
    endpoint: TargetEndpoint, within: Sequence[Network], zones: Mapping[TargetEndpoint, str] | None
) -> dict[str, Any]:
    """The TargetDescription to register ``endpoint`` with (``zones`` None: ``all`` outside the VPC)."""
    target: dict[str, Any] = {"Id": endpoint.ip, "Port": endpoint.port}
    if not inside(endpoint.ip, within):
        # Required outside the VPC (peered VPCs, on-premises).  Inside, AWS detects the zone.
        target["AvailabilityZone"] = (zones or {}).get(endpoint) or ALL_ZONES
    return target
