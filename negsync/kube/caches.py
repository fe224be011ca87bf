"""Slim, immutable records of the Kubernetes objects negsync reads, and the stores that index them.

Hand-written: the kubernetes Python client has no informer or indexed store (only ``watch.Watch``),
and its models are what this module exists to avoid keeping.

The kubernetes client's models (pydantic in v37) are large and slow; the caches keep only the
fields negsync uses, decoded straight from the raw JSON of list and watch responses.  Records are
frozen and compare by value, which buys the most useful optimisation in the controller for free:
a watch event whose *slim* record did not change (a node heartbeat, a pod's unrelated status
field) is dropped before it can enqueue anything.

A :class:`Store` hands out records, never live dicts, and maintains secondary indexes (e.g.
EndpointSlices by service) so a reconcile reads what it needs in O(matches).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from negsync.core.bindings import BindingSpec, parse_binding_spec
from negsync.core.endpoints import SERVICE_NAME_LABEL, SliceRecord, decode_slice
from negsync.errors import ConfigError

GATE_PREFIX = "target-health.negsync.io/"
ZONE_LABEL = "topology.kubernetes.io/zone"
LEGACY_ZONE_LABEL = "failure-domain.beta.kubernetes.io/zone"
# The node's subnetwork on GKE multi-subnet clusters; absent = the cluster's default subnetwork
# (ingress-gce pkg/utils/utils.go LabelNodeSubnet, read by pkg/utils/zonegetter getSubnet).
NODE_SUBNET_LABEL = "cloud.google.com/gke-node-pool-subnet"
FINALIZER = "negsync.io/target-cleanup"
GROUP, VERSION, PLURAL = "negsync.io", "v1alpha1", "targetbindings"  # the TargetBinding CRD

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
R = TypeVar("R", bound=Hashable)


def parse_time(value: str | None) -> float:
    """RFC 3339 (as the API writes it) to epoch seconds; 0.0 when absent or malformed."""
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True, slots=True)
class PodRecord:
    namespace: str
    name: str
    uid: str
    labels: tuple[tuple[str, str], ...]
    gates: tuple[str, ...]  # our readiness-gate condition types the pod declares
    conditions: tuple[tuple[str, str, str], ...]  # (type, status, reason) of our gate conditions
    ips: tuple[str, ...]
    node: str
    created: float
    deleting: bool
    # The kubelet's ContainersReady condition: every container passes its readiness probe.  A
    # not-ready endpoint of a gated pod is registered only while this holds (AWS LBC
    # pkg/backend/endpoint_resolver.go), so the readiness probe keeps its say over the target.
    containers_ready: bool = False

    def condition(self, condition_type: str) -> tuple[str, str] | None:
        for kind, status, reason in self.conditions:
            if kind == condition_type:
                return status, reason
        return None

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: str
    protocol: str


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    namespace: str
    name: str
    uid: str
    selector: tuple[tuple[str, str], ...]
    ports: tuple[ServicePort, ...]
    has_selector: bool

    def selects(self, labels: Mapping[str, str]) -> bool:
        return self.has_selector and all(labels.get(k) == v for k, v in self.selector)

    def port_named(self, port: int | str) -> ServicePort | None:
        """The Service port ``spec.serviceRef.port`` names.

        By number only a TCP port matches: a Service may expose 53/UDP and 53/TCP, and the load
        balancers negsync drives carry TCP only (the slice's ports are filtered the same way).
        """
        for candidate in self.ports:
            if isinstance(port, int):
                if candidate.port == port and candidate.protocol == "TCP":
                    return candidate
            elif candidate.name == port:
                return candidate
        return None


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    zone: str
    provider_id: str
    subnet: str = ""  # NODE_SUBNET_LABEL; "" = the cluster's default subnetwork


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """A TargetBinding; its spec is decoded and validated once, when the record is made.

    ``spec_json`` (canonical JSON) is what records compare by — the change filter and the
    handlers' "only the status changed" test; ``spec`` (the decoded JSON, read-only by
    convention), ``service_name`` and the parsed spec are derived from it in ``__post_init__``
    and take no part in comparisons.  A reconcile, an index function and drain-wait read them
    without re-parsing (issue 14 item 5).
    """

    namespace: str
    name: str
    uid: str
    generation: int
    spec_json: str
    finalizers: tuple[str, ...]
    deleting: bool
    status_json: str
    spec: Any = field(init=False, compare=False, repr=False)
    service_name: str = field(init=False, compare=False, repr=False)
    _parsed: BindingSpec | None = field(init=False, compare=False, repr=False)
    _problem: tuple[str, str] | None = field(init=False, compare=False, repr=False)  # ConfigError (field, message)

    def __post_init__(self) -> None:
        spec = json.loads(self.spec_json)
        ref = spec.get("serviceRef") if isinstance(spec, dict) else None
        name = ref.get("name") if isinstance(ref, dict) else None
        parsed: BindingSpec | None = None
        problem: tuple[str, str] | None = None
        try:
            parsed = parse_binding_spec(spec)
        except ConfigError as exc:
            problem = (exc.field, exc.message)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "service_name", name if isinstance(name, str) else "")
        object.__setattr__(self, "_parsed", parsed)
        object.__setattr__(self, "_problem", problem)

    def parsed_spec(self) -> BindingSpec:
        """The validated spec; raises :class:`ConfigError` (a fresh one each time) when it is invalid."""
        if self._parsed is None:
            field_path, message = self._problem or ("spec", "is invalid")
            raise ConfigError(field_path, message)
        return self._parsed

    @property
    def status(self) -> dict[str, Any]:
        value = json.loads(self.status_json)
        return value if isinstance(value, dict) else {}


def _meta(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = raw.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def decode_pod(raw: Mapping[str, Any]) -> PodRecord:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    gates = tuple(
        str(g.get("conditionType"))
        for g in spec.get("readinessGates") or []
        if isinstance(g, Mapping) and str(g.get("conditionType") or "").startswith(GATE_PREFIX)
    )
    conditions = tuple(
        (str(c.get("type")), str(c.get("status") or ""), str(c.get("reason") or ""))
        for c in status.get("conditions") or []
        if isinstance(c, Mapping) and str(c.get("type") or "").startswith(GATE_PREFIX)
    )
    containers_ready = any(
        isinstance(c, Mapping) and c.get("type") == "ContainersReady" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    ips = tuple(str(p.get("ip")) for p in status.get("podIPs") or [] if isinstance(p, Mapping) and p.get("ip"))
    if not ips and status.get("podIP"):
        ips = (str(status["podIP"]),)
    return PodRecord(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
        gates=gates,
        conditions=tuple(sorted(conditions)),
        ips=ips,
        node=str(spec.get("nodeName") or ""),
        created=parse_time(meta.get("creationTimestamp")),
        deleting=bool(meta.get("deletionTimestamp")),
        containers_ready=containers_ready,
    )


def decode_service(raw: Mapping[str, Any]) -> ServiceRecord:
    meta, spec = _meta(raw), raw.get("spec") or {}
    selector = spec.get("selector") or {}
    ports = tuple(
        ServicePort(
            name=str(p.get("name") or ""),
            port=int(p.get("port") or 0),
            target_port=str(p.get("targetPort") or p.get("port") or ""),
            protocol=str(p.get("protocol") or "TCP"),
        )
        for p in spec.get("ports") or []
        if isinstance(p, Mapping)
    )
    return ServiceRecord(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())),
        ports=ports,
        has_selector=bool(selector),
    )


def decode_node(raw: Mapping[str, Any]) -> NodeRecord:
    meta, spec = _meta(raw), raw.get("spec") or {}
    labels = meta.get("labels") or {}
    return NodeRecord(
        name=str(meta.get("name") or ""),
        zone=str(labels.get(ZONE_LABEL) or labels.get(LEGACY_ZONE_LABEL) or ""),
        provider_id=str(spec.get("providerID") or ""),
        subnet=str(labels.get(NODE_SUBNET_LABEL) or ""),
    )


def decode_binding(raw: Mapping[str, Any]) -> BindingRecord:
    meta = _meta(raw)
    return BindingRecord(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
        spec_json=json.dumps(raw.get("spec"), sort_keys=True),
        finalizers=tuple(str(f) for f in meta.get("finalizers") or []),
        deleting=bool(meta.get("deletionTimestamp")),
        status_json=json.dumps(raw.get("status") or {}, sort_keys=True),
    )


def record_key(record: Any) -> Key:
    return (getattr(record, "namespace", ""), record.name)


class Store(Generic[R]):
    """A thread-safe map of records by (namespace, name) with secondary indexes."""

    def __init__(self, *, indexers: Mapping[str, Callable[[R], Iterable[Hashable]]] | None = None) -> None:
        self._lock = threading.RLock()
        self._items: dict[Key, R] = {}
        self._indexers = dict(indexers or {})
        self._indexes: dict[str, dict[Hashable, set[Key]]] = {name: {} for name in self._indexers}

    def get(self, key: Key) -> R | None:
        with self._lock:
            return self._items.get(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def values(self) -> list[R]:
        with self._lock:
            return list(self._items.values())

    def by_index(self, index: str, value: Hashable) -> list[R]:
        with self._lock:
            return [self._items[k] for k in sorted(self._indexes[index].get(value, ()))]

    def _unindex(self, key: Key, record: R) -> None:
        for name, fn in self._indexers.items():
            for value in fn(record):
                bucket = self._indexes[name].get(value)
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del self._indexes[name][value]

    def _index(self, key: Key, record: R) -> None:
        for name, fn in self._indexers.items():
            for value in fn(record):
                self._indexes[name].setdefault(value, set()).add(key)

    def put(self, key: Key, record: R) -> R | None:
        """Store a record; returns the previous one."""
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._unindex(key, old)
            self._items[key] = record
            self._index(key, record)
            return old

    def remove(self, key: Key) -> R | None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            return old

    def replace(self, records: Mapping[Key, R]) -> list[tuple[R | None, R | None]]:
        """Swap in a full relist; returns only what changed as (old, new) pairs.

        This is what keeps a reconnect or a 410 from replaying the whole world: unchanged objects
        produce nothing.
        """
        changes: list[tuple[R | None, R | None]] = []
        with self._lock:
            for key in [k for k in self._items if k not in records]:
                changes.append((self.remove(key), None))
            for key, record in records.items():
                old = self._items.get(key)
                if old != record:
                    self.put(key, record)
                    changes.append((old, record))
        return changes


def slice_service(record: SliceRecord) -> list[Key]:
    return [(record.namespace, record.service)] if record.service else []


def binding_service(record: BindingRecord) -> list[Key]:
    return [(record.namespace, record.service_name)] if record.service_name else []


def pod_gate_bindings(record: PodRecord) -> list[Key]:
    return [(record.namespace, gate[len(GATE_PREFIX):]) for gate in record.gates]


class Caches:
    """Every store the controller reads, with the indexes its handlers and reconciles need."""

    def __init__(self) -> None:
        self.slices: Store[SliceRecord] = Store(indexers={"service": slice_service})
        self.services: Store[ServiceRecord] = Store()
        self.pods: Store[PodRecord] = Store(indexers={"binding": pod_gate_bindings})
        self.nodes: Store[NodeRecord] = Store()
        self.bindings: Store[BindingRecord] = Store(indexers={"service": binding_service})


__all__ = [
    "FINALIZER",
    "GATE_PREFIX",
    "SERVICE_NAME_LABEL",
    "BindingRecord",
    "Caches",
    "NodeRecord",
    "PodRecord",
    "ServiceRecord",
    "SliceRecord",
    "Store",
    "decode_binding",
    "decode_node",
    "decode_pod",
    "decode_service",
    "decode_slice",
]
