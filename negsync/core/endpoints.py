"""Desired endpoints of a binding, computed from slim EndpointSlice records.

Two steps, both pure.  :func:`decode_slice` turns an EndpointSlice's raw JSON into a slim
:class:`SliceRecord` (the fields negsync uses, nothing else — the cache holds these, not the
client's models).  :func:`desired_endpoints` picks the endpoints a load balancer must hold:

* the Service port is matched by *name* (an EndpointSlice port carries the Service port's name);
* terminating endpoints are left out — they are detached first;
* not-ready endpoints are included when their pod carries this binding's readiness gate and its
  containers are ready (``ContainersReady``), because the load balancer's health check must start
  before the gate can ever turn True — but the pod's readiness probe keeps its say: when it fails
  the endpoint leaves the target (AWS LBC ``pkg/backend/endpoint_resolver.go`` does the same);
* the same IP:port appearing in two slices (during slice re-balancing) is counted once;
* addresses of the other IP family, or not parseable, ports out of range and — where the provider
  needs it — endpoints without a zone are *skipped with a reason*, never fatal.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from negsync.core.model import Endpoint, PodRef


class RawEndpointConditions(TypedDict, total=False):
    ready: bool | None
    serving: bool | None
    terminating: bool | None


class RawObjectReference(TypedDict, total=False):
    kind: str
    namespace: str
    name: str
    uid: str


class RawEndpoint(TypedDict, total=False):
    addresses: list[str]
    conditions: RawEndpointConditions
    nodeName: str
    zone: str
    targetRef: RawObjectReference


class RawEndpointPort(TypedDict, total=False):
    name: str
    port: int
    protocol: str


class RawEndpointSlice(TypedDict):
    metadata: dict[str, Any]
    addressType: str
    endpoints: NotRequired[list[RawEndpoint] | None]
    ports: NotRequired[list[RawEndpointPort] | None]


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    address: str
    ready: bool
    serving: bool
    terminating: bool
    node: str
    zone: str
    # The pod's name only: its namespace is the slice's, and its UID is not needed because gates
    # check the pod's current IPs instead (a re-created pod has a new UID *and* a new IP).  That is
    # ~150 B less per cached endpoint, which matters at 100k endpoints.
    pod_name: str | None
    # Why the address cannot be a member, checked once at decode for the slice's address type
    # (the only family it is ever used for); None: a routable address of that family.
    problem: str | None


@dataclass(frozen=True, slots=True)
class SliceRecord:
    namespace: str
    name: str
    service: str
    address_type: str
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol)
    endpoints: tuple[SliceEndpoint, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class DesiredEndpoints:
    endpoints: tuple[Endpoint, ...]  # serving set, one per IP:port
    terminating: tuple[Endpoint, ...]  # known-terminating, for drain tracking
    skipped: tuple[Skipped, ...]


def decode_slice(raw: Mapping[str, Any], previous: SliceRecord | None = None) -> SliceRecord:
    """A slim record of an EndpointSlice; tolerant of missing optional fields.

    ``previous`` is the record the cache holds for the same slice: an endpoint that did not change
    is taken over from it as it is (the same object, its strings included) instead of being built,
    interned and checked again — a slice update typically changes a few of its endpoints, and the
    watch sends the whole slice every time.
    """
    meta = raw.get("metadata") or {}
    labels = meta.get("labels") or {}
    ports = tuple(
        (str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
        for p in (raw.get("ports") or [])
    )
    address_type = str(raw.get("addressType") or "")
    known = {e.address: e for e in previous.endpoints} if previous and previous.address_type == address_type else {}
    endpoints: list[SliceEndpoint] = []
    for ep in raw.get("endpoints") or []:
        conditions = ep.get("conditions") or {}
        # Per the API, a nil ready means "ready"; a nil serving means "same as ready".
        ready = conditions.get("ready") is not False
        serving_raw = conditions.get("serving")
        serving = ready if serving_raw is None else bool(serving_raw)
        terminating = conditions.get("terminating") is True
        ref = ep.get("targetRef") or {}
        pod_name = str(ref["name"]) if ref.get("kind", "Pod") == "Pod" and ref.get("name") else None
        node = str(ep.get("nodeName") or "")
        zone = str(ep.get("zone") or "")
        for address in ep.get("addresses") or []:
            old = known.get(address)
            if (old is not None and old.ready == ready and old.serving == serving and old.terminating == terminating
                    and old.node == node and old.zone == zone and old.pod_name == pod_name):
                endpoints.append(old)
                continue
            text = str(address)
            problem = _address_problem(text, address_type) if address_type in _IP_FAMILIES else None
            # Positional (cheaper than keywords, in field order); node and zone interned: 100k
            # endpoints share a few hundred node and zone names.
            endpoints.append(SliceEndpoint(text, ready, serving, terminating, sys.intern(node), sys.intern(zone),
                                           pod_name, problem))
    decoded = tuple(endpoints)
    if previous is not None and decoded == previous.endpoints:
        decoded = previous.endpoints  # every endpoint taken over: share the tuple too
    return SliceRecord(
        namespace=sys.intern(str(meta.get("namespace") or "")),
        name=str(meta.get("name") or ""),
        service=str(labels.get(SERVICE_NAME_LABEL) or ""),
        address_type=address_type,
        ports=ports,
        endpoints=decoded,
    )


_IP_FAMILIES = ("IPv4", "IPv6")


def _address_problem(address: str, family: str) -> str | None:
    """Why ``address`` cannot be a member of a target of ``family``; None when it can."""
    if family == "IPv4":
        # Fast path for the common case, ~10x cheaper than ipaddress: the C parser, accepted only
        # when the text is the canonical dotted quad (inet_pton may accept leading zeros, which
        # ipaddress rejects).  Anything else takes the ipaddress path below, so results are the same.
        try:
            packed = socket.inet_pton(socket.AF_INET, address)
        except (OSError, ValueError, TypeError):
            packed = b""
        if packed and "{}.{}.{}.{}".format(*packed) == address:
            first, second = packed[0], packed[1]
            if packed == b"\0\0\0\0" or first == 127 or 224 <= first <= 239 or (first, second) == (169, 254):
                return "not a routable pod address"
            return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if (parsed.version == 4) != (family == "IPv4"):
        return f"not an {family} address"
    if parsed.is_unspecified or parsed.is_loopback or parsed.is_multicast or parsed.is_link_local:
        return "not a routable pod address"
    return None


def desired_endpoints(
    *,
    slices: Iterable[SliceRecord],
    port_name: str,
    ip_family: str = "IPv4",
    gated_pods: Container[tuple[str, str]] = frozenset(),
    node_zones: Mapping[str, str] | None = None,
    require_zone: bool = False,
) -> DesiredEndpoints:
    """Endpoints the load balancer must hold for one Service port.

    ``gated_pods`` holds (namespace, name) of pods carrying this binding's readiness gate whose
    ``ContainersReady`` condition is True.
    ``node_zones`` fills in a zone the slice left empty, from the node's topology label.
    """
    chosen: dict[tuple[str, int], Endpoint] = {}
    terminating: dict[tuple[str, int], Endpoint] = {}
    skipped: list[Skipped] = []
    zones = node_zones or {}
    for record in slices:
        # FQDN slices and slices of the other family never hold our endpoints.
        if record.address_type != ip_family:
            continue
        ports = [p for p in record.ports if p[0] == port_name and p[2] == "TCP"]
        if not ports:
            continue
        port = ports[0][1]
        for ep in record.endpoints:
            if not 1 <= port <= 65535:
                skipped.append(Skipped(ep.address, f"port {port} out of range in slice {record.name}"))
                continue
            problem = ep.problem  # checked at decode for the slice's family, which is ip_family here
            if problem:
                skipped.append(Skipped(ep.address, f"{problem} (slice {record.name})"))
                continue
            zone = ep.zone or zones.get(ep.node, "")
            if require_zone and not zone:
                skipped.append(Skipped(ep.address, f"no zone on the endpoint or its node {ep.node!r}"))
                continue
            key = (ep.address, port)
            if not (ep.terminating or ep.ready or (
                    gated_pods and ep.pod_name and (record.namespace, ep.pod_name) in gated_pods)):
                continue  # not ready and not gated: not a member, and nothing to drain
            # Built only for endpoints that are kept, positionally (a keyword call costs ~0.7 µs
            # more per Endpoint, and a reconcile builds one for every endpoint of the binding).
            pod = PodRef._make((record.namespace, ep.pod_name, "")) if ep.pod_name else None
            endpoint = Endpoint(ep.address, port, zone, ep.node, pod, ep.ready, ep.serving, ep.terminating)
            if ep.terminating:
                terminating[key] = endpoint
                continue
            previous = chosen.get(key)
            # A duplicate during slice re-balancing: keep the one with the more certain state.
            if previous is None or (endpoint.ready and not previous.ready):
                chosen[key] = endpoint
    for key in chosen:
        terminating.pop(key, None)
    return DesiredEndpoints(
        # Sorted by their (ip, port) keys: unique, so no Endpoint is ever compared, and no key function.
        endpoints=tuple(endpoint for _, endpoint in sorted(chosen.items())),
        terminating=tuple(endpoint for _, endpoint in sorted(terminating.items())),
        skipped=tuple(skipped),
    )
