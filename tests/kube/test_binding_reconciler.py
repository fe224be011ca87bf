"""The Kubernetes half of a reconcile (finalizer, gates, status, Events), through a running controller.

Against the API emulator and the in-memory provider: what a user sees on the binding, its pods
and its Events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from negsync.app import Settings
from negsync.core.latency import Fixed
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.kube.caches import FINALIZER
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.support.waiting import wait_for

GATE = "target-health.negsync.io/web"
REF = TargetRef("memory", "local", "shop-web")
KEY = BindingKey("shop", "web")


def settings(**overrides: Any) -> Settings:
    base = dict(workers=2, sync_min_interval=0.0, health_poll_interval=0.1, resync_period=30.0, identity="test-1",
                watch_timeout=5, lease_namespace="negsync-system")
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider(attach_delay=Fixed(0.6))


@pytest.fixture
def controller(api_client: client.ApiClient, provider: MemoryProvider) -> Iterator[Controller]:
    ctl = Controller(api_client=api_client, provider=provider, settings=settings())
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop(timeout=5)


def gate_of(kube: KubeApiEmulator, name: str) -> dict[str, Any] | None:
    obj = kube.get("v1", "Pod", "shop", name) or {}
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == GATE:
            return condition
    return None


def seed_service(kube: KubeApiEmulator, ips: list[str], **slice_kwargs: Any) -> None:
    kube.create(service())
    for i, ip in enumerate(ips):
        kube.create(pod(f"web-{i}", ip=ip, gates=[GATE]))
    pods = {ip: f"web-{i}" for i, ip in enumerate(ips)}
    kube.create(endpoint_slice("web-abc", ips, pods=pods, **slice_kwargs))


def members(*ips: str) -> set[TargetEndpoint]:
    return {TargetEndpoint(ip, 8080) for ip in ips}


def test_syncs_a_service_and_gates_turn_true_only_when_healthy(kube: KubeApiEmulator, controller: Controller,
                                                               provider: MemoryProvider) -> None:
    ips = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    # Pods carrying the gate are not Ready yet: they must still be registered.
    kube.create(binding())  # first: the webhook gates only pods of an existing binding
    seed_service(kube, ips, not_ready=tuple(ips))
    wait_for(lambda: provider.members(REF) == members(*ips), what="members attached")
    attached_at = time.monotonic()
    first = wait_for(lambda: gate_of(kube, "web-0"), what="gate condition")
    if first["status"] == "False":
        assert first["reason"] == "RegistrationInProgress"
    condition = wait_for(lambda: (c := gate_of(kube, "web-0")) and c["status"] == "True" and c, what="gate True")
    assert condition["reason"] == "LoadBalancerHealthy"
    assert time.monotonic() - attached_at >= 0.3  # not before the provider reported healthy
    stored = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
    assert stored is not None and FINALIZER in stored["metadata"]["finalizers"]
    status = wait_for(lambda: (kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}).get("status", {})
                      .get("endpoints", {}).get("healthy") == 3 and kube.get("negsync.io/v1alpha1", "TargetBinding",
                                                                                  "shop", "web")["status"])
    ready = {c["type"]: c for c in status["conditions"]}
    assert ready["Ready"]["status"] == "True" and ready["Synced"]["status"] == "True"
    assert ready["Degraded"]["status"] == "False"
    # The status describes the binding's current spec (its generation, whatever bumped it).
    current = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
    assert current is not None
    assert status["endpoints"]["desired"] == 3 and status["observedGeneration"] == current["metadata"]["generation"]


def test_terminating_endpoints_are_detached(kube: KubeApiEmulator, controller: Controller, provider: MemoryProvider) -> None:
    ips = ["10.1.0.1", "10.1.0.2"]
    seed_service(kube, ips)
    kube.create(binding(gate=False))
    wait_for(lambda: provider.members(REF) == members(*ips))
    kube.update({**endpoint_slice("web-abc", ips, terminating=("10.1.0.2",)),
                 "metadata": {**endpoint_slice("web-abc", ips)["metadata"]}})
    wait_for(lambda: provider.members(REF) == members("10.1.0.1"), what="terminating endpoint detached")
    # Per binding: slice change -> detach call issued, and the call itself, on the status.
    last = wait_for(lambda: ((kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {})
                             .get("status") or {}).get("lastDetach"), what="status.lastDetach")
    assert 0 <= last["changeToCallSeconds"] < 5 and last["callSeconds"] >= 0 and last["completedAt"]


def test_deleting_the_binding_cleans_up_and_releases_the_finalizer(kube: KubeApiEmulator, controller: Controller,
                                                                    provider: MemoryProvider) -> None:
    seed_service(kube, ["10.1.0.1"])
    kube.create(binding(gate=False))
    wait_for(lambda: provider.members(REF) == members("10.1.0.1"))
    wait_for(lambda: FINALIZER in ((kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {})
                                   .get("metadata", {}).get("finalizers") or []))
    kube.delete("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
    wait_for(lambda: kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") is None, what="binding gone")
    assert REF not in provider.targets()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: binding(target={}), "InvalidSpec"),
        (lambda: binding(target={"memory": {"name": "a"}, "gcpNeg": {"project": "my-project", "network": "n"}}),
         "InvalidSpec"),
        (lambda: binding(port="grpc"), "PortNotFound"),
        (lambda: binding(svc="missing"), "ServiceNotFound"),
        (lambda: binding(svc="no-selector"), "ServiceWithoutSelector"),
        (lambda: binding(target={"gcpNeg": {"project": "my-project", "network": "n"}}), "ProviderMismatch"),
    ],
)
def test_bad_bindings_get_a_condition_and_an_event_and_others_keep_syncing(
    kube: KubeApiEmulator, controller: Controller, provider: MemoryProvider, make: Callable[[], dict[str, Any]],
    reason: str,
) -> None:
    seed_service(kube, ["10.1.0.1"])
    kube.create(service("no-selector", selector={}))
    bad = make()
    bad["metadata"]["name"] = "bad"
    kube.create(bad)
    kube.create(binding(gate=False))
    wait_for(lambda: provider.members(REF) == members("10.1.0.1"), what="good binding synced")

    def conditions() -> dict[str, Any]:
        obj = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "bad") or {}
        return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}

    # Level-based: whatever order the caches fill in, the condition converges on the real problem.
    found = wait_for(lambda: (c := conditions().get("Ready")) and c["reason"] == reason and c,
                     what=f"Ready condition {reason} on the bad binding")
    assert found["status"] == "False"
    assert conditions()["Degraded"]["status"] == "True"
    events = kube.list_objects("v1", "Event", "shop")
    assert any(e["reason"] == reason and e["involvedObject"]["name"] == "bad" for e in events)
    assert controller.engine is not None  # still running


def test_gate_times_out_when_the_lb_never_reports_healthy(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    provider = MemoryProvider(attach_delay=Fixed(3600))
    # Long enough that a loaded machine still sees the False state first (creationTimestamp has
    # whole seconds, so up to one second of it is gone at creation).
    ctl = Controller(api_client=api_client, provider=provider, settings=settings(gate_timeout=6.0))
    ctl.start()
    try:
        kube.create(binding())  # first: the webhook gates only pods of an existing binding
        seed_service(kube, ["10.1.0.1"], not_ready=("10.1.0.1",))
        first = wait_for(lambda: gate_of(kube, "web-0"), what="gate condition")
        assert first["status"] == "False"
        done = wait_for(lambda: (c := gate_of(kube, "web-0")) and c["status"] == "True" and c, what="gate timeout")
        assert done["reason"] == "Timeout"
        wait_for(lambda: any(e["reason"] == "GateTimeout" for e in kube.list_objects("v1", "Event", "shop")),
                 what="GateTimeout Event")
    finally:
        ctl.stop(timeout=5)


def test_no_health_check_releases_the_gate_with_a_reason(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    provider = MemoryProvider(health_checking=False)
    ctl = Controller(api_client=api_client, provider=provider, settings=settings())
    ctl.start()
    try:
        kube.create(binding())  # first: the webhook gates only pods of an existing binding
        seed_service(kube, ["10.1.0.1"], not_ready=("10.1.0.1",))
        done = wait_for(lambda: (c := gate_of(kube, "web-0")) and c["status"] == "True" and c, what="gate")
        assert done["reason"] == "NoHealthCheck"
    finally:
        ctl.stop(timeout=5)


def test_gate_patch_is_guarded_by_uid_and_skipped_when_unchanged(kube: KubeApiEmulator, controller: Controller,
                                                                 provider: MemoryProvider) -> None:
    kube.create(binding())  # first: the webhook gates only pods of an existing binding
    seed_service(kube, ["10.1.0.1"], not_ready=("10.1.0.1",))
    wait_for(lambda: (c := gate_of(kube, "web-0")) and c["status"] == "True")
    patches = [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/pods/web-0/status")]
    pod_uid = (kube.get("v1", "Pod", "shop", "web-0") or {})["metadata"]["uid"]
    assert patches and all(r.body["metadata"]["uid"] == pod_uid for r in patches)
    count = len(patches)
    engine = controller.engine
    assert engine is not None
    for _ in range(5):
        engine.enqueue(KEY)
    time.sleep(0.5)
    again = [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/pods/web-0/status")]
    assert len(again) == count  # nothing changed, nothing written


def test_a_replaced_pod_is_never_marked_by_a_stale_gate_write(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    from negsync.kube.caches import decode_pod
    from negsync.kube.gates import GateCondition, GateWriter

    created = kube.create(pod("web-0", ip="10.1.0.1", gates=[GATE]))
    stale = decode_pod(created)
    kube.delete("v1", "Pod", "shop", "web-0")
    kube.create(pod("web-0", ip="10.1.0.9", gates=[GATE]))
    writer = GateWriter(core_api=client.CoreV1Api(api_client))
    assert writer.write(stale, GATE, GateCondition("True", "LoadBalancerHealthy", "x")) is False
    assert gate_of(kube, "web-0") is None


def test_a_gated_binding_whose_name_cannot_name_a_gate_says_so(kube: KubeApiEmulator, controller: Controller,
                                                               provider: MemoryProvider) -> None:
    # The CRD's CEL rule rejects this on a real API server (>= 1.25); the emulator stores it as-is,
    # as a cluster without CEL validation would.
    name = "w" * 64
    seed_service(kube, ["10.1.0.1"])
    long = binding()
    long["metadata"]["name"] = name
    kube.create(long)

    def ready() -> dict[str, Any] | None:
        obj = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", name) or {}
        return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)

    found = wait_for(lambda: (c := ready()) and c["reason"] == "NameTooLong" and c, what="NameTooLong condition")
    assert found["status"] == "False" and "63" in found["message"]
    assert any(e["reason"] == "NameTooLong" for e in kube.list_objects("v1", "Event", "shop"))
    assert provider.targets() == []  # not synced half-way without its gates


# Issue 18's soak: ``last_results``, the skipped-endpoint counts and ``DetachTimings`` kept an entry for
# every binding ever seen; where bindings come and go (preview environments) that grew for the life
# of the process.
def test_a_deleted_binding_leaves_no_per_binding_state(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(service())
    kube.create(endpoint_slice("web-abc", ["10.0.0.1", "10.0.0.2"]))
    kube.create(binding(gate=False))
    provider = MemoryProvider(health_checking=False)
    controller = Controller(api_client=api_client, provider=provider,
                            settings=Settings(workers=2, sync_min_interval=0.0, identity="t", watch_timeout=5))
    controller.start()
    try:
        wait_for(lambda: provider.members(REF) == {TargetEndpoint("10.0.0.1", 8080), TargetEndpoint("10.0.0.2", 8080)},
                 what="both endpoints attached")
        kube.update(endpoint_slice("web-abc", ["10.0.0.1"]))  # a detach, so DetachTimings keeps a record
        wait_for(lambda: controller.detach_timings.last(KEY) is not None, what="the detach recorded")
        wait_for(lambda: KEY in controller.last_results, what="a result kept")
        kube.delete("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
        wait_for(lambda: kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") is None,
                 what="the finalizer released")
        wait_for(lambda: KEY not in controller.last_results, what="the result dropped")
        assert KEY not in controller.binding_reconciler.skipped
        assert controller.detach_timings.last(KEY) is None
        assert provider.members(REF) == set()
    finally:
        controller.stop(timeout=10)
