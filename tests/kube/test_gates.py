"""Readiness gates on every pod that carries one: none is ever stranded, and the probe keeps its say.

The controller runs against the API emulator and the in-memory provider.  The LB never reports
healthy here (attach delay of an hour) unless a test says otherwise, so a gate that turns True did
so for the reason the test names, not because the endpoint became healthy.

The decision (``gate_condition``, ``released``, ``waiting``, ``needs_write``) and the patch the
writer sends are also tested pure, at the end, with a recording stand-in for the pods/status API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from negsync.core.latency import Fixed
from negsync.core.model import Health, TargetEndpoint, TargetRef
from negsync.kube.caches import PodRecord, decode_pod
from negsync.kube.controller import Controller
from negsync.kube.gates import (
    BINDING_DELETED,
    WAITING_FOR_ENDPOINT,
    GateCondition,
    GateWriter,
    condition_type,
    gate_condition,
    needs_write,
    released,
    waiting,
)
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.kube.test_binding_reconciler import GATE, gate_of, settings
from tests.support.waiting import wait_for

REF = TargetRef("memory", "local", "shop-web")
BINDINGS = "negsync.io/v1alpha1", "TargetBinding"


@pytest.fixture
def never_healthy() -> MemoryProvider:
    return MemoryProvider(attach_delay=Fixed(3600))


def start(api_client: client.ApiClient, provider: MemoryProvider, **overrides: Any) -> Controller:
    ctl = Controller(api_client=api_client, provider=provider, settings=settings(**overrides))
    ctl.start()
    return ctl


@pytest.fixture
def controller(api_client: client.ApiClient, never_healthy: MemoryProvider) -> Iterator[Controller]:
    ctl = start(api_client, never_healthy)
    try:
        yield ctl
    finally:
        ctl.stop(timeout=5)


def gate_reason(kube: KubeApiEmulator, name: str) -> tuple[str, str] | None:
    condition = gate_of(kube, name)
    return None if condition is None else (condition["status"], condition["reason"])


def wait_gate(kube: KubeApiEmulator, name: str, status: str, reason: str, timeout: float = 15.0) -> None:
    try:
        wait_for(lambda: gate_reason(kube, name) == (status, reason), timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{name}: gate {status}/{reason} not reached; it is {gate_reason(kube, name)}") from None


def seed(kube: KubeApiEmulator, **binding_kwargs: Any) -> None:
    """The binding first (the webhook gates only pods of an existing binding), then five gated pods:

    web-0   in the slice, not ready, containers ready  -> a target, waiting for the LB
    stray   not selected by the Service                -> NotInTargets
    lo      in the slice with a loopback address       -> EndpointSkipped
    pending selected, in no slice yet                  -> waits (WaitingForEndpoint)
    sick    in the slice, containers not ready          -> waits (ContainersNotReady), not registered
    """
    kube.create(binding(**binding_kwargs))
    kube.create(service())
    kube.create(pod("web-0", ip="10.1.0.1", gates=[GATE]))
    kube.create(pod("stray", ip="10.1.0.5", gates=[GATE], labels={"app": "other"}))
    kube.create(pod("lo", ip="127.0.0.9", gates=[GATE]))
    kube.create(pod("pending", ip="10.1.0.7", gates=[GATE]))
    kube.create(pod("sick", ip="10.1.0.8", gates=[GATE], containers_ready=False))
    ips = ["10.1.0.1", "127.0.0.9", "10.1.0.8"]
    kube.create(endpoint_slice("web-abc", ips, not_ready=tuple(ips),
                               pods={"10.1.0.1": "web-0", "127.0.0.9": "lo", "10.1.0.8": "sick"}))


def test_every_gated_pod_gets_a_gate_with_a_reason_and_deletion_releases_the_rest(
        kube: KubeApiEmulator, controller: Controller, never_healthy: MemoryProvider) -> None:
    seed(kube)
    wait_gate(kube, "stray", "True", "NotInTargets")
    wait_gate(kube, "lo", "True", "EndpointSkipped")
    wait_gate(kube, "web-0", "False", "RegistrationInProgress")
    wait_gate(kube, "pending", "False", "WaitingForEndpoint")
    wait_gate(kube, "sick", "False", "ContainersNotReady")
    assert never_healthy.members(REF) == {TargetEndpoint("10.1.0.1", 8080)}

    kube.delete(*BINDINGS, "shop", "web")
    for name in ("web-0", "pending", "sick"):
        wait_gate(kube, name, "True", "BindingDeleted")
    wait_for(lambda: kube.get(*BINDINGS, "shop", "web") is None, what="finalizer released")


def test_a_gate_of_a_binding_that_no_longer_exists_is_released_at_start(kube: KubeApiEmulator,
                                                                        controller: Controller) -> None:
    # The binding was deleted while no controller ran: only the pod names it.
    kube.create(pod("orphan", ip="10.1.0.3", gates=["target-health.negsync.io/gone"]))
    wait_for(lambda: (c := (kube.get("v1", "Pod", "shop", "orphan") or {})["status"]["conditions"])
             and any(x["type"] == "target-health.negsync.io/gone" and x["status"] == "True"
                     and x["reason"] == "BindingDeleted" for x in c), what="orphan gate released")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda kube: kube.patch(*BINDINGS, "shop", "web", {"spec": {"readinessGate": False}}), "GateDisabled"),
        # The Service port is renamed: spec.serviceRef.port names a port that no longer exists.
        (lambda kube: kube.patch("v1", "Service", "shop", "web", {"spec": {"ports": [
            {"name": "web", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}), "PortNotFound"),
        (lambda kube: kube.patch(*BINDINGS, "shop", "web", {"spec": {"serviceRef": {"name": "nope"}}}),
         "ServiceNotFound"),
    ],
)
def test_a_binding_that_can_no_longer_hold_the_pod_releases_its_gate(kube: KubeApiEmulator, controller: Controller,
                                                                      change: Any, reason: str) -> None:
    seed(kube)
    wait_gate(kube, "web-0", "False", "RegistrationInProgress")
    change(kube)
    for name in ("web-0", "pending", "sick"):
        wait_gate(kube, name, "True", reason)


def test_an_other_family_binding_releases_pods_listed_only_in_the_other_family(
        kube: KubeApiEmulator, controller: Controller) -> None:
    seed(kube, target={"memory": {"name": "shop-web"}})
    kube.patch(*BINDINGS, "shop", "web", {"spec": {"ipFamily": "IPv6"}})
    wait_gate(kube, "web-0", "True", "NotInTargets")


def test_the_gate_timeout_applies_to_a_pod_that_never_becomes_a_target(kube: KubeApiEmulator,
                                                                      api_client: client.ApiClient,
                                                                      never_healthy: MemoryProvider) -> None:
    ctl = start(api_client, never_healthy, gate_timeout=3.0)
    try:
        seed(kube)
        # (On a slow machine the first reconcile may come after the deadline already.)
        wait_for(lambda: gate_reason(kube, "pending") in {("False", "WaitingForEndpoint"), ("True", "Timeout")},
                 what="pending pod's gate written")
        # No event about the pod arrives after this: the controller re-queues itself for the deadline.
        wait_gate(kube, "pending", "True", "Timeout", timeout=20)
        wait_gate(kube, "sick", "True", "Timeout", timeout=20)
        assert any(e["reason"] == "GateTimeout" and e["involvedObject"]["name"] == "pending"
                   for e in kube.list_objects("v1", "Event", "shop"))
    finally:
        ctl.stop(timeout=5)


def test_a_gated_pod_is_registered_only_while_its_containers_are_ready(kube: KubeApiEmulator,
                                                                        api_client: client.ApiClient) -> None:
    provider = MemoryProvider(attach_delay=Fixed(0.2))
    ctl = start(api_client, provider)
    try:
        kube.create(binding())
        kube.create(service())
        kube.create(pod("web-0", ip="10.1.0.1", gates=[GATE], containers_ready=False))
        kube.create(endpoint_slice("web-abc", ["10.1.0.1"], not_ready=("10.1.0.1",), pods={"10.1.0.1": "web-0"}))
        wait_for(lambda: (kube.get(*BINDINGS, "shop", "web") or {}).get("status"), what="first reconcile done")
        time.sleep(0.5)  # any attach it issued has landed
        assert provider.members(REF) == set()  # the probe fails: the LB must not send it traffic
        wait_gate(kube, "web-0", "False", "ContainersNotReady")
        # The probe passes: registered, healthy, the gate opens.
        kube.patch("v1", "Pod", "shop", "web-0", {"status": {"conditions": [
            {"type": "ContainersReady", "status": "True"}]}}, patch_type="strategic", subresource="status")
        wait_gate(kube, "web-0", "True", "LoadBalancerHealthy")
        kube.update(endpoint_slice("web-abc", ["10.1.0.1"], pods={"10.1.0.1": "web-0"}))  # Ready now
        # The probe fails later: the kubelet flips ContainersReady, the slice marks it not ready.
        kube.patch("v1", "Pod", "shop", "web-0", {"status": {"conditions": [
            {"type": "ContainersReady", "status": "False"}]}}, patch_type="strategic", subresource="status")
        kube.update(endpoint_slice("web-abc", ["10.1.0.1"], not_ready=("10.1.0.1",), pods={"10.1.0.1": "web-0"}))
        wait_for(lambda: provider.members(REF) == set(), what="endpoint left the target")
    finally:
        ctl.stop(timeout=5)


def test_a_gate_keeps_its_transition_time_while_its_status_stays(kube: KubeApiEmulator,
                                                                  api_client: client.ApiClient) -> None:
    then = "2026-01-01T00:00:00Z"
    body = pod("web-0", ip="10.1.0.1", gates=[GATE])
    body["status"]["conditions"].append({"type": GATE, "status": "False", "reason": "RegistrationInProgress",
                                         "message": "waiting", "lastTransitionTime": then})
    record = decode_pod(kube.create(body))
    writer = GateWriter(core_api=client.CoreV1Api(api_client))
    assert writer.write(record, GATE, GateCondition("False", "LoadBalancerUnhealthy", "unhealthy"))
    after = gate_of(kube, "web-0")
    assert after is not None and after["reason"] == "LoadBalancerUnhealthy"
    assert after["lastTransitionTime"] == then  # a new reason is not a transition
    record = decode_pod(kube.get("v1", "Pod", "shop", "web-0") or {})
    assert writer.write(record, GATE, GateCondition("True", "LoadBalancerHealthy", "healthy"))
    opened = gate_of(kube, "web-0")
    assert opened is not None and opened["lastTransitionTime"] != then


def test_a_released_gate_is_counted_once_however_often_it_is_written(kube: KubeApiEmulator,
                                                                      api_client: client.ApiClient) -> None:
    # Seen under load: two reconciles before the pod watch showed the first write wrote the gate twice,
    # and negsync_gate_latency_seconds counted 4 gates for 3 pods.  Writing again is harmless (and
    # needed when someone reverts the condition); counting again is not.
    record = decode_pod(kube.create(pod("web-0", ip="10.1.0.1", gates=[GATE])))
    writer = GateWriter(core_api=client.CoreV1Api(api_client))
    healthy = GateCondition("True", "LoadBalancerHealthy", "healthy")
    assert writer.write(record, GATE, healthy) and writer.first_release(record, GATE)
    assert writer.write(record, GATE, healthy) and not writer.first_release(record, GATE)


# -- the decision, pure (no API, no controller) ---------------------------------------------------

TIMEOUT = 300.0


@pytest.mark.parametrize(
    ("health", "age", "expected"),
    [
        (Health.HEALTHY, 0.0, ("True", "LoadBalancerHealthy")),
        (Health.HEALTHY, 10 * TIMEOUT, ("True", "LoadBalancerHealthy")),  # healthy is the reason, not the time
        (Health.NO_HEALTH_CHECK, 0.0, ("True", "NoHealthCheck")),
        (Health.UNHEALTHY, TIMEOUT - 0.1, ("False", "LoadBalancerUnhealthy")),
        (Health.UNHEALTHY, TIMEOUT, ("True", "Timeout")),  # the deadline itself releases
        (None, 0.0, ("False", "RegistrationInProgress")),
        (Health.INITIAL, 1.0, ("False", "RegistrationInProgress")),
        (Health.DRAINING, 1.0, ("False", "RegistrationInProgress")),
        (None, TIMEOUT + 1, ("True", "Timeout")),
    ],
)
def test_the_gate_follows_the_load_balancer_until_the_timeout(health: Health | None, age: float,
                                                               expected: tuple[str, str]) -> None:
    condition = gate_condition(health=health, pod_age=age, timeout=TIMEOUT, target="NEG k8s-web")
    assert (condition.status, condition.reason) == expected
    assert condition.passed == (expected[0] == "True")
    if expected[1] in ("LoadBalancerHealthy", "NoHealthCheck", "LoadBalancerUnhealthy", "RegistrationInProgress"):
        assert "NEG k8s-web" in condition.message  # the user sees which target is asked


def test_a_pod_that_is_no_target_is_released_with_the_reason_named() -> None:
    condition = released(BINDING_DELETED, "binding shop/web was deleted")
    assert (condition.status, condition.reason) == ("True", "BindingDeleted")
    assert condition.message == "binding shop/web was deleted; gate released"


def test_a_pod_that_may_still_become_a_target_waits_until_the_timeout() -> None:
    early = waiting(reason=WAITING_FOR_ENDPOINT, message="not in an EndpointSlice yet", pod_age=5.0, timeout=TIMEOUT)
    assert (early.status, early.reason, early.message) == ("False", "WaitingForEndpoint", "not in an EndpointSlice yet")
    late = waiting(reason=WAITING_FOR_ENDPOINT, message="not in an EndpointSlice", pod_age=TIMEOUT, timeout=TIMEOUT)
    assert (late.status, late.reason) == ("True", "Timeout")
    assert late.message == "not in an EndpointSlice for 300s; gate released"


def gated(*conditions: dict[str, str]) -> PodRecord:
    raw = pod("web-0", ip="10.1.0.1", gates=[GATE])
    raw["metadata"]["uid"] = "uid-1"
    raw["status"]["conditions"] += list(conditions)
    return decode_pod(raw)


@pytest.mark.parametrize(
    ("current", "wanted", "write"),
    [
        (None, ("False", "RegistrationInProgress"), True),
        (("False", "RegistrationInProgress"), ("False", "RegistrationInProgress"), False),
        (("False", "RegistrationInProgress"), ("False", "LoadBalancerUnhealthy"), True),
        (("False", "RegistrationInProgress"), ("True", "LoadBalancerHealthy"), True),
        (("True", "LoadBalancerHealthy"), ("True", "LoadBalancerHealthy"), False),
        # Sticky: a True gate is never turned back, whatever the LB says later.
        (("True", "LoadBalancerHealthy"), ("False", "LoadBalancerUnhealthy"), False),
        (("True", "Timeout"), ("True", "LoadBalancerHealthy"), False),
    ],
)
def test_a_gate_is_written_only_when_the_pod_lacks_it_and_never_turned_back(
        current: tuple[str, str] | None, wanted: tuple[str, str], write: bool) -> None:
    record = gated(*([{"type": GATE, "status": current[0], "reason": current[1]}] if current else []))
    assert needs_write(record, GATE, GateCondition(wanted[0], wanted[1], "m")) is write


def test_the_condition_type_names_the_binding() -> None:
    assert condition_type("web") == GATE == "target-health.negsync.io/web"


class RecordingCoreApi:
    """Stands in for CoreV1Api.patch_namespaced_pod_status: records the call, or fails with ``status``."""

    def __init__(self, status: int | None = None) -> None:
        self.status = status
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def patch_namespaced_pod_status(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
        if self.status is not None:
            raise ApiException(status=self.status, reason="test")


def test_the_patch_carries_the_uid_and_only_our_condition() -> None:
    api = RecordingCoreApi()
    record = gated({"type": GATE, "status": "False", "reason": "RegistrationInProgress"})
    assert GateWriter(core_api=api, request_timeout=3.0).write(record, GATE, GateCondition("True", "Timeout", "m"))
    [(args, kwargs)] = api.calls
    name, namespace, body = args
    assert (name, namespace) == ("web-0", "shop")
    assert body["metadata"] == {"uid": "uid-1"}  # a pod re-created under the name answers 422
    [entry] = body["status"]["conditions"]  # merged by type: the kubelet's conditions are untouched
    assert {k: entry[k] for k in ("type", "status", "reason", "message")} == {
        "type": GATE, "status": "True", "reason": "Timeout", "message": "m"}
    assert "lastTransitionTime" in entry  # False -> True is a transition
    assert kwargs["_content_type"] == "application/strategic-merge-patch+json"
    assert kwargs["_request_timeout"] == 3.0


def test_a_new_reason_alone_sends_no_transition_time() -> None:
    api = RecordingCoreApi()
    record = gated({"type": GATE, "status": "False", "reason": "RegistrationInProgress"})
    assert GateWriter(core_api=api).write(record, GATE, GateCondition("False", "LoadBalancerUnhealthy", "m"))
    entry = api.calls[0][0][2]["status"]["conditions"][0]
    assert "lastTransitionTime" not in entry  # the server keeps the time it holds
    first = RecordingCoreApi()
    assert GateWriter(core_api=first).write(gated(), GATE, GateCondition("False", "RegistrationInProgress", "m"))
    assert "lastTransitionTime" in first.calls[0][0][2]["status"]["conditions"][0]  # a first write sets it


@pytest.mark.parametrize("status", [404, 409, 422])
def test_a_pod_gone_or_replaced_is_not_written_and_not_an_error(status: int) -> None:
    assert GateWriter(core_api=RecordingCoreApi(status)).write(gated(), GATE, GateCondition("True", "Timeout", "m")) \
        is False


def test_other_api_errors_reach_the_caller() -> None:
    with pytest.raises(ApiException) as info:
        GateWriter(core_api=RecordingCoreApi(503)).write(gated(), GATE, GateCondition("True", "Timeout", "m"))
    assert info.value.status == 503


def test_a_release_is_counted_once_per_pod_and_gate() -> None:
    writer = GateWriter(core_api=RecordingCoreApi())
    record = gated()
    assert writer.first_release(record, GATE)
    assert not writer.first_release(record, GATE)
    assert writer.first_release(record, condition_type("api"))  # another binding's gate on the same pod
    recreated = decode_pod({**pod("web-0", ip="10.1.0.1", gates=[GATE]), "metadata": {
        "name": "web-0", "namespace": "shop", "uid": "uid-2"}})
    assert writer.first_release(recreated, GATE)  # same name, a new pod
