"""The TargetBinding controller: caches, watchers, the sync engine and the binding reconciler, on a manager.

Shape of a running controller::

    watchers (5 runnables, always on) ──▶ caches ──▶ handlers ──▶ engine.queue
    manager ── leads (elector, or alone once synced) ──▶ leader runnables: status writer, engine
    engine worker ──▶ Controller.reconcile(key) ──▶ BindingReconciler.reconcile(key):
        read binding/service/slices/pods/nodes from caches → desired endpoints (pure)
        → core Reconciler.reconcile (diff, coalesced cloud calls on call threads)
        → readiness gates (pods/status) · status (targetbindings/status) · Events

Standby replicas run the watchers so their caches are warm; only the leader runs the engine, and
so only the leader writes to a cloud or the API.  One bad object never stops the rest: spec
problems become a status condition and an Event, and a reconcile that raises is retried with
back-off by the engine.  :mod:`negsync.app` adds the HTTP servers and the webhook to the same
:class:`~negsync.kube.manager.Manager` and runs the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes import client

from negsync.calibration.timeline import TimelineLog
from negsync.core.clock import Clock, RealClock
from negsync.core.engine import Engine
from negsync.core.heartbeat import Heartbeats
from negsync.core.model import BindingKey
from negsync.core.observers import Observer, Observers
from negsync.core.ports import OwnershipStore, TargetProvider
from negsync.core.reconciling import Reconciler
from negsync.core.records import ReconcileResult
from negsync.draining import DrainTracker, DrainWait
from negsync.kube.binding_reconciler import BindingReconciler
from negsync.kube.caches import (
    GROUP,
    PLURAL,
    VERSION,
    Caches,
    decode_binding,
    decode_node,
    decode_pod,
    decode_service,
    decode_slice,
    pod_gate_bindings,
)
from negsync.kube.desired import DesiredState
from negsync.kube.drain_queries import DrainQueries
from negsync.kube.events import EventRecorder
from negsync.kube.gates import GateKeeper, GateWriter
from negsync.kube.handlers import Handlers, all_keys
from negsync.kube.leader import LeaderElector
from negsync.kube.manager import Background, Manager, Runnable
from negsync.kube.ownership import ConfigMapOwnershipStore
from negsync.kube.status import DetachTimings
from negsync.kube.status_writer import StatusWriter
from negsync.kube.watching import ResourceKind, Watcher

log = logging.getLogger("negsync.controller")


class ControllerSettings(Protocol):
    """What the controller reads of :class:`negsync.app.Settings` (declared there, with its flags)."""

    @property
    def namespace(self) -> str: ...
    @property
    def workers(self) -> int: ...
    @property
    def call_workers(self) -> int: ...
    @property
    def sync_min_interval(self) -> float: ...
    @property
    def resync_period(self) -> float: ...
    @property
    def member_list_period(self) -> float: ...
    @property
    def health_poll_interval(self) -> float: ...
    @property
    def gate_timeout(self) -> float: ...
    @property
    def leader_elect(self) -> bool: ...
    @property
    def lease_namespace(self) -> str: ...
    @property
    def lease_name(self) -> str: ...
    @property
    def lease_duration(self) -> float: ...
    @property
    def renew_deadline(self) -> float: ...
    @property
    def retry_period(self) -> float: ...
    @property
    def identity(self) -> str: ...
    @property
    def watch_timeout(self) -> int: ...


class Watching(Runnable):
    """One watcher as a runnable: ``Watcher.step`` in a loop, with a heartbeat per step."""

    def __init__(self, watcher: Watcher[Any], heartbeats: Heartbeats) -> None:
        self.watcher = watcher
        self.name = f"watch-{watcher.kind.name}"
        self._heartbeats = heartbeats

    def start(self, stop: threading.Event) -> None:
        # One step (a list or one watch stream) is bounded by its read timeout, so a step that
        # outlives it is stuck in our own event handling: /healthz reports it.
        while not stop.is_set():
            self._heartbeats.beat(self.name, within=self.watcher.step_deadline)
            self.watcher.step(stop)
        self._heartbeats.forget(self.name)

    def wake(self) -> None:
        self.watcher.interrupt()

    def started(self) -> bool:
        return self.watcher.synced.is_set()

    def not_ready(self) -> str | None:
        return None if self.watcher.synced.is_set() else "caches not synced"


class Syncing(Runnable):
    """The sync engine, leader only: built on leading with every binding queued, stopped on losing."""

    name = "engine"

    def __init__(self, *, new_engine: Callable[[], Engine], all_keys: Callable[[], list[BindingKey]],
                 invalidate_ownership: Callable[[], None], relook_after: float | None) -> None:
        self._new_engine = new_engine
        self._all_keys = all_keys
        self._invalidate_ownership = invalidate_ownership
        self._relook_after = relook_after
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    @property
    def needs_leader(self) -> bool:
        return True

    @property
    def engine(self) -> Engine | None:
        """The running engine while leading, else None."""
        with self._lock:
            return self._engine

    def start(self, stop: threading.Event) -> None:
        engine = self._new_engine()
        with self._lock:
            self._engine = engine
        # Another replica may have led since we last did: what we cached of its ownership
        # records is stale (see negsync.kube.ownership).
        self._invalidate_ownership()
        engine.start()
        for key in self._all_keys():
            engine.enqueue(key)
        if self._relook_after is not None:
            # The previous leader may still have had calls in flight that land after our first
            # listing: look again once its lease would certainly have run out.
            timer = threading.Timer(self._relook_after, self._relook, args=(engine,))
            timer.daemon = True
            timer.start()
        stop.wait()
        with self._lock:
            self._engine = None
        engine.stop()

    def _relook(self, engine: Engine) -> None:
        if self.engine is not engine:
            return
        engine.reconciler.invalidate()
        for key in self._all_keys():
            engine.enqueue(key)


class Controller:
    """Builds the pieces for one provider and registers them with :attr:`manager`."""

    reconcile_deadline = 300.0  # a worker's heartbeat deadline: API and cloud calls carry far lower timeouts
    status_retry_after = 5.0  # a failed status write is computed and sent again this much later

    def __init__(
        self,
        *,
        api_client: Any,
        provider: TargetProvider,
        settings: ControllerSettings,
        clock: Clock | None = None,
        ownership: OwnershipStore | None = None,
        observer: Observer | None = None,
        telemetry: Any = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.clock = clock or RealClock()
        self.telemetry = telemetry
        self.drain_tracker = DrainTracker(clock=self.clock)
        self.detach_timings = DetachTimings(clock=self.clock)
        listeners = [o for o in (observer, getattr(telemetry, "observer", None)) if o is not None]
        # Per-endpoint JSON log lines that `negsync calibrate --timeline` joins with LB access logs.
        self._observer = Observers(*listeners, self.drain_tracker, self.detach_timings, TimelineLog(clock=self.clock))
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.admission = client.AdmissionregistrationV1Api(api_client)
        discovery = client.DiscoveryV1Api(api_client)
        self.caches = Caches()
        self.desired_state = DesiredState(caches=self.caches, provider_name=provider.name)
        self.events = EventRecorder(core_api=self.core, host=settings.identity)
        self.gates = GateWriter(core_api=self.core)
        self.ownership = ownership or ConfigMapOwnershipStore(core_api=self.core, namespace=settings.lease_namespace)
        # Liveness: each watcher and worker loop beats here; /healthz fails when one misses its deadline.
        self.heartbeats = Heartbeats(now=self.clock.now)
        self.leader: LeaderElector | None = None
        if settings.leader_elect:
            self.leader = LeaderElector(
                coordination_api=client.CoordinationV1Api(api_client),
                namespace=settings.lease_namespace,
                name=settings.lease_name,
                identity=settings.identity,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                clock=self.clock,
                on_started_leading=lambda: self.manager.start_leading(),
                on_stopped_leading=lambda: self.manager.stop_leading(),
            )
        self.manager = Manager(elector=self.leader)
        self.status_writer = StatusWriter(patch_status=self._patch_status, on_failure=self._status_not_written)
        self.binding_reconciler = BindingReconciler(
            caches=self.caches, custom_api=self.custom, core_api=self.core, provider=provider,
            desired_state=self.desired_state, events=self.events, status_writer=self.status_writer,
            detach_timings=self.detach_timings, engine=lambda: self.engine, elector=self.leader,
            retry_period=settings.retry_period,
            gates=GateKeeper(caches=self.caches, writer=self.gates, events=self.events,
                             gate_timeout=settings.gate_timeout, provider_name=provider.name, telemetry=telemetry))
        self.queries = DrainQueries(caches=self.caches, provider=provider, engine=lambda: self.engine)
        handlers = Handlers(caches=self.caches, enqueue=self._enqueue_from_watch,
                            endpoints_changed=self._endpoints_changed,
                            pod_ips_changed=self.drain_tracker.pod_ips_changed)

        def custom_all(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)

        def custom_in(namespace: str, **kw: Any) -> Any:
            return self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kw)

        kinds: list[tuple[ResourceKind, Any, Any, bool]] = [
            (ResourceKind("targetbindings", custom_all, custom_in, decode_binding), self.caches.bindings,
             handlers.on_binding, True),
            (ResourceKind("services", self.core.list_service_for_all_namespaces, self.core.list_namespaced_service,
                          decode_service), self.caches.services, handlers.on_service, True),
            (ResourceKind("endpointslices", discovery.list_endpoint_slice_for_all_namespaces,
                          discovery.list_namespaced_endpoint_slice, decode_slice, decode_slice),
             self.caches.slices, handlers.on_slice, True),
            (ResourceKind("pods", self.core.list_pod_for_all_namespaces, self.core.list_namespaced_pod, decode_pod),
             self.caches.pods, handlers.on_pod, True),
            (ResourceKind("nodes", self.core.list_node, None, decode_node), self.caches.nodes, handlers.on_node, False),
        ]
        self.watchers: list[Watcher[Any]] = [
            Watcher(kind=kind, store=store, on_change=handler, clock=self.clock,
                    namespace=(settings.namespace or None) if namespaced else None,
                    watch_timeout=settings.watch_timeout)
            for kind, store, handler, namespaced in kinds
        ]
        for watcher in self.watchers:
            self.manager.add(Watching(watcher, self.heartbeats))
        # Leader runnables stop last-started first: the engine finishes its calls, then the
        # writer sends what waits (on shutdown) or drops it (leadership lost: a standby writes nothing).
        self.manager.add(Background(name="status-writer", begin=self.status_writer.start,
                                    end=self._stop_status_writer, leader_only=True))
        self._syncing = Syncing(
            new_engine=lambda: Engine(reconciler_factory=self._new_reconciler, reconcile=self._beating_reconcile,
                                      clock=self.clock, workers=settings.workers),
            all_keys=self._all_keys, invalidate_ownership=getattr(self.ownership, "invalidate", lambda: None),
            relook_after=settings.lease_duration if self.leader is not None else None)
        self.manager.add(self._syncing)

    def _stop_status_writer(self) -> None:
        if not self.manager.shutting_down:
            self.status_writer.clear()  # leadership lost: a standby writes no status
        # Within the manager's wait for this runnable, so the writer threads have ended when it returns.
        self.status_writer.stop(timeout=0.8 * min(self.manager.stop_timeout, 10.0))

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """Every always-on runnable has done its start-up work: the watchers have listed."""
        return self.manager.synced

    @property
    def leading(self) -> bool:
        return self.engine is not None

    @property
    def ready(self) -> bool:
        """Caches synced, and we lead or know who does."""
        return self.manager.ready

    @property
    def engine(self) -> Engine | None:
        return self._syncing.engine

    @property
    def last_results(self) -> dict[BindingKey, ReconcileResult]:
        return self.binding_reconciler.last_results

    def start(self) -> None:
        self.manager.start()

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop taking work, finish in-flight calls and status writes, release the Lease, stop watching."""
        self.manager.stop(timeout=timeout)

    def wedged(self) -> list[str]:
        """Loops that missed their heartbeat deadline (``/healthz`` fails while any is listed)."""
        return [str(stale) for stale in self.heartbeats.stale()]

    def _beating_reconcile(self, key: BindingKey) -> ReconcileResult:
        # A worker is idle (not wedged) while it waits on the queue; only a reconcile has a deadline.
        name = threading.current_thread().name
        self.heartbeats.beat(name, within=self.reconcile_deadline)
        try:
            return self.reconcile(key)
        finally:
            self.heartbeats.idle(name)

    def _all_keys(self) -> list[BindingKey]:
        """Every binding, and every binding a pod's gate names (its binding may be gone: release it)."""
        keys = dict.fromkeys(all_keys(self.caches))
        for pod in self.caches.pods.values():
            for namespace, name in pod_gate_bindings(pod):
                keys.setdefault(BindingKey(namespace, name))
        return list(keys)

    def _new_reconciler(self, enqueue: Any) -> Reconciler:
        return Reconciler(
            provider=self.provider,
            enqueue=enqueue,
            clock=self.clock,
            ownership=self.ownership,
            observer=self._observer,
            call_workers=self.settings.call_workers,
            min_interval=self.settings.sync_min_interval,
            resync_period=self.settings.resync_period,
            member_list_period=self.settings.member_list_period,
            health_poll_interval=self.settings.health_poll_interval,
        )

    def _enqueue_from_watch(self, key: BindingKey, priority: bool) -> None:
        engine = self.engine
        if engine is not None:
            engine.enqueue(key, 0.0, priority)

    def _endpoints_changed(self, key: BindingKey) -> None:
        self.detach_timings.changed(key)
        if self.telemetry is not None:
            self.telemetry.note_change(key, self.clock.now())

    def _patch_status(self, namespace: str, name: str, body: Any) -> None:
        self.binding_reconciler.patch_status(namespace, name, body)

    def _status_not_written(self, key: BindingKey) -> None:
        # The reconcile computes the status again; a fixed delay, not the per-key back-off, which
        # the reconcile's own success resets (an API outage would turn it into a busy loop).
        engine = self.engine
        if engine is not None:
            engine.enqueue(key, self.status_retry_after)

    # -- drain-wait ----------------------------------------------------------------------------
    def drain_wait(self, *, margin: float | None = None, max_waiters: int = 256,
                   max_waiters_per_namespace: int | None = 64) -> DrainWait:
        return self.queries.drain_wait(tracker=self.drain_tracker, clock=self.clock, margin=margin,
                                       max_waiters=max_waiters, max_waiters_per_namespace=max_waiters_per_namespace)

    # -- one reconcile -------------------------------------------------------------------------
    def reconcile(self, key: BindingKey) -> ReconcileResult:
        started = self.clock.now()
        reconciler = self.binding_reconciler
        if self.telemetry is None:
            return reconciler.forget_finalized(reconciler.reconcile(key))
        with self.telemetry.tracer.start_as_current_span("reconcile", attributes={"negsync.binding": str(key)}):
            result = reconciler.forget_finalized(reconciler.reconcile(key))
        if result.synced:
            # The change needed no call: nothing to time. A change seen while this reconcile ran is
            # left for the reconcile it triggered.
            self.telemetry.take_change(key, noted_before=started)
        self.telemetry.record_result(result, self.clock.now() - started,
                                     len(result.rejected) + reconciler.skipped_count(key))
        return result


__all__ = ["Controller", "ControllerSettings"]
