"""Readiness gates: the pod condition ``target-health.negsync.io/<binding>``.

The decision (:func:`gate_condition`) is pure: given what the load balancer says about the
pod's endpoint and how long the pod has existed, it returns the condition the pod should carry.
The write (:class:`GateWriter`) is a strategic-merge patch of ``pods/status`` that touches only
that one condition (the API merges ``status.conditions`` by ``type``) and carries the pod's UID,
so a pod deleted and re-created under the same name is never marked by mistake (the API answers
422 and the write is dropped).  Nothing is written when the cached pod already carries the
condition.

Once True a gate stays True: flipping it back would make the pod un-Ready and pull it out of the
EndpointSlice, which is the load balancer's health check's job, not ours.

No gated pod is ever stranded.  Every reconcile of a binding covers *every* pod that carries
its gate, not only the binding's targets (ingress-gce ``pkg/neg/readiness/reflector.go``,
``getExpectedNegCondition``, marks a pod that belongs to no NEG ready at once).  A gated pod
that is not a target gets its gate set True with a reason naming why (:func:`released`):
``BindingDeleted``, ``GateDisabled``, the binding's problem (``InvalidSpec``, ``PortNotFound``,
…), ``EndpointSkipped`` or ``NotInTargets``.  A pod that may still become a target — selected
by the Service but not yet in a slice, or its containers not ready yet — waits (False), and
``--gate-timeout`` counted from the pod's creation releases it as for any target
(:func:`waiting`; ingress-gce's ``unreadyTimeout`` is counted the same way).

:class:`GateKeeper` applies these decisions to every gated pod of one binding after a reconcile
(why a pod is no target comes from the Service's slices: :class:`SliceListing`); releasing one
that is no target waits for a confirmation that the binding and Service it was decided on are
still what the API holds, as a release cannot be undone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cachetools
from kubernetes.client.exceptions import ApiException

from negsync.core.bindings import BindingSpec
from negsync.core.model import BindingKey, Health
from negsync.core.records import DesiredBinding, ReconcileResult
from negsync.kube.caches import GATE_PREFIX, GROUP, VERSION, Caches, PodRecord, ServiceRecord
from negsync.kube.events import EventRecorder, ObjectRef

log = logging.getLogger("negsync.gates")

REGISTRATION_IN_PROGRESS = "RegistrationInProgress"
LOAD_BALANCER_HEALTHY = "LoadBalancerHealthy"
NO_HEALTH_CHECK = "NoHealthCheck"
TIMEOUT = "Timeout"
UNHEALTHY = "LoadBalancerUnhealthy"
# A gated pod that is not a target: released at once, one reason per cause.
BINDING_DELETED = "BindingDeleted"
GATE_DISABLED = "GateDisabled"
NOT_IN_TARGETS = "NotInTargets"
ENDPOINT_SKIPPED = "EndpointSkipped"
# A gated pod that may still become a target: it waits, until --gate-timeout.
WAITING_FOR_ENDPOINT = "WaitingForEndpoint"
CONTAINERS_NOT_READY = "ContainersNotReady"


def condition_type(binding_name: str) -> str:
    return f"{GATE_PREFIX}{binding_name}"


@dataclass(frozen=True, slots=True)
class GateCondition:
    status: str  # "True" | "False"
    reason: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "True"


def gate_condition(*, health: Health | None, pod_age: float, timeout: float, target: str) -> GateCondition:
    """The condition a gated pod should carry now."""
    if health is Health.HEALTHY:
        return GateCondition("True", LOAD_BALANCER_HEALTHY, f"{target} reports the endpoint healthy")
    if health is Health.NO_HEALTH_CHECK:
        return GateCondition(
            "True",
            NO_HEALTH_CHECK,
            f"{target} has no health check: traffic may reach the pod before it can serve (a known source of 502s)",
        )
    if pod_age >= timeout:
        return GateCondition(
            "True", TIMEOUT, f"load balancer did not report the endpoint healthy within {timeout:.0f}s; gate released"
        )
    if health is Health.UNHEALTHY:
        return GateCondition("False", UNHEALTHY, f"{target} reports the endpoint unhealthy")
    return GateCondition("False", REGISTRATION_IN_PROGRESS, f"waiting for {target} to report the endpoint healthy")


def released(reason: str, message: str) -> GateCondition:
    """The gate of a pod that is not (and will not become) a target: nothing to wait for."""
    return GateCondition("True", reason, f"{message}; gate released")


def waiting(*, reason: str, message: str, pod_age: float, timeout: float) -> GateCondition:
    """The gate of a pod that may still become a target; released by ``timeout`` from creation."""
    if pod_age >= timeout:
        return GateCondition("True", TIMEOUT, f"{message} for {timeout:.0f}s; gate released")
    return GateCondition("False", reason, message)


def needs_write(pod: PodRecord, kind: str, wanted: GateCondition) -> bool:
    current = pod.condition(kind)
    if current is None:
        return True
    if current[0] == "True":
        return False  # sticky: see the module docstring
    return current != (wanted.status, wanted.reason)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GateWriter:
    """Patches one readiness-gate condition on ``pods/status``, guarded by UID."""

    def __init__(self, *, core_api: Any, request_timeout: float = 10.0) -> None:
        self._core = core_api
        self._timeout = request_timeout
        # (pod uid, gate) of gates already counted as released: the pod cache lags our own write by
        # a watch event, and a reconcile in between writes the condition again — harmless for the
        # pod, but the gate-latency histogram must count each pod once.  Bounded by age and size.
        self._counted: cachetools.TTLCache[tuple[str, str], bool] = cachetools.TTLCache(maxsize=100_000, ttl=600.0)
        self._lock = threading.Lock()

    def first_release(self, pod: PodRecord, kind: str) -> bool:
        """True the first time this pod's gate is reported released (for the latency histogram)."""
        with self._lock:
            if (pod.uid, kind) in self._counted:
                return False
            self._counted[(pod.uid, kind)] = True
            return True

    def write(self, pod: PodRecord, kind: str, condition: GateCondition) -> bool:
        """True when written; False when the pod is gone or was replaced."""
        entry: dict[str, Any] = {
            "type": kind,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastProbeTime": None,
        }
        current = pod.condition(kind)
        if current is None or current[0] != condition.status:
            # Only a change of status is a transition; a new reason or message alone keeps the
            # time the server holds (the strategic merge by ``type`` leaves an omitted field).
            entry["lastTransitionTime"] = _now()
        body = {"metadata": {"uid": pod.uid}, "status": {"conditions": [entry]}}
        try:
            self._core.patch_namespaced_pod_status(
                pod.name, pod.namespace, body, _request_timeout=self._timeout,
                _content_type="application/strategic-merge-patch+json",
                # The response is not needed, and decoding it into the client's model can fail on
                # pods the model does not fully describe: the write itself succeeded.
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                # 422: the UID in the patch differs — the pod was deleted and re-created.
                log.info("gate not written: pod gone or replaced", extra={"pod": f"{pod.namespace}/{pod.name}"})
                return False
            raise
        return True


class GateKeeper:
    """The gates of one binding's pods: decided from a reconcile's outcome, written by :class:`GateWriter`.

    A pod that is a target waits for the load balancer's verdict (:func:`gate_condition`); a
    gated pod that is no target is released at once (:func:`released`) once ``confirm`` agrees
    the decision was made on what the API holds now, or waits (:func:`waiting`) while it may
    still become one.  Released gates of a timed-out pod are reported as Events.
    """

    def __init__(self, *, caches: Caches, writer: GateWriter, events: EventRecorder, gate_timeout: float,
                 provider_name: str, telemetry: Any = None, wall: Callable[[], float] = time.time) -> None:
        self._caches = caches
        self.writer = writer
        self._events = events
        self._timeout = gate_timeout
        self._provider = provider_name
        self._telemetry = telemetry
        self._wall = wall  # pod ages are counted from creationTimestamp, a wall-clock time

    def gated_pods(self, key: BindingKey) -> list[PodRecord]:
        kind = condition_type(key.name)
        return [p for p in self._caches.pods.by_index("binding", (key.namespace, key.name))
                if kind in p.gates and not p.deleting]

    def release(self, key: BindingKey, reason: str, message: str, confirm: Callable[[], bool] | None = None) -> bool:
        """Set the gate True on every pod of ``key`` that still waits: the binding holds no target for it.

        ``confirm`` is asked once, before the first write; False when it said no.
        """
        kind = condition_type(key.name)
        wall = self._wall()
        for pod in self.gated_pods(key):
            if reason == "ProviderMismatch":
                # Another negsync (for that provider) may own this binding and its gates: leave them
                # to it, but never past --gate-timeout.
                wanted = waiting(reason=reason, message=message, pod_age=wall - pod.created if pod.created else 0.0,
                                 timeout=self._timeout)
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
            self._write(key, pod, kind, wanted, wall)
        return True

    def update(self, key: BindingKey, spec: BindingSpec, service: ServiceRecord | None,
               desired: DesiredBinding | None, result: ReconcileResult,
               confirm: Callable[[], bool]) -> tuple[int, float | None]:
        """Gates of every pod carrying this binding's gate: (targets timed out, seconds to the next time-out).

        ``confirm`` (asked at most once) says whether the binding and Service the decision saw are
        still what the API holds; a pod is released as "no target" only when it says yes.
        """
        if desired is None:
            return 0, None
        kind = condition_type(key.name)
        health = {(m.ip, m.port): h for m, h in result.health.items()}
        wall = self._wall()
        target = ", ".join(sorted({str(t.ref) for t in result.targets})) or "the load balancer"
        timeouts = 0
        wait_until: float | None = None
        targets: dict[str, list[Any]] = {}
        for endpoint in desired.endpoints:
            if endpoint.pod is not None:
                targets.setdefault(endpoint.pod.name, []).append(endpoint)
        listing: SliceListing | None = None
        confirmed: bool | None = None
        for pod in self.gated_pods(key):
            age = wall - pod.created if pod.created else 0.0
            # The slice may still name an earlier pod of that name (a re-created pod has a new IP).
            mine = [e for e in targets.get(pod.name, ()) if not pod.ips or e.ip in pod.ips]
            if mine:
                endpoint = mine[0]
                wanted = gate_condition(health=health.get((endpoint.ip, endpoint.port), Health.INITIAL),
                                        pod_age=age, timeout=self._timeout, target=target)
                if wanted.reason == TIMEOUT:
                    timeouts += 1
            else:
                current = pod.condition(kind)
                if current is not None and current[0] == "True":
                    continue  # sticky (see the module docstring)
                if listing is None:
                    listing = SliceListing.of(self._caches, key.namespace, spec, service, desired)
                why = listing.why_not(pod, service)
                if why[0] in (ENDPOINT_SKIPPED, NOT_IN_TARGETS):
                    if confirmed is None:
                        confirmed = confirm()
                    if not confirmed:
                        wait_until = 1.0 if wait_until is None else min(wait_until, 1.0)
                        continue
                    wanted = released(*why)
                else:
                    wanted = waiting(reason=why[0], message=why[1], pod_age=age, timeout=self._timeout)
                    if not wanted.passed:
                        left = max(0.0, self._timeout - age)
                        wait_until = left if wait_until is None else min(wait_until, left)
            if needs_write(pod, kind, wanted):
                self._write(key, pod, kind, wanted, wall)
        return timeouts, wait_until

    def _write(self, key: BindingKey, pod: PodRecord, kind: str, wanted: GateCondition, wall: float) -> None:
        if not self.writer.write(pod, kind, wanted):
            return
        # Gate latency is the load balancer's verdict (or the lack of one); a pod released because
        # it is no target says nothing about it and stays out of the histogram.
        if (wanted.reason in (LOAD_BALANCER_HEALTHY, NO_HEALTH_CHECK, TIMEOUT) and self._telemetry is not None
                and pod.created and self.writer.first_release(pod, kind)):
            self._telemetry.gate_latency.record(max(0.0, wall - pod.created),
                                                {"provider": self._provider, "reason": wanted.reason})
        if wanted.reason == TIMEOUT:
            self._events.warning(ObjectRef("v1", "Pod", pod.namespace, pod.name, pod.uid), "GateTimeout", wanted.message)
            self._events.warning(ObjectRef(f"{GROUP}/{VERSION}", "TargetBinding", key.namespace, key.name),
                                 "GateTimeout", f"pod {pod.name}: {wanted.message}")


class SliceListing:
    """Why a gated pod is not among a binding's targets, from the Service's EndpointSlices."""

    def __init__(self, *, skipped: Mapping[str, str], eligible: set[str], listed: set[str], port: str,
                 family: str) -> None:
        self._skipped = skipped
        self._eligible = eligible  # addresses in a slice of our family carrying our TCP port
        self._listed = listed  # addresses in any slice of the Service
        self._port = port
        self._family = family

    @classmethod
    def of(cls, caches: Caches, namespace: str, spec: BindingSpec, service: Any,
           desired: DesiredBinding) -> SliceListing:
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

    def why_not(self, pod: PodRecord, service: Any) -> tuple[str, str]:
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
