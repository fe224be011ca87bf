"""Event handlers: map a changed object to the binding keys it affects.  Nothing else.

Handlers never branch on event type and never do work — they name the keys; the reconciler
recomputes everything from the caches.  The one judgement made here is *priority*: a slice in
which an endpoint newly turned terminating (or vanished) is enqueued in the priority lane, so
its detach overtakes pending attaches in every binding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from negsync.core.endpoints import SliceRecord
from negsync.core.model import BindingKey
from negsync.kube.caches import BindingRecord, Caches, NodeRecord, PodRecord, ServiceRecord, pod_gate_bindings

Enqueue = Callable[[BindingKey, bool], None]  # (key, priority)


def _removals(old: SliceRecord | None, new: SliceRecord | None) -> bool:
    """Whether an address left the serving set: newly terminating, or gone from the slice."""
    if old is None:
        return False
    serving_before = {e.address for e in old.endpoints if not e.terminating}
    serving_after = {e.address for e in new.endpoints if not e.terminating} if new else set()
    return bool(serving_before - serving_after)


class Handlers:
    def __init__(self, *, caches: Caches, enqueue: Enqueue,
                 endpoints_changed: Callable[[BindingKey], None] | None = None,
                 pod_ips_changed: Callable[[Sequence[str], Sequence[str]], None] | None = None) -> None:
        self._caches = caches
        self._enqueue = enqueue
        # Start of the "endpoint change → cloud call" interval (calibration and reaction metrics).
        self._endpoints_changed = endpoints_changed or (lambda key: None)
        # (IPs before, IPs after) of a cached pod: what the drain tracker's detach times live by.
        self._pod_ips_changed = pod_ips_changed or (lambda before, after: None)

    def _bindings_of_service(self, namespace: str, service: str) -> Iterable[BindingKey]:
        for record in self._caches.bindings.by_index("service", (namespace, service)):
            yield BindingKey(record.namespace, record.name)

    def on_slice(self, old: SliceRecord | None, new: SliceRecord | None) -> None:
        priority = _removals(old, new)
        services = {(r.namespace, r.service) for r in (old, new) if r is not None and r.service}
        for namespace, service in services:
            for key in self._bindings_of_service(namespace, service):
                self._endpoints_changed(key)
                self._enqueue(key, priority)

    def on_service(self, old: ServiceRecord | None, new: ServiceRecord | None) -> None:
        record = new or old
        if record is not None:
            for key in self._bindings_of_service(record.namespace, record.name):
                self._enqueue(key, False)

    def on_pod(self, old: PodRecord | None, new: PodRecord | None) -> None:
        before, after = (old.ips if old else ()), (new.ips if new else ())
        if before != after:
            self._pod_ips_changed(before, after)
        keys = {k for r in (old, new) if r is not None for k in pod_gate_bindings(r)}
        for namespace, name in keys:
            self._enqueue(BindingKey(namespace, name), False)

    def on_node(self, old: NodeRecord | None, new: NodeRecord | None) -> None:
        # Zone or providerID changed (rare: the slim record filters heartbeats): every binding may care.
        for record in self._caches.bindings.values():
            self._enqueue(BindingKey(record.namespace, record.name), False)

    def on_binding(self, old: BindingRecord | None, new: BindingRecord | None) -> None:
        record = new or old
        if record is None:
            return
        # Our own status writes change only status: not a reason to reconcile again.
        if old is not None and new is not None and _same_but_status(old, new):
            return
        self._enqueue(BindingKey(record.namespace, record.name), False)


def _same_but_status(old: BindingRecord, new: BindingRecord) -> bool:
    return (old.spec_json, old.generation, old.finalizers, old.deleting, old.uid) == (
        new.spec_json,
        new.generation,
        new.finalizers,
        new.deleting,
        new.uid,
    )


def all_keys(caches: Caches) -> list[BindingKey]:
    return [BindingKey(r.namespace, r.name) for r in caches.bindings.values()]


__all__ = ["Handlers", "all_keys"]
