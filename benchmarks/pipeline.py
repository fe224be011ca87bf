"""The controller's sync pipeline without HTTP, and the Kubernetes objects the benchmarks feed it.

:class:`Pipeline` wires the same pieces :class:`negsync.kube.controller.Controller` wires, minus the API
client: a :class:`~negsync.kube.watching.Watcher` for EndpointSlices whose per-event path
(``Watcher.handle_event``: decode → ``Store.put`` → change filter → handler) is called once per JSON
line, the :class:`~negsync.kube.caches.Caches`, the real :class:`~negsync.kube.handlers.Handlers`,
an :class:`~negsync.core.engine.Engine` (work queue + workers) and a
:class:`~negsync.core.reconciling.Reconciler` fed, pass by pass, by the controller's own
``negsync.kube.desired.DesiredState`` (so the desired endpoints are computed by exactly the
controller's code), fed through ``Watcher.handle_event``
(the real per-event path, with no socket around it).  Status writes, readiness gates and Events
(HTTP) are not part of it.

Object shapes follow what the EndpointSlice controller writes: one slice per Service (E ≤ a few
hundred in the benchmarks), ``nodeName``, ``zone`` and a Pod ``targetRef`` on every endpoint.
Every pod IP ever generated is unique (10.0.0.0/8 counted up), so a member changes at most once
per direction and "changes per target" is unambiguous.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from negsync.core.engine import Engine
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.core.reconciling import Reconciler
from negsync.kube.caches import FINALIZER, Caches, decode_binding, decode_service, decode_slice, record_key
from negsync.kube.desired import DesiredState
from negsync.kube.handlers import Handlers
from negsync.kube.watching import ResourceKind, Watcher
from negsync.providers.memory import MemoryProvider

PORT = 8080
ZONES = ("zone-a", "zone-b", "zone-c")


def pod_ip(n: int) -> str:
    """The n-th pod IP (n ≥ 1): unique across a whole benchmark run."""
    return str(ipaddress.IPv4Address(0x0A000000 + n))


def service_obj(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-svc-{namespace}-{name}"},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": PORT, "protocol": "TCP"}]},
    }


def binding_obj(namespace: str, name: str, *, finalizer: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-tb-{namespace}-{name}", "generation": 1}
    if finalizer:
        meta["finalizers"] = [FINALIZER]
    return {
        "apiVersion": "negsync.io/v1alpha1", "kind": "TargetBinding", "metadata": meta,
        "spec": {"serviceRef": {"name": name, "port": "http"},
                 "target": {"memory": {"name": f"{namespace}-{name}"}}, "readinessGate": False},
    }


@dataclass
class SliceState:
    """One Service's EndpointSlice as the generator evolves it: IP → terminating."""

    namespace: str
    service: str
    endpoints: dict[int, bool] = field(default_factory=dict)  # pod number → terminating
    version: int = 0

    def obj(self, resource_version: int) -> dict[str, Any]:
        self.version += 1
        endpoints = []
        for n, terminating in self.endpoints.items():
            endpoints.append({
                "addresses": [pod_ip(n)],
                "conditions": {"ready": not terminating, "serving": True, "terminating": terminating},
                "nodeName": f"node-{n % 97}",
                "zone": ZONES[n % len(ZONES)],
                "targetRef": {"kind": "Pod", "namespace": self.namespace, "name": f"{self.service}-{n:x}",
                              "uid": f"{n:08x}-0000-4000-8000-{n:012x}"},
            })
        return {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": f"{self.service}-x7k2p", "namespace": self.namespace, "generation": self.version,
                "resourceVersion": str(resource_version), "uid": f"uid-eps-{self.namespace}-{self.service}",
                "labels": {"kubernetes.io/service-name": self.service,
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
            "endpoints": endpoints,
        }

    def members(self) -> set[TargetEndpoint]:
        return {TargetEndpoint(pod_ip(n), PORT) for n, terminating in self.endpoints.items() if not terminating}


def event_line(kind: str, obj: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":"))


def target_ref(namespace: str, name: str) -> TargetRef:
    return TargetRef("memory", "local", f"{namespace}-{name}")


def _no_list(**_: Any) -> Any:
    raise RuntimeError("the benchmark pipeline never lists")


class Pipeline:
    """Caches + handlers + engine + reconciler + in-memory provider, fed one watch event at a time."""

    def __init__(self, *, provider: MemoryProvider, workers: int = 4, call_workers: int = 8,
                 min_interval: float = 0.0, resync_period: float = 3600.0) -> None:
        self.provider = provider
        self.caches = Caches()
        desired = DesiredState(caches=self.caches, provider_name=provider.name)

        def factory(enqueue: Callable[[BindingKey, float, bool], None]) -> Reconciler:
            return Reconciler(provider=provider, enqueue=enqueue, call_workers=call_workers,
                              min_interval=min_interval, resync_period=resync_period)

        self.engine = Engine(reconciler_factory=factory, desired=desired.compute, workers=workers)
        self.handlers = Handlers(caches=self.caches, enqueue=lambda key, priority: self.engine.enqueue(key, 0.0, priority))
        kind = ResourceKind("endpointslices", _no_list, None, decode_slice, decode_slice)
        self.watcher: Watcher[Any] = Watcher(kind=kind, store=self.caches.slices, on_change=self.handlers.on_slice)

    def seed(self, services: list[dict[str, Any]], bindings: list[dict[str, Any]]) -> None:
        """Services and bindings straight into their stores, as their watchers' initial lists would."""
        for raw in services:
            record = decode_service(raw)
            self.caches.services.put(record_key(record), record)
        for raw in bindings:
            brecord = decode_binding(raw)
            self.caches.bindings.put(record_key(brecord), brecord)

    def start(self) -> None:
        self.engine.start()
        for record in self.caches.bindings.values():
            self.engine.enqueue(BindingKey(record.namespace, record.name))

    def feed(self, line: str | bytes) -> None:
        """One watch-stream line through the real per-event path (json → decode → store → handler)."""
        self.watcher.handle_event(json.loads(line))

    def idle(self) -> bool:
        return self.engine.queue.drained(timeout=0.0) and self.engine.reconciler.in_flight() == 0

    def wait_converged(self, expected: dict[TargetRef, set[TargetEndpoint]], *, timeout: float,
                       poll: float = 0.002) -> bool:
        """Until every target holds exactly its expected members and nothing is queued or in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle() and all(self.provider.members(ref) == want for ref, want in expected.items()):
                return True
            time.sleep(poll)
        return False

    def stop(self) -> None:
        self.engine.stop(timeout=10.0)


def stage_costs(*, endpoints: int = 15, replace: int = 3, number: int = 2_000, repeat: int = 5) -> dict[str, float]:
    """CPU µs per slice event, stage by stage: what bounds "CPU per endpoint change".

    One Service of ``endpoints`` endpoints; the event is the churn's second kind (``replace``
    endpoints gone, as many new ones).  Each stage is timed alone (``timeit``, best of ``repeat``
    — the least disturbed by other work on the machine), in this interpreter:

    * ``json_loads`` — the floor: decoding the line;
    * ``decode_fresh`` / ``decode`` — ``decode_slice`` of the object alone / against the cached
      record (the watch path: unchanged endpoints taken over);
    * ``handle_event`` — ``Watcher.handle_event`` of the decoded event (decode against the cache,
      ``Store.put``, the change filter, the handler naming the binding);
    * ``compute`` — ``DesiredState.compute`` of the binding (spec, Service, slices → endpoints);
    * ``targets_for`` — the provider grouping the endpoints into targets and members;
    * ``reconcile`` — a whole ``Reconciler.reconcile`` of the converged binding (``compute`` and
      ``targets_for`` included, the member cache read, the diff; no call to make).
    """
    import timeit

    provider = MemoryProvider(health_checking=False)
    caches = Caches()
    state = SliceState("bench", "svc-00000")
    for n in range(1, endpoints + 1):
        state.endpoints[n] = False
    before = state.obj(1)
    for n in list(state.endpoints)[:replace]:
        del state.endpoints[n]
    for n in range(endpoints + 1, endpoints + 1 + replace):
        state.endpoints[n] = False
    line = event_line("MODIFIED", state.obj(2))
    service = decode_service(service_obj("bench", "svc-00000"))
    caches.services.put(record_key(service), service)
    binding = decode_binding(binding_obj("bench", "svc-00000"))
    caches.bindings.put(record_key(binding), binding)
    key = BindingKey("bench", "svc-00000")
    handlers = Handlers(caches=caches, enqueue=lambda k, priority: None)
    kind = ResourceKind("endpointslices", _no_list, None, decode_slice, decode_slice)
    watcher: Watcher[Any] = Watcher(kind=kind, store=caches.slices, on_change=handlers.on_slice)
    cached = decode_slice(before)
    event = json.loads(line)
    raw = event["object"]
    desired = DesiredState(caches=caches, provider_name=provider.name)
    reconciler = Reconciler(provider=provider, enqueue=lambda *a: None, call_workers=1,
                            resync_period=3600.0, member_list_period=3600.0)

    def handle() -> None:
        caches.slices.put(record_key(cached), cached)  # the previous state, so the event is a change
        watcher.handle_event(event)

    def best(stmt: Callable[[], object]) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e6

    try:
        caches.slices.put(record_key(cached), cached)
        result = {"json_loads": best(lambda: json.loads(line)),
                  "decode_fresh": best(lambda: decode_slice(raw)),
                  "decode": best(lambda: decode_slice(raw, cached)),
                  "handle_event": best(handle) - best(lambda: caches.slices.put(record_key(cached), cached))}
        watcher.handle_event(event)
        computed = desired.compute(key)
        assert computed is not None
        reconciler.reconcile(key, computed)
        deadline = time.monotonic() + 10
        while reconciler.busy() and time.monotonic() < deadline:
            time.sleep(0.001)
        result |= {"compute": best(lambda: desired.compute(key)),
                   "targets_for": best(lambda: provider.targets_for(binding=key, spec=computed.spec.target,
                                                                    endpoints=computed.endpoints)),
                   # As the controller runs it: desired state computed afresh, then the reconcile.
                   "reconcile": best(lambda: reconciler.reconcile(key, desired.compute(key)))}
    finally:
        reconciler.close(wait=False)
    return result
