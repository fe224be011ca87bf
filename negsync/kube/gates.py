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
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cachetools

from negsync.core.model import Health
from negsync.kube.caches import GATE_PREFIX, PodRecord

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
        from kubernetes.client.exceptions import ApiException


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
