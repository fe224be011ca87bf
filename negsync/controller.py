"""``negsync controller``: wires the kube layer, the sync engine and one provider together.

Shape of a running controller::

    watchers (5 threads, always on) ──▶ caches ──▶ handlers ──▶ engine.queue
    leader elector (1 thread) ── start/stop leading ──▶ engine workers (only while leading)
    engine worker ──▶ Controller.reconcile(key):
        read binding/service/slices/pods/nodes from caches → desired endpoints (pure)
        → Reconciler.reconcile (diff, coalesced cloud calls on call threads)
        → readiness gates (pods/status) · status (targetbindings/status) · Events
    health server: /healthz /readyz (+ /drain-wait) · metrics server: /metrics

Standby replicas run the watchers so their caches are warm; only the leader runs workers, and
so only the leader writes to a cloud or the API.  One bad object never stops the rest: spec
problems become a status condition and an Event, and a reconcile that raises is retried with
back-off by the engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from negsync.core.bindings import BindingSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.engine import Engine
from negsync.core.heartbeat import Heartbeats
from negsync.core.httpserver import parse_address
from negsync.core.latency import Fixed
from negsync.core.model import BindingKey, Health
from negsync.core.reconciling import DesiredBinding, Observer, Reconciler, ReconcileResult
from negsync.errors import ConfigError, ProviderError
from negsync.kube.selection import bindings_selecting
from negsync.providers.base import OwnershipStore, TargetProvider

log = logging.getLogger("negsync.controller")

GROUP, VERSION, PLURAL = "negsync.io", "v1alpha1", "targetbindings"


# -- command line ------------------------------------------------------------------------------
def _duration(text: str) -> float:
    """Seconds from '15', '15s', '2m', '1h' or '500ms'."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 15s, 2m)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kube = parser.add_argument_group("Kubernetes")
    kube.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config)")
    kube.add_argument("--namespace", default="", help="watch only this namespace (default: all namespaces)")
    kube.add_argument("--cluster-name", default="", help="cluster name, recorded in NEG descriptions and Events")
    kube.add_argument("--cluster-uid", default="",
                      help="stable cluster id for NEG names and ownership (default: the kube-system namespace uid)")
    sync = parser.add_argument_group("sync")
    sync.add_argument("--provider", choices=("gcp", "aws", "memory"), default="memory", help="load-balancer provider")
    sync.add_argument("--workers", type=_positive_int, default=4, help="reconcile workers")
    sync.add_argument("--call-workers", type=_positive_int, default=8, help="threads issuing cloud calls")
    sync.add_argument("--sync-min-interval", type=_duration, default=0.5,
                      help="minimum time between two calls on one target (bounds the call rate)")
    sync.add_argument("--resync-period", type=_duration, default=300.0,
                      help="re-read every target this often to repair drift made outside negsync")
    sync.add_argument("--member-list-period", type=_duration, default=60.0,
                      help="re-list every target's members at least this often, so endpoints the cloud removed "
                           "by itself (a VM stopped, preempted or deleted) are re-attached (default 60s)")
    sync.add_argument("--health-poll-interval", type=_duration, default=5.0,
                      help="re-read target health this often while a readiness gate is pending")
    sync.add_argument("--gate-timeout", type=_duration, default=600.0,
                      help="release a readiness gate after this long even if the LB never reports healthy")
    serve = parser.add_argument_group("serving")
    serve.add_argument("--metrics-addr", type=_address, default=":9090", help="address of /metrics (port 0: off)")
    serve.add_argument("--health-addr", type=_address, default=":8080", help="address of /healthz, /readyz and /drain-wait")
    serve.add_argument("--drain-margin", type=_duration, default=None,
                       help="extra wait after a detach completes before /drain-wait answers "
                            "(default: measured p99 of detach latency, at least 2s; 10s before any sample)")
    serve.add_argument("--max-drain-waiters", type=_positive_int, default=256,
                       help="concurrent /drain-wait requests; more get 429")
    serve.add_argument("--max-drain-waiters-per-namespace", type=_positive_int, default=64,
                       help="concurrent /drain-wait requests for pods of one namespace; more get 429, so one "
                            "namespace's rollout cannot take the whole --max-drain-waiters pool")
    serve.add_argument("--webhook-addr", type=_address, default=":0",
                       help="HTTPS address of the readiness-gate injection webhook, e.g. :9443 as deploy/ sets it "
                            "(default port 0: off, for runs outside a cluster)")
    serve.add_argument("--webhook-cert-dir", default=None,
                       help="directory with tls.crt/tls.key (e.g. from cert-manager); default: self-generated, "
                            "with the CA patched into the MutatingWebhookConfiguration")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                       help="lowest level written to the JSON log on stderr")
    election = parser.add_argument_group("leader election")
    election.add_argument("--leader-elect", action="store_true", help="elect a leader on a Lease; only it writes")
    election.add_argument("--leader-elect-namespace", default=os.environ.get("POD_NAMESPACE", "negsync-system"),
                          help="namespace of the Lease (and of ownership ConfigMaps)")
    election.add_argument("--leader-elect-id", default="negsync-controller", help="name of the Lease")
    election.add_argument("--leader-elect-lease-duration", type=_duration, default=15.0,
                          help="how long a Lease is valid without renewal (controller-runtime's default)")
    election.add_argument("--leader-elect-renew-deadline", type=_duration, default=10.0,
                          help="a leader that cannot renew within this steps down (before its Lease can expire)")
    election.add_argument("--leader-elect-retry-period", type=_duration, default=2.0,
                          help="how often to try to acquire or renew the Lease")
    cloud = parser.add_argument_group("clouds")
    cloud.add_argument("--aws-endpoint-url", default=None, help="ELBv2/EC2 endpoint (private endpoints, tests)")
    cloud.add_argument("--aws-max-attempts", type=_positive_int, default=10, help="botocore retry attempts")
    cloud.add_argument("--aws-retry-mode", choices=("standard", "adaptive"), default="standard",
                       help="botocore retry mode")
    cloud.add_argument("--aws-rate-limits", default="",
                       help="client-side ELBv2 throttle groups shared per region, KEY=RATE:BURST with KEY an operation, "
                            "pattern or A|B, e.g. 'Describe*=5:20,RegisterTargets|DeregisterTargets=3:10' (merged into "
                            "the defaults, which stay below AWS's account buckets: docs/aws.md)")
    cloud.add_argument("--gcp-compute-endpoint", default=None, help="Compute API root (private endpoints, tests)")
    cloud.add_argument("--gcp-anonymous", action="store_true",
                       help="send no Google credentials (only with --gcp-compute-endpoint: a private or test endpoint)")
    cloud.add_argument("--gcp-rate-limit", type=float, default=10.0, help="NEG API calls per second per project")
    cloud.add_argument("--memory-attach-delay", type=_duration, default=0.0,
                       help="memory provider: seconds from attach to healthy")
    cloud.add_argument("--memory-no-health-check", action="store_true",
                       help="memory provider: report no health checking (gates pass with NoHealthCheck)")


@dataclass(frozen=True, slots=True)
class Settings:
    namespace: str = ""
    workers: int = 4
    call_workers: int = 8
    sync_min_interval: float = 0.5
    resync_period: float = 300.0
    member_list_period: float = 60.0
    health_poll_interval: float = 5.0
    gate_timeout: float = 600.0
    leader_elect: bool = False
    lease_namespace: str = "negsync-system"
    lease_name: str = "negsync-controller"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""
    watch_timeout: int = 300
    cluster_name: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        if not args.leader_elect_lease_duration > args.leader_elect_renew_deadline > args.leader_elect_retry_period > 0:
            raise ConfigError("--leader-elect-lease-duration",
                              "need lease duration > renew deadline > retry period > 0")
        if not args.member_list_period > 0:
            raise ConfigError("--member-list-period", f"must be > 0, got {args.member_list_period:g}s")
        return cls(
            namespace=args.namespace,
            workers=args.workers,
            call_workers=args.call_workers,
            sync_min_interval=args.sync_min_interval,
            resync_period=args.resync_period,
            member_list_period=args.member_list_period,
            health_poll_interval=args.health_poll_interval,
            gate_timeout=args.gate_timeout,
            leader_elect=args.leader_elect,
            lease_namespace=args.leader_elect_namespace,
            lease_name=args.leader_elect_id,
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
            # The pod's name (downward API in deploy/base) says which replica leads; a random suffix
            # keeps a restarted process distinct from its predecessor's still-valid Lease record.
            identity=f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            cluster_name=args.cluster_name,
        )


# -- the controller ----------------------------------------------------------------------------
class Controller:
    def __init__(
        self,
        *,
        api_client: Any,
        provider: TargetProvider,
        settings: Settings,
        clock: Clock | None = None,
        ownership: OwnershipStore | None = None,
        observer: Observer | None = None,
        telemetry: Any = None,
    ) -> None:
        from kubernetes import client

        from negsync.kube.caches import Caches, decode_binding, decode_node, decode_pod, decode_service, decode_slice
        from negsync.kube.events import EventRecorder
        from negsync.kube.gates import GateWriter
        from negsync.kube.handlers import Handlers
        from negsync.kube.ownership import ConfigMapOwnershipStore
        from negsync.kube.status_writer import StatusWriter
        from negsync.kube.watching import ResourceKind, Watcher

        self.settings = settings
        self.provider = provider
        self.clock = clock or RealClock()
        from negsync.core.reconciling import Observers
        from negsync.draining import DrainTracker

        self.drain_tracker = DrainTracker(clock=self.clock)
        self.detach_timings = DetachTimings(clock=self.clock)
        listeners = [o for o in (observer, getattr(telemetry, "observer", None)) if o is not None]
        from negsync.calibration.timeline import TimelineLog

        # Per-endpoint JSON log lines that `negsync calibrate --timeline` joins with LB access logs.
        self._observer = Observers(*listeners, self.drain_tracker, self.detach_timings, TimelineLog(clock=self.clock))
        self.telemetry = telemetry
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        discovery = client.DiscoveryV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.caches = Caches()
        from negsync.kube.desired import DesiredState

        self.desired_state = DesiredState(caches=self.caches, provider_name=provider.name)
        self.events = EventRecorder(core_api=self.core, host=settings.identity)
        self.gates = GateWriter(core_api=self.core)
        self.status_writer = StatusWriter(patch_status=self._patch_status)
        self.ownership = ownership or ConfigMapOwnershipStore(core_api=self.core, namespace=settings.lease_namespace)
        self._lock = threading.RLock()
        self._engine: Engine | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Liveness: each watcher and worker loop beats here; /healthz fails when one misses its deadline.
        self.heartbeats = Heartbeats(now=self.clock.now)
        self.last_results: dict[BindingKey, ReconcileResult] = {}
        self._computing: dict[BindingKey, DesiredBinding | None] = {}
        self._skipped: dict[BindingKey, int] = {}
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
        from negsync.draining import ProviderMembership

        self._standby_membership = ProviderMembership(provider=provider, targets_of_pod=self.targets_of_pod)
        self.leader = None
        if settings.leader_elect:
            from negsync.kube.leader import LeaderElector

            self.leader = LeaderElector(
                coordination_api=self.coordination,
                namespace=settings.lease_namespace,
                name=settings.lease_name,
                identity=settings.identity,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                clock=self.clock,
                on_started_leading=self._start_leading,
                on_stopped_leading=self._stop_leading,
            )

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self.watchers)

    @property
    def leading(self) -> bool:
        with self._lock:
            return self._engine is not None

    @property
    def ready(self) -> bool:
        """Caches synced, and we lead or know who does."""
        if not self.synced:
            return False
        return self.leader.known if self.leader is not None else self.leading

    def start(self) -> None:
        self.status_writer.start()
        for watcher in self.watchers:
            thread = threading.Thread(target=self._watch, args=(watcher,), name=f"watch-{watcher.kind.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        target = self._run_election if self.leader is not None else self._lead_when_synced
        thread = threading.Thread(target=target, name="leader", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self, watcher: Any) -> None:
        # Watcher.run, with a heartbeat per step: one step (a list or one watch stream) is bounded
        # by its read timeout, so a step that outlives it is stuck in our own event handling.
        name = f"watch-{watcher.kind.name}"
        while not self._stop.is_set():
            self.heartbeats.beat(name, within=watcher.step_deadline)
            watcher.step(self._stop)
        self.heartbeats.forget(name)

    def _beating_reconcile(self, key: BindingKey) -> ReconcileResult:
        # A worker is idle (not wedged) while it waits on the queue; only a reconcile has a deadline.
        name = threading.current_thread().name
        self.heartbeats.beat(name, within=self.reconcile_deadline)
        try:
            return self.reconcile(key)
        finally:
            self.heartbeats.idle(name)

    reconcile_deadline = 300.0  # API and cloud calls all carry timeouts far below this

    def wedged(self) -> list[str]:
        """Loops that missed their heartbeat deadline (``/healthz`` fails while any is listed)."""
        return [str(stale) for stale in self.heartbeats.stale()]

    def _lead_when_synced(self) -> None:
        while not self._stop.is_set():
            if self.synced:
                self._start_leading()
                return
            self._stop.wait(0.05)

    def _run_election(self) -> None:
        assert self.leader is not None
        while not self.synced and not self._stop.is_set():
            self._stop.wait(0.05)  # never lead with cold caches
        self.leader.run(self._stop)

    def _start_leading(self) -> None:
        with self._lock:
            if self._engine is not None or self._stop.is_set():
                return
            engine = Engine(reconciler_factory=self._new_reconciler, reconcile=self._beating_reconcile,
                            clock=self.clock, workers=self.settings.workers)
            self._engine = engine
        # Another replica may have led since we last did: what we cached of its ownership
        # records is stale (see negsync.kube.ownership).
        invalidate = getattr(self.ownership, "invalidate", None)
        if callable(invalidate):
            invalidate()
        engine.start()
        for key in self._all_keys():
            engine.enqueue(key)
        if self.leader is not None:
            # The previous leader may still have had calls in flight that land after our first
            # listing: look again once its lease would certainly have run out.
            timer = threading.Timer(self.settings.lease_duration, self._relook, args=(engine,))
            timer.daemon = True
            timer.start()

    def _all_keys(self) -> list[BindingKey]:
        """Every binding, and every binding a pod's gate names (its binding may be gone: release it)."""
        from negsync.kube.caches import pod_gate_bindings
        from negsync.kube.handlers import all_keys

        keys = dict.fromkeys(all_keys(self.caches))
        for pod in self.caches.pods.values():
            for namespace, name in pod_gate_bindings(pod):
                keys.setdefault(BindingKey(namespace, name))
        return list(keys)

    def _relook(self, engine: Engine) -> None:
        if self.engine is not engine:
            return
        engine.reconciler.invalidate()
        for key in self._all_keys():
            engine.enqueue(key)

    def _stop_leading(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop()
        self.status_writer.clear()  # a standby writes no status

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop taking work, finish in-flight calls, release the Lease, stop watching."""
        self._stop.set()
        if self.leader is not None:
            self.leader.wake()
        for watcher in self.watchers:
            watcher.interrupt()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self.status_writer.stop(timeout=min(timeout, 10.0))  # still leading: send what is waiting
        self._stop_leading()

    def _new_reconciler(self, enqueue: Any) -> Reconciler:
        return Reconciler(
            provider=self.provider,
            source=self._desired,
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
        with self._lock:
            engine = self._engine
        if engine is not None:
            engine.enqueue(key, 0.0, priority)

    def _endpoints_changed(self, key: BindingKey) -> None:
        self.detach_timings.changed(key)
        if self.telemetry is not None:
            self.telemetry.note_change(key, self.clock.now())

    @property
    def engine(self) -> Engine | None:
        with self._lock:
            return self._engine

    # -- drain-wait ----------------------------------------------------------------------------
    def pod_ips(self, namespace: str, name: str) -> tuple[str, ...] | None:
        pod = self.caches.pods.get((namespace, name))
        return None if pod is None else pod.ips

    def bindings_of_pod(self, namespace: str, name: str) -> list[tuple[BindingKey, BindingSpec]]:
        """Bindings whose Service selects the pod (the targets a draining pod must leave)."""
        pod = self.caches.pods.get((namespace, name))
        if pod is None:
            return []
        return [(BindingKey(namespace, found.record.name), found.spec) for found in bindings_selecting(
            namespace=namespace, labels=pod.label_map, bindings=self.caches.bindings.values(),
            services=self.caches.services.get)]

    def holds(self, namespace: str, name: str, ip: str) -> bool:
        """Whether any target of the pod's bindings still holds ``ip`` (unknown counts as yes)."""
        bindings = self.bindings_of_pod(namespace, name)
        if not bindings:
            return False
        engine = self.engine
        if engine is not None:
            return engine.reconciler.holds(ip, keys=[key for key, _ in bindings])
        return self._standby_membership(namespace, name, ip)

    def targets_of_pod(self, namespace: str, name: str) -> list[Any]:
        refs: list[Any] = []
        for key, spec in self.bindings_of_pod(namespace, name):
            refs.extend(self.provider.existing_targets(binding=key, spec=spec.target))
        return refs

    def drain_wait(self, *, margin: float | None = None, max_waiters: int = 256,
                   max_waiters_per_namespace: int | None = 64) -> Any:
        from negsync.draining import DrainWait

        return DrainWait(pod_ips=self.pod_ips, holds=self.holds, tracker=self.drain_tracker, clock=self.clock,
                         margin=margin, max_waiters=max_waiters, max_waiters_per_namespace=max_waiters_per_namespace)

    # -- one reconcile -------------------------------------------------------------------------
    def _problem(self, key: BindingKey) -> tuple[BindingSpec | None, Any, str, str]:
        return self.desired_state.problem(key)

    def _desired(self, key: BindingKey) -> DesiredBinding | None:
        """The reconciler's source: everything recomputed from the caches (level-based)."""
        with self._lock:
            if key in self._computing:
                return self._computing[key]  # computed once at the start of this reconcile
        return self.desired_state.compute(key)

    def _compute_desired(self, key: BindingKey) -> DesiredBinding | None:
        return self.desired_state.compute(key)

    def reconcile(self, key: BindingKey) -> ReconcileResult:
        started = self.clock.now()
        if self.telemetry is None:
            return self._forget_finalized(self._reconcile(key))
        with self.telemetry.tracer.start_as_current_span("reconcile", attributes={"negsync.binding": str(key)}):
            result = self._forget_finalized(self._reconcile(key))
        if result.synced:
            # The change needed no call: nothing to time. A change seen while this reconcile ran is
            # left for the reconcile it triggered.
            self.telemetry.take_change(key, noted_before=started)
        with self._lock:
            skipped = self._skipped.get(key, 0)
        self.telemetry.record_result(result, self.clock.now() - started, len(result.rejected) + skipped)
        return result

    def _forget_finalized(self, result: ReconcileResult) -> ReconcileResult:
        """A binding that is gone leaves no per-key state behind (issue 18: a soak deletes thousands)."""
        if result.finalized:
            with self._lock:
                self.last_results.pop(result.key, None)
                self._skipped.pop(result.key, None)
            self.detach_timings.forget(result.key)
        return result

    def _reconcile(self, key: BindingKey) -> ReconcileResult:
        from negsync.kube.caches import FINALIZER
        from negsync.kube.events import ObjectRef
        from negsync.kube.gates import BINDING_DELETED, GATE_DISABLED
        from negsync.kube.status import Problem, binding_status

        engine = self.engine
        if engine is None:
            return ReconcileResult(key=key)
        if self.leader is not None and not self.leader.is_leader:
            # Not sure we still lead (renewal late, or the clock jumped): write nothing, but keep the key.
            return ReconcileResult(key=key, requeue_after=self.settings.retry_period)
        record = self.caches.bindings.get((key.namespace, key.name))
        if record is None:
            self.status_writer.forget(key)
            # The pod watch may run ahead of the binding watch: a pod seen before its binding must
            # not be released, so "gone" is confirmed with a read from the API first.
            if not self._release_gates(key, BINDING_DELETED, f"TargetBinding {key.name} does not exist",
                                       confirm=lambda: self._binding_gone(key)):
                return ReconcileResult(key=key, requeue_after=1.0)
            return engine.reconciler.reconcile(key)
        ref = ObjectRef(f"{GROUP}/{VERSION}", "TargetBinding", key.namespace, key.name, record.uid)
        spec, service, reason, message = self._problem(key)
        if record.deleting:
            self._release_gates(key, BINDING_DELETED, f"TargetBinding {key.name} is being deleted")
            if FINALIZER not in record.finalizers:
                return ReconcileResult(key=key, finalized=True)
            if spec is None:
                # Nothing we can clean with an unreadable spec: let the object go.
                self._set_finalizer(record, present=False)
                return ReconcileResult(key=key, finalized=True)
            result = engine.reconciler.reconcile(key)
            if result.finalized:
                for target in result.retained:
                    self.events.warning(ref, "TargetRetained", f"{target} is still in use and was left in place")
                self._set_finalizer(record, present=False)
            return result
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
            self._release_gates(key, reason, message,
                                confirm=lambda: self._decided_on_current(key, record, service_name, service))
            return ReconcileResult(key=key, errors=(message,))
        if FINALIZER not in record.finalizers and not self._set_finalizer(record, present=True):
            return ReconcileResult(key=key, errors=("could not add finalizer",), requeue_after=5.0)
        desired = self._compute_desired(key)
        # Rules first, as LBC does: registered targets are health-checked at once.
        networking_error = self._keep_networking(key, spec, desired)
        with self._lock:
            self._computing[key] = desired  # one worker per key: safe to hand to the reconciler's source
        try:
            result = engine.reconciler.reconcile(key)
        finally:
            with self._lock:
                self._computing.pop(key, None)
        if networking_error:
            result = dataclasses.replace(result, errors=(*result.errors, networking_error))
        timeouts = 0
        if spec is not None and spec.readiness_gate:
            timeouts, wait_until = self._update_gates(key, record, spec, service, desired, result)
            if wait_until is not None and (result.requeue_after is None or wait_until < result.requeue_after):
                result = dataclasses.replace(result, requeue_after=wait_until)
        else:
            released = self._release_gates(key, GATE_DISABLED, f"TargetBinding {key.name} has spec.readinessGate false",
                                           confirm=lambda: self._decided_on_current(key, record, "", None))
            if not released:
                result = dataclasses.replace(result, requeue_after=min(result.requeue_after or 1.0, 1.0))
        self._report(ref, service, result, desired)
        with self._lock:
            self._skipped[key] = len(desired.skipped) if desired else 0
        links = sorted({self._link(t.ref) for t in result.targets})
        status = binding_status(
            generation=record.generation, previous=record.status, result=result,
            skipped=desired.skipped if desired else (), target_links=links, gate_timeouts=timeouts)
        last_detach = self.detach_timings.last(key)
        if last_detach is not None:
            status["lastDetach"] = last_detach
        self._write_status(record, status)
        with self._lock:
            self.last_results[key] = result
        return result

    def _keep_networking(self, key: BindingKey, spec: BindingSpec | None, desired: DesiredBinding | None) -> str:
        """Security-group rules of ``spec.target.awsTargetGroup.networking`` (providers that keep them).

        Returns the error to report ("" when fine): a condition and an Event, like any sync error.
        """
        keep = getattr(self.provider, "reconcile_networking", None)
        if not callable(keep) or spec is None or desired is None:
            return ""
        try:
            keep(binding=key, spec=spec.target, endpoints=desired.endpoints)
        except ProviderError as exc:
            return f"networking: {exc}"
        return ""

    def _link(self, ref: Any) -> str:
        link = getattr(self.provider, "target_link", None)
        return str(link(ref)) if callable(link) else (ref.name if ref.kind == "aws" else str(ref))

    def _report(self, ref: Any, service: Any, result: ReconcileResult, desired: DesiredBinding | None) -> None:
        from negsync.kube.events import ObjectRef

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

    def _gated_pods(self, key: BindingKey) -> list[Any]:
        from negsync.kube.gates import condition_type

        kind = condition_type(key.name)
        return [p for p in self.caches.pods.by_index("binding", (key.namespace, key.name))
                if kind in p.gates and not p.deleting]

    def _decided_on_current(self, key: BindingKey, record: Any, service_name: str, service: Any) -> bool:
        """Whether the binding and Service a decision was made on are what the API holds now.

        Releasing a gate cannot be undone, and the pod watch may run ahead of the Service and
        binding watches (a pod created right after its Service is seen first): a release is
        decided on cached records, then checked against the API's answer.  ``service`` None means
        the decision saw no such Service.  Two GETs, only when a gate is about to be released.
        """
        import json

        from kubernetes.client.exceptions import ApiException

        from negsync.kube.caches import decode_binding, decode_service

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
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, key.namespace, PLURAL, key.name,
                                                     _request_timeout=10, _preload_content=False)
        except ApiException as exc:
            return exc.status == 404
        return False

    def _release_gates(self, key: BindingKey, reason: str, message: str,
                       confirm: Callable[[], bool] | None = None) -> bool:
        """Set the gate True on every pod of ``key`` that still waits: the binding holds no target for it.

        ``confirm`` is asked once, before the first write; False when it said no.
        """
        from negsync.kube.gates import condition_type, needs_write, released, waiting

        kind = condition_type(key.name)
        wall = _wall_now()
        for pod in self._gated_pods(key):
            if reason == "ProviderMismatch":
                # Another negsync (for that provider) may own this binding and its gates: leave them
                # to it, but never past --gate-timeout.
                wanted = waiting(reason=reason, message=message, pod_age=wall - pod.created if pod.created else 0.0,
                                 timeout=self.settings.gate_timeout)
                if not wanted.passed:
                    continue
            else:
                wanted = released(reason, message)
            if not needs_write(pod, kind, wanted):
                continue
            if confirm is not None:
                if not confirm():
                    return False
                confirm = None
            self._write_gate(key, pod, kind, wanted, wall)
        return True

    def _write_gate(self, key: BindingKey, pod: Any, kind: str, wanted: Any, wall: float) -> None:
        from negsync.kube.events import ObjectRef
        from negsync.kube.gates import LOAD_BALANCER_HEALTHY, NO_HEALTH_CHECK, TIMEOUT

        if not self.gates.write(pod, kind, wanted):
            return
        # Gate latency is the load balancer's verdict (or the lack of one); a pod released because
        # it is no target says nothing about it and stays out of the histogram.
        if (wanted.reason in (LOAD_BALANCER_HEALTHY, NO_HEALTH_CHECK, TIMEOUT) and self.telemetry is not None
                and pod.created and self.gates.first_release(pod, kind)):
            self.telemetry.gate_latency.record(max(0.0, wall - pod.created),
                                               {"provider": self.provider.name, "reason": wanted.reason})
        if wanted.reason == TIMEOUT:
            self.events.warning(ObjectRef("v1", "Pod", pod.namespace, pod.name, pod.uid), "GateTimeout", wanted.message)
            self.events.warning(ObjectRef(f"{GROUP}/{VERSION}", "TargetBinding", key.namespace, key.name),
                                "GateTimeout", f"pod {pod.name}: {wanted.message}")

    def _update_gates(self, key: BindingKey, record: Any, spec: BindingSpec, service: Any,
                      desired: DesiredBinding | None, result: ReconcileResult) -> tuple[int, float | None]:
        """Gates of every pod carrying this binding's gate: (targets timed out, seconds to the next time-out)."""
        from negsync.kube.gates import (
            ENDPOINT_SKIPPED,
            NOT_IN_TARGETS,
            TIMEOUT,
            condition_type,
            gate_condition,
            needs_write,
            released,
            waiting,
        )

        if desired is None:
            return 0, None
        kind = condition_type(key.name)
        health = {(m.ip, m.port): h for m, h in result.health.items()}
        wall = _wall_now()
        target = ", ".join(sorted({str(t.ref) for t in result.targets})) or "the load balancer"
        timeouts = 0
        wait_until: float | None = None
        targets: dict[str, list[Any]] = {}
        for endpoint in desired.endpoints:
            if endpoint.pod is not None:
                targets.setdefault(endpoint.pod.name, []).append(endpoint)
        listing: _SliceListing | None = None
        confirmed: bool | None = None
        for pod in self._gated_pods(key):
            age = wall - pod.created if pod.created else 0.0
            # The slice may still name an earlier pod of that name (a re-created pod has a new IP).
            mine = [e for e in targets.get(pod.name, ()) if not pod.ips or e.ip in pod.ips]
            if mine:
                endpoint = mine[0]
                wanted = gate_condition(health=health.get((endpoint.ip, endpoint.port), Health.INITIAL),
                                        pod_age=age, timeout=self.settings.gate_timeout, target=target)
                if wanted.reason == TIMEOUT:
                    timeouts += 1
            else:
                current = pod.condition(kind)
                if current is not None and current[0] == "True":
                    continue  # sticky (see negsync.kube.gates)
                if listing is None:
                    listing = _SliceListing.of(self.caches, key.namespace, spec, service, desired)
                why = listing.why_not(pod, service)
                if why[0] in (ENDPOINT_SKIPPED, NOT_IN_TARGETS):
                    if confirmed is None:
                        confirmed = self._decided_on_current(key, record, spec.service_name, service)
                    if not confirmed:
                        wait_until = 1.0 if wait_until is None else min(wait_until, 1.0)
                        continue
                    wanted = released(*why)
                else:
                    wanted = waiting(reason=why[0], message=why[1], pod_age=age, timeout=self.settings.gate_timeout)
                    if not wanted.passed:
                        left = max(0.0, self.settings.gate_timeout - age)
                        wait_until = left if wait_until is None else min(wait_until, left)
            if needs_write(pod, kind, wanted):
                self._write_gate(key, pod, kind, wanted, wall)
        return timeouts, wait_until

    def _set_finalizer(self, record: Any, *, present: bool) -> bool:
        from kubernetes.client.exceptions import ApiException

        from negsync.kube.caches import FINALIZER

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
                                                       _request_timeout=10,
                                                       _content_type="application/json-patch+json")
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                return False  # changed under us: the next watch event brings a fresh record
            raise
        return True

    def _write_status(self, record: Any, status: Mapping[str, Any]) -> None:
        """Hand the status to the writer: the PATCH leaves the reconcile path (issue 18)."""
        self.status_writer.submit(key=BindingKey(record.namespace, record.name), namespace=record.namespace,
                                  name=record.name, cached_json=record.status_json, status=status)

    def _patch_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, dict(body), _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:  # a deleted binding needs no status
                raise


class _SliceListing:
    """Why a gated pod is not among a binding's targets, from the Service's EndpointSlices."""

    def __init__(self, *, skipped: Mapping[str, str], eligible: set[str], listed: set[str], port: str,
                 family: str) -> None:
        self._skipped = skipped
        self._eligible = eligible  # addresses in a slice of our family carrying our TCP port
        self._listed = listed  # addresses in any slice of the Service
        self._port = port
        self._family = family

    @classmethod
    def of(cls, caches: Any, namespace: str, spec: BindingSpec, service: Any, desired: DesiredBinding) -> _SliceListing:
        port = service.port_named(spec.service_port)
        port_name = port.name if port is not None else ""
        eligible: set[str] = set()
        listed: set[str] = set()
        for record in caches.slices.by_index("service", (namespace, spec.service_name)):
            fits = record.address_type == spec.ip_family and any(
                p[0] == port_name and p[2] == "TCP" for p in record.ports)
            for ep in record.endpoints:
                listed.add(ep.address)
                if fits and not ep.terminating:
                    eligible.add(ep.address)
        return cls(skipped={s.address: s.reason for s in desired.skipped}, eligible=eligible, listed=listed,
                   port=port_name, family=spec.ip_family)

    def why_not(self, pod: Any, service: Any) -> tuple[str, str]:
        from negsync.kube.gates import CONTAINERS_NOT_READY, ENDPOINT_SKIPPED, NOT_IN_TARGETS, WAITING_FOR_ENDPOINT

        for ip in pod.ips:
            if ip in self._skipped:
                return ENDPOINT_SKIPPED, f"endpoint {ip} is not registered: {self._skipped[ip]}"
        if not service.selects(pod.label_map):
            return NOT_IN_TARGETS, f"Service {service.name} does not select this pod"
        if any(ip in self._eligible for ip in pod.ips):
            return CONTAINERS_NOT_READY, "waiting for the pod's containers to be ready before registering it"
        if any(ip in self._listed for ip in pod.ips):
            return NOT_IN_TARGETS, (f"the pod's endpoints {', '.join(pod.ips)} are not in an {self._family} "
                                    f"EndpointSlice with TCP port {self._port!r} of Service {service.name}")
        return WAITING_FOR_ENDPOINT, f"waiting for the pod's endpoint in an EndpointSlice of Service {service.name}"


class DetachTimings(Observer):
    """Per binding: how long its last detach took from the slice change to the call, and the call.

    An observer of the reconciler; the figures land in ``status.lastDetach`` so ``kubectl get -o yaml``
    shows them without a metrics stack (the histograms carry the same figures per provider).
    """

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._changed: dict[BindingKey, float] = {}
        self._issued: dict[Any, tuple[BindingKey, float, float | None]] = {}  # ref -> (key, issued, reaction)
        self._last: dict[BindingKey, dict[str, Any]] = {}

    def changed(self, key: BindingKey) -> None:
        with self._lock:
            self._changed.setdefault(key, self._clock.now())

    def submitted(self, *, key: BindingKey, ref: Any, detach: int, attach: int, at: float) -> None:
        with self._lock:
            changed = self._changed.pop(key, None)
            if detach:
                self._issued[ref] = (key, at, None if changed is None else max(0.0, at - changed))

    def detached(self, *, ref: Any, endpoints: Any, issued_at: float, done_at: float) -> None:
        import datetime as dt

        with self._lock:
            entry = self._issued.pop(ref, None)
            if entry is None or not endpoints:
                return
            key, _, reaction = entry
            record: dict[str, Any] = {"callSeconds": round(max(0.0, done_at - issued_at), 3),
                                      "completedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            if reaction is not None:
                record["changeToCallSeconds"] = round(reaction, 3)
            self._last[key] = record

    def last(self, key: BindingKey) -> dict[str, Any] | None:
        with self._lock:
            value = self._last.get(key)
            return dict(value) if value else None

    def forget(self, key: BindingKey) -> None:
        """The binding is gone: drop what was kept for its status."""
        with self._lock:
            self._changed.pop(key, None)
            self._last.pop(key, None)
            for ref in [r for r, entry in self._issued.items() if entry[0] == key]:
                del self._issued[ref]


def _wall_now() -> float:
    import time

    return time.time()


# -- building the pieces from flags -------------------------------------------------------------
def load_api_client(kubeconfig: str | None) -> Any:
    """In-cluster config first, then $KUBECONFIG, then ~/.kube/config (or --kubeconfig when given)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            try:
                config.load_kube_config(client_configuration=configuration)
            except (config.ConfigException, OSError) as exc:
                raise ConfigError("--kubeconfig", f"no in-cluster config and no usable kubeconfig: {exc}") from None
    return client.ApiClient(configuration)


def cluster_uid(api_client: Any, given: str) -> str:
    if given:
        return given
    from kubernetes import client

    try:
        namespace = client.CoreV1Api(api_client).read_namespace("kube-system", _request_timeout=10)
        return str(namespace.metadata.uid) if namespace.metadata else "unknown"
    except Exception:
        log.warning("kube-system namespace not readable; pass --cluster-uid for stable NEG names")
        return "unknown"


class NodeInstances:
    """Node name → GCE instance name from the node's providerID ``gce://<project>/<zone>/<instance>``.

    Bound to the controller's node cache once the controller exists (the provider is built first).
    """

    def __init__(self) -> None:
        self.caches: Any = None

    def __call__(self, node: str) -> str | None:
        record = self.caches.nodes.get(("", node)) if self.caches is not None else None
        if record is None:
            return None  # not seen yet: skipped now, the node's arrival re-queues every binding
        if not record.provider_id.startswith("gce://"):
            return node  # self-managed VMs without a providerID: the node name is the instance name
        return str(record.provider_id.rstrip("/").rsplit("/", 1)[-1]) or None

    def subnet(self, node: str) -> str | None:
        """The node's subnetwork label; "" = the cluster's default subnetwork, None = node not seen yet."""
        record = self.caches.nodes.get(("", node)) if self.caches is not None else None
        return None if record is None else str(record.subnet)


def build_provider(args: argparse.Namespace, *, api_client: Any, clock: Clock,
                   instances: NodeInstances | None = None) -> TargetProvider:
    if args.provider == "memory":
        from negsync.providers.memory import MemoryProvider

        return MemoryProvider(clock=clock, attach_delay=Fixed(args.memory_attach_delay),
                              health_checking=not args.memory_no_health_check)
    if args.provider == "aws":
        from negsync.providers.aws import AwsProvider
        from negsync.providers.ratelimit import parse_rate_limits

        limits = parse_rate_limits(args.aws_rate_limits, field="--aws-rate-limits") if args.aws_rate_limits else None
        aws = AwsProvider(endpoint_url=args.aws_endpoint_url, max_attempts=args.aws_max_attempts,
                          retry_mode=args.aws_retry_mode, rate_limits=limits, clock=clock)
        log.info("AWS credentials found", extra={"method": aws.check_credentials()})
        return aws
    from negsync.providers.gcp import GcpProvider

    return GcpProvider(cluster_uid=cluster_uid(api_client, args.cluster_uid),
                       compute_endpoint=args.gcp_compute_endpoint,
                       rate_limit=(args.gcp_rate_limit, max(1, int(args.gcp_rate_limit * 2))), clock=clock,
                       anonymous=args.gcp_anonymous, instance_for_node=instances,
                       subnet_for_node=instances.subnet if instances is not None else None)


def start_webhook_from_args(args: argparse.Namespace, *, controller: Controller, api_client: Any, provider: str) -> Any:
    """The readiness-gate injection webhook, unless ``--webhook-addr`` has port 0."""
    if parse_address(args.webhook_addr)[1] == 0:
        return None
    from kubernetes import client

    from negsync.kube.webhook import WebhookCertificateError, start_webhook

    try:
        return start_webhook(caches=controller.caches, address=args.webhook_addr, cert_dir=args.webhook_cert_dir,
                             admission_api=client.AdmissionregistrationV1Api(api_client),
                             # Every replica adds its own CA to the bundle (see negsync.kube.webhook).
                             leader_patch=True, provider=provider,
                             namespace=os.environ.get("POD_NAMESPACE", "negsync-system"))
    except WebhookCertificateError as exc:
        raise ConfigError("--webhook-cert-dir", str(exc)) from None


def configure_logging(level: str) -> None:
    from negsync.logs import configure

    configure(level=level)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    settings = Settings.from_args(args)
    api_client = load_api_client(args.kubeconfig)
    clock = RealClock()
    instances = NodeInstances()
    provider = build_provider(args, api_client=api_client, clock=clock, instances=instances)
    from negsync.serving import Servers
    from negsync.telemetry import Telemetry

    telemetry = Telemetry.setup(metrics_addr=args.metrics_addr, provider=provider.name)
    controller = Controller(api_client=api_client, provider=provider, settings=settings, clock=clock,
                            telemetry=telemetry)
    instances.caches = controller.caches
    drain_wait = controller.drain_wait(margin=args.drain_margin, max_waiters=args.max_drain_waiters,
                                       max_waiters_per_namespace=args.max_drain_waiters_per_namespace)
    telemetry.track_drain_wait(drain_wait)
    servers = Servers(controller=controller, health_addr=args.health_addr, metrics_addr=args.metrics_addr,
                      telemetry=telemetry, extra_routes={"/drain-wait": drain_wait})
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal received, shutting down", extra={"signal": signum})
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    webhook = start_webhook_from_args(args, controller=controller, api_client=api_client, provider=provider.name)
    if webhook is not None:
        telemetry.track_webhook(webhook)
        if webhook.trust is not None:
            servers.readiness_checks.append(webhook.trust)  # /readyz: the API server trusts this replica
    servers.start()
    controller.start()
    log.info("controller started", extra={"provider": provider.name, "namespace": settings.namespace or "*",
                                          "identity": settings.identity})
    while not stopping.wait(1.0):
        telemetry.sample(controller)
    controller.stop()
    servers.stop()
    if webhook is not None:
        webhook.stop()
    telemetry.shutdown()
    log.info("controller stopped")
    return 0


__all__ = ["Controller", "Settings", "add_arguments", "run"]
