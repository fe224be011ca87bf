"""The value types every layer shares: endpoints, target endpoints, binding keys, health.

All are frozen and slotted: caches hand them out without copying and 100k of them stay small.
The one distinction a reader must keep: an :class:`Endpoint` is what Kubernetes says (a pod's
IP:port with its conditions); a :class:`TargetEndpoint` is what a load balancer holds (IP,
port and — on GCP — the VM instance).  Diffs are computed on target endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class BindingKey(NamedTuple):
    """The work-queue key: a TargetBinding's namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> BindingKey:
        namespace, _, name = text.partition("/")
        if not namespace or not name:
            raise ValueError(f"binding key must be namespace/name, got {text!r}")
        return cls(namespace, name)


class PodRef(NamedTuple):
    namespace: str
    name: str
    uid: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One serving pod address for one service port, as EndpointSlices report it."""

    ip: str
    port: int
    zone: str = ""
    node: str = ""
    pod: PodRef | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    @property
    def target(self) -> TargetEndpoint:
        return TargetEndpoint(self.ip, self.port, self.node)


class TargetEndpoint(NamedTuple):
    """A member of a load-balancer target: an IP and port, and on GCP the VM instance."""

    ip: str
    port: int
    instance: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}" + (f"@{self.instance}" if self.instance else "")


class TargetRef(NamedTuple):
    """One load-balancer membership set: a zonal NEG or an ELBv2 target group.

    ``kind`` is the provider name, ``location`` a zone or region, ``name`` the NEG name or the
    target group ARN.
    """

    kind: str
    location: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}/{self.name}"


class Health(StrEnum):
    """Health of one target endpoint as the load balancer reports it."""

    INITIAL = "initial"  # registered, health not yet known
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"  # detached, in-flight requests may still run
    UNUSED = "unused"  # the target is not in use by any load balancer
    UNKNOWN = "unknown"
    NO_HEALTH_CHECK = "no-health-check"  # the LB routes without checking health

    @property
    def counts_as_present(self) -> bool:
        """Draining members are on their way out: a reused IP must be attached again."""
        return self is not Health.DRAINING

    @property
    def lets_gate_pass(self) -> bool:
        return self in (Health.HEALTHY, Health.NO_HEALTH_CHECK)
