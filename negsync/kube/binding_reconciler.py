"""The Kubernetes half of one reconcile: finalizer, readiness gates, status and Events around the sync.

The engine's worker calls :meth:`BindingReconciler.reconcile` with a key; it reads the binding
from the cache and, level-based as everything else:

* a binding that is gone (confirmed with a GET: the pod watch may run ahead of the binding watch)
  releases its pods' gates and lets the core reconciler clean its targets;
* a binding being deleted is synced to nothing, then its finalizer is removed;
* a binding with a problem (invalid spec, missing Service, unknown port, another provider's
  target, a name too long for a gate) gets a False condition and an Event, and its pods' gates
  are released once the decision is confirmed against the API (:meth:`decided_on_current`);
* otherwise the finalizer is added, the desired endpoints are computed from the caches
  (:class:`~negsync.kube.desired.DesiredState`), the core
  :class:`~negsync.core.reconciling.Reconciler` makes the cloud calls, and the outcome becomes
  gates (:class:`~negsync.kube.gates.GateKeeper`), Events and a status (handed to the
  :class:`~negsync.kube.status_writer.StatusWriter`, off the reconcile path).

A reconcile while not sure we lead (a late renewal) writes nothing and comes back later.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from negsync.core.bindings import BindingSpec
from negsync.core.engine import Engine
from negsync.core.model import BindingKey
from negsync.core.ports import TargetProvider
from negsync.core.records import DesiredBinding, ReconcileResult
from negsync.errors import ProviderError
from negsync.kube.caches import (
    FINALIZER,
    GROUP,
    PLURAL,
    VERSION,
    BindingRecord,
    Caches,
    ServiceRecord,
    decode_binding,
    decode_service,
)
from negsync.kube.desired import DesiredState
from negsync.kube.events import EventRecorder, ObjectRef
from negsync.kube.gates import BINDING_DELETED, GATE_DISABLED, GateKeeper
from negsync.kube.leader import LeaderElector
from negsync.kube.status import DetachTimings, Problem, binding_status
from negsync.kube.status_writer import StatusWriter

log = logging.getLogger("negsync.controller")

_JSON_PATCH = "application/json-patch+json"


class BindingReconciler:
    """One binding's reconcile, Kubernetes side; the cloud side is the engine's core reconciler."""

    def __init__(self, *, caches: Caches, custom_api: Any, core_api: Any, provider: TargetProvider,
                 desired_state: DesiredState, gates: GateKeeper, events: EventRecorder, status_writer: StatusWriter,
                 detach_timings: DetachTimings, engine: Callable[[], Engine | None],
                 elector: LeaderElector | None, retry_period: float) -> None:
        self._caches = caches
        self.custom = custom_api
        self.core = core_api
        self._provider = provider
        self.desired_state = desired_state
        self.gates = gates
        self.events = events
        self.status_writer = status_writer
        self._detach_timings = detach_timings
        self._engine = engine
        self._elector = elector
        self._retry_period = retry_period
        self._lock = threading.Lock()
        self.last_results: dict[BindingKey, ReconcileResult] = {}
        self.skipped: dict[BindingKey, int] = {}  # endpoints skipped per binding (degraded-endpoint gauge)

    def skipped_count(self, key: BindingKey) -> int:
        with self._lock:
            return self.skipped.get(key, 0)

    def forget_finalized(self, result: ReconcileResult) -> ReconcileResult:
        """A binding that is gone leaves no per-key state behind (issue 18: a soak deletes thousands)."""
        if result.finalized:
            with self._lock:
                self.last_results.pop(result.key, None)
                self.skipped.pop(result.key, None)
            self._detach_timings.forget(result.key)
        return result

    def reconcile(self, key: BindingKey) -> ReconcileResult:
        engine = self._engine()
        if engine is None:
            return ReconcileResult(key=key)
        if self._elector is not None and not self._elector.is_leader:
            # Not sure we still lead (renewal late, or the clock jumped): write nothing, but keep the key.
            return ReconcileResult(key=key, requeue_after=self._retry_period)
        record = self._caches.bindings.get((key.namespace, key.name))
        if record is None:
            self.status_writer.forget(key)
            # The pod watch may run ahead of the binding watch: a pod seen before its binding must
            # not be released, so "gone" is confirmed with a read from the API first.
            if not self.gates.release(key, BINDING_DELETED, f"TargetBinding {key.name} does not exist",
                                      confirm=lambda: self._binding_gone(key)):
                return ReconcileResult(key=key, requeue_after=1.0)
            return engine.reconciler.reconcile(key, self.desired_state.compute(key))
        ref = ObjectRef(f"{GROUP}/{VERSION}", "TargetBinding", key.namespace, key.name, record.uid)
        check = self.desired_state.problem(key)
        spec, service, reason, message = check.spec, check.service, check.reason, check.message
        if record.deleting:
            return self._finalize(engine, key, record, ref, spec)
        if not reason and spec is not None and spec.readiness_gate and len(key.name) > 63:
            # The CRD's CEL rule rejects these; a cluster without CEL validation (< 1.25) may still
            # hold one. No pod can carry its gate (a condition type's name part is at most 63
            # characters), so the webhook skips it: say so instead of syncing it without gates.
            reason, message = "NameTooLong", (
                f"metadata.name has {len(key.name)} characters; the readiness gate target-health.negsync.io/<name> "
                f"fits at most 63: use a shorter name, or set spec.readinessGate false")
        if reason:
            self.events.warning(ref, reason, message)
            if service is not None:
                self.events.warning(ObjectRef("v1", "Service", key.namespace, service.name, service.uid), reason, message)
            self._write_status(record, binding_status(generation=record.generation, previous=record.status,
                                                      problem=Problem(reason, message)))
            service_name = spec.service_name if spec is not None else ""
            self.gates.release(key, reason, message,
                               confirm=lambda: self.decided_on_current(key, record, service_name, service))
            return ReconcileResult(key=key, errors=(message,))
        assert spec is not None and service is not None  # no reason: both were found
        if FINALIZER not in record.finalizers and not self._set_finalizer(record, present=True):
            return ReconcileResult(key=key, errors=("could not add finalizer",), requeue_after=5.0)
        return self._sync(engine, key, record, ref, spec, service)

    def _finalize(self, engine: Engine, key: BindingKey, record: BindingRecord, ref: ObjectRef,
                  spec: BindingSpec | None) -> ReconcileResult:
        self.gates.release(key, BINDING_DELETED, f"TargetBinding {key.name} is being deleted")
        if FINALIZER not in record.finalizers:
            return ReconcileResult(key=key, finalized=True)
        if spec is None:
            # Nothing we can clean with an unreadable spec: let the object go.
            self._set_finalizer(record, present=False)
            return ReconcileResult(key=key, finalized=True)
        result = engine.reconciler.reconcile(key, self.desired_state.compute(key))
        if result.finalized:
            for target in result.retained:
                self.events.warning(ref, "TargetRetained", f"{target} is still in use and was left in place")
            self._set_finalizer(record, present=False)
        return result

    def _sync(self, engine: Engine, key: BindingKey, record: BindingRecord, ref: ObjectRef, spec: BindingSpec,
              service: ServiceRecord) -> ReconcileResult:
        desired = self.desired_state.compute(key)
        # Rules first, as LBC does: registered targets are health-checked at once.
        networking_error = self._keep_networking(key, spec, desired)
        result = engine.reconciler.reconcile(key, desired)
        if networking_error:
            result = dataclasses.replace(result, errors=(*result.errors, networking_error))
        timeouts = 0
        if spec.readiness_gate:
            timeouts, wait_until = self.gates.update(
                key, spec, service, desired, result,
                confirm=lambda: self.decided_on_current(key, record, spec.service_name, service))
            if wait_until is not None and (result.requeue_after is None or wait_until < result.requeue_after):
                result = dataclasses.replace(result, requeue_after=wait_until)
        else:
            released = self.gates.release(key, GATE_DISABLED, f"TargetBinding {key.name} has spec.readinessGate false",
                                          confirm=lambda: self.decided_on_current(key, record, "", None))
            if not released:
                result = dataclasses.replace(result, requeue_after=min(result.requeue_after or 1.0, 1.0))
        self._report(ref, service, result, desired)
        with self._lock:
            self.skipped[key] = len(desired.skipped) if desired else 0
        links = sorted({self._link(t.ref) for t in result.targets})
        status = binding_status(
            generation=record.generation, previous=record.status, result=result,
            skipped=desired.skipped if desired else (), target_links=links, gate_timeouts=timeouts)
        last_detach = self._detach_timings.last(key)
        if last_detach is not None:
            status["lastDetach"] = last_detach
        self._write_status(record, status)
        with self._lock:
            self.last_results[key] = result
        return result

    def _keep_networking(self, key: BindingKey, spec: BindingSpec, desired: DesiredBinding | None) -> str:
        """Security-group rules of ``spec.target.awsTargetGroup.networking`` (providers that keep them).

        Returns the error to report ("" when fine): a condition and an Event, like any sync error.
        """
        keep = getattr(self._provider, "reconcile_networking", None)
        if not callable(keep) or desired is None:
            return ""
        try:
            keep(binding=key, spec=spec.target, endpoints=desired.endpoints)
        except ProviderError as exc:
            return f"networking: {exc}"
        return ""

    def _link(self, ref: Any) -> str:
        link = getattr(self._provider, "target_link", None)
        return str(link(ref)) if callable(link) else (ref.name if ref.kind == "aws" else str(ref))

    def _report(self, ref: ObjectRef, service: ServiceRecord | None, result: ReconcileResult,
                desired: DesiredBinding | None) -> None:
        service_ref = ObjectRef("v1", "Service", ref.namespace, service.name, service.uid) if service else None
        for conflict in result.conflicts:
            self.events.warning(ref, "OwnershipConflict", conflict)
            if service_ref:
                self.events.warning(service_ref, "OwnershipConflict", conflict)
        for error in result.errors:
            self.events.warning(ref, "SyncFailed", error)
            if service_ref:
                self.events.warning(service_ref, "SyncFailed", error)
        for member, why in result.rejected.items():
            self.events.warning(ref, "EndpointRejected", f"{member}: {why}")
        for quota in result.quota_exceeded:
            self.events.warning(ref, "QuotaExceeded", quota)
        for skipped in desired.skipped if desired else ():
            self.events.warning(ref, "EndpointSkipped", f"{skipped.address}: {skipped.reason}")

    # -- reads that confirm a decision ---------------------------------------------------------------
    def decided_on_current(self, key: BindingKey, record: BindingRecord, service_name: str,
                           service: ServiceRecord | None) -> bool:
        """Whether the binding and Service a decision was made on are what the API holds now.

        Releasing a gate cannot be undone, and the pod watch may run ahead of the Service and
        binding watches (a pod created right after its Service is seen first): a release is
        decided on cached records, then checked against the API's answer.  ``service`` None means
        the decision saw no such Service.  Two GETs, only when a gate is about to be released.
        """
        raw: Any
        try:
            raw = self.custom.get_namespaced_custom_object(GROUP, VERSION, key.namespace, PLURAL, key.name,
                                                           _request_timeout=10, _preload_content=False)
            live = decode_binding(json.loads(raw.data))
            if (live.uid, live.spec_json, live.deleting) != (record.uid, record.spec_json, record.deleting):
                return False
            if not service_name:
                return True
            try:
                raw = self.core.read_namespaced_service(service_name, key.namespace, _request_timeout=10,
                                                        _preload_content=False)
            except ApiException as exc:
                return exc.status == 404 and service is None
            return decode_service(json.loads(raw.data)) == service
        except Exception:  # not sure: release nothing now, the re-queue asks again
            log.debug("gate release not confirmed", exc_info=True)
            return False

    def _binding_gone(self, key: BindingKey) -> bool:
        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, key.namespace, PLURAL, key.name,
                                                     _request_timeout=10, _preload_content=False)
        except ApiException as exc:
            return exc.status == 404
        return False

    # -- writes ------------------------------------------------------------------------------------
    def _set_finalizer(self, record: BindingRecord, *, present: bool) -> bool:
        if present:
            ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": record.uid}]
            ops.append({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER} if record.finalizers
                       else {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
        else:
            if FINALIZER not in record.finalizers:
                return True
            index = record.finalizers.index(FINALIZER)
            ops = [{"op": "test", "path": "/metadata/uid", "value": record.uid},
                   {"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
                   {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
        try:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, record.namespace, PLURAL, record.name, ops,
                                                       _request_timeout=10, _content_type=_JSON_PATCH)
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                return False  # changed under us: the next watch event brings a fresh record
            raise
        return True

    def _write_status(self, record: BindingRecord, status: Mapping[str, Any]) -> None:
        """Hand the status to the writer: the PATCH leaves the reconcile path (issue 18)."""
        self.status_writer.submit(key=BindingKey(record.namespace, record.name), namespace=record.namespace,
                                  name=record.name, cached_json=record.status_json, status=status)

    def patch_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """The status writer's PATCH of ``targetbindings/status``."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, dict(body), _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:  # a deleted binding needs no status
                raise


__all__ = ["BindingReconciler"]
