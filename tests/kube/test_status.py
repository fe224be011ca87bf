"""A TargetBinding's status: conditions and counts from a reconcile, settling so a quiet binding writes nothing.

A used-up resource quota (issue 13, item 2) surfaces as Degraded/QuotaExceeded and an Event: waiting
alone does not clear it (e.g. the NEG count), so unlike a throttle it is shown to the user; the
reconciler keeps retrying slowly and the condition clears once a call succeeds.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from negsync.core.endpoints import Skipped
from negsync.core.latency import Fixed
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.core.records import ReconcileResult, TargetStatus
from negsync.errors import QuotaExceeded
from negsync.kube.controller import Controller
from negsync.kube.status import Problem, binding_status, replacing_patch, status_changed
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator, merge_patch
from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.kube.test_binding_reconciler import seed_service, settings
from tests.support.waiting import wait_for

BINDINGS = "negsync.io/v1alpha1", "TargetBinding"


def status_of(kube: KubeApiEmulator) -> dict:
    return (kube.get(*BINDINGS, "shop", "web") or {}).get("status") or {}


def status_writes(kube: KubeApiEmulator) -> int:
    return sum(1 for r in kube.requests if r.method in ("PATCH", "PUT") and r.path.endswith("/targetbindings/web/status"))


def test_a_fixed_degraded_endpoint_leaves_no_trace_and_a_quiet_binding_writes_nothing(
        kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    provider = MemoryProvider(attach_delay=Fixed(0.0))  # healthy at once: health never changes later
    ctl = Controller(api_client=api_client, provider=provider, settings=settings())
    ctl.start()
    try:
        kube.create(service())
        kube.create(pod("web-0", ip="10.1.0.1"))
        # A loopback address is skipped with a reason: the binding is Degraded and lists it.
        kube.create(endpoint_slice("web-abc", ["10.1.0.1", "127.0.0.9"]))
        kube.create(binding(gate=False))
        wait_for(lambda: status_of(kube).get("degradedEndpoints"), what="degradedEndpoints listed")
        kube.update(endpoint_slice("web-abc", ["10.1.0.1"]))  # fixed
        wait_for(lambda: {c["type"]: c["status"] for c in status_of(kube)["conditions"]}.get("Degraded") == "False"
                 and status_of(kube)["endpoints"]["registered"] == 1, what="Degraded=False")
        time.sleep(0.3)  # let the reconcile that wrote it finish
        before = status_writes(kube)
        engine = ctl.engine
        assert engine is not None
        for _ in range(10):  # a quiet period: reconciles (resyncs, unrelated events) but no change
            engine.enqueue(BindingKey("shop", "web"))
            time.sleep(0.1)
        assert status_writes(kube) - before == 0
        assert "degradedEndpoints" not in status_of(kube)  # cleared, not left behind by a merge patch
    finally:
        ctl.stop(timeout=5)


def test_the_replacing_patch_turns_the_stored_status_into_exactly_the_new_one() -> None:
    stored = {"degradedEndpoints": [{"address": "a", "reason": "r"}], "lastDetach": {"callSeconds": 1.0,
              "changeToCallSeconds": 0.5}, "endpoints": {"desired": 2}}
    new = {"lastDetach": {"callSeconds": 0.2}, "endpoints": {"desired": 1}}
    assert merge_patch(stored, replacing_patch(stored, new)) == new


def test_quota_exceeded_sets_degraded_and_an_event(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    provider = MemoryProvider()
    provider.fail_next("list", QuotaExceeded("Quota 'NETWORK_ENDPOINT_GROUPS' exceeded.  Limit: 100.0 globally.",
                                             retry_after=600.0), count=1000)
    ctl = Controller(api_client=api_client, provider=provider, settings=settings())
    ctl.start()
    try:
        seed_service(kube, ["10.1.0.1"])
        kube.create(binding(gate=False))

        def degraded() -> dict[str, Any] | None:
            obj = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}
            return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Degraded"), None)

        def quota_condition() -> dict[str, Any] | None:
            condition = degraded()
            return condition if condition and condition["reason"] == "QuotaExceeded" else None

        condition = wait_for(quota_condition, what="Degraded/QuotaExceeded")
        assert condition["status"] == "True" and "NETWORK_ENDPOINT_GROUPS" in condition["message"]
        wait_for(lambda: any(e["reason"] == "QuotaExceeded" for e in kube.list_objects("v1", "Event", "shop")),
                 what="QuotaExceeded Event")
    finally:
        ctl.stop(timeout=5)


# -- the status object, pure ----------------------------------------------------------------------

KEY = BindingKey("shop", "web")
TARGET = TargetRef("memory", "local", "shop-web")
EARLIER = "2026-01-01T00:00:00Z"


def result(*, desired: int = 2, registered: int = 2, healthy: int = 2, pending: int = 0, **kwargs: Any) -> ReconcileResult:
    target = TargetStatus(TARGET, desired=desired, registered=registered, healthy=healthy, draining=0, pending=pending)
    return ReconcileResult(KEY, targets=(target,), **kwargs)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("outcome", "ready", "synced", "degraded"),
    [
        (result(), ("True", "Synced"), ("True", "InSync"), ("False", "AsExpected")),
        (result(registered=1, healthy=1), ("False", "Registering"), ("True", "InSync"), ("False", "AsExpected")),
        (result(registered=1, pending=1), ("False", "Registering"), ("False", "InProgress"), ("False", "AsExpected")),
        (result(errors=("NEG k8s-web: HTTP 500",)), ("False", "SyncFailed"), ("False", "SyncFailed"),
         ("False", "AsExpected")),
        (result(conflicts=("10.1.0.1:8080 owned by another binding",), errors=("x",)),
         ("False", "OwnershipConflict"), ("False", "OwnershipConflict"), ("False", "AsExpected")),
        (result(quota_exceeded=("Quota 'NETWORK_ENDPOINT_GROUPS' exceeded",)), ("True", "Synced"), ("True", "InSync"),
         ("True", "QuotaExceeded")),
        (result(rejected={TargetEndpoint("10.1.0.9", 8080): "InvalidTarget"}), ("True", "Synced"),
         ("True", "InSync"), ("True", "EndpointsSkipped")),
    ],
    ids=["synced", "registering", "in-progress", "failed", "conflict", "quota", "rejected"],
)
def test_conditions_follow_the_reconcile_outcome(outcome: ReconcileResult, ready: tuple[str, str],
                                                  synced: tuple[str, str], degraded: tuple[str, str]) -> None:
    status = binding_status(generation=4, previous={}, result=outcome, target_links=["memory://shop-web"])
    assert conditions(status) == {"Ready": ready, "Synced": synced, "Degraded": degraded}
    assert status["observedGeneration"] == 4
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])
    assert status["endpoints"] == {"desired": outcome.count("desired"), "registered": outcome.count("registered"),
                                   "healthy": outcome.count("healthy"), "draining": 0}
    assert status["targets"] == ["memory://shop-web"]


def test_a_problem_before_the_reconcile_marks_the_binding_not_ready_and_degraded() -> None:
    status = binding_status(generation=2, previous={}, problem=Problem("ServiceNotFound", "service shop/nope not found"))
    assert conditions(status) == {"Ready": ("False", "ServiceNotFound"), "Synced": ("False", "ServiceNotFound"),
                                  "Degraded": ("True", "ServiceNotFound")}
    assert all(c["message"] == "service shop/nope not found" for c in status["conditions"])
    assert status["endpoints"] == {"desired": 0, "registered": 0, "healthy": 0, "draining": 0}


def test_skipped_and_rejected_endpoints_are_listed_and_bounded() -> None:
    skipped = [Skipped(f"127.0.0.{i}", "loopback address") for i in range(1, 16)]
    rejected = {TargetEndpoint(f"10.1.0.{i}", 8080): "InvalidTarget" for i in range(1, 11)}
    status = binding_status(generation=1, previous={}, result=result(rejected=rejected), skipped=skipped)
    assert len(status["degradedEndpoints"]) == 20  # MAX_LISTED of 25
    assert status["degradedEndpoints"][0] == {"address": "127.0.0.1", "reason": "loopback address"}
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["message"].startswith("25 endpoint(s) not registered: 127.0.0.1 (loopback address)")
    assert degraded["message"].endswith("and 20 more")


def test_gate_timeouts_degrade_a_binding_that_is_otherwise_fine() -> None:
    status = binding_status(generation=1, previous={}, result=result(), gate_timeouts=2)
    assert conditions(status)["Degraded"] == ("True", "GateTimeout")
    assert "degradedEndpoints" not in status


def test_a_long_message_is_cut_to_what_a_condition_holds() -> None:
    status = binding_status(generation=1, previous={}, result=result(errors=("x" * 5000,)))
    assert all(len(c["message"]) <= 1024 for c in status["conditions"])


def test_a_transition_time_is_kept_while_the_status_stays_and_renewed_when_it_flips() -> None:
    previous = binding_status(generation=1, previous={}, result=result(registered=1, healthy=1))
    for condition in previous["conditions"]:
        condition["lastTransitionTime"] = EARLIER
    # Registering -> Synced: Ready flips; Synced and Degraded keep their status (and time) though
    # Ready's reason and every message may change.
    now = binding_status(generation=2, previous=previous, result=result())
    times = {c["type"]: c["lastTransitionTime"] for c in now["conditions"]}
    assert times["Synced"] == EARLIER and times["Degraded"] == EARLIER
    assert times["Ready"] != EARLIER
    # Same status, new reason: not a transition.
    failed = binding_status(generation=2, previous=previous, result=result(registered=1, errors=("boom",)))
    ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("False", "SyncFailed", EARLIER)


def test_only_a_change_a_user_could_see_counts_as_a_change() -> None:
    before = binding_status(generation=1, previous={}, result=result())
    same = binding_status(generation=1, previous=before, result=result())
    assert not status_changed(before, same)
    retimed = {**same, "conditions": [{**c, "lastTransitionTime": EARLIER} for c in same["conditions"]]}
    assert not status_changed(before, retimed)  # a transition time alone is no news
    reordered = {**same, "conditions": list(reversed(same["conditions"]))}
    assert not status_changed(before, reordered)
    assert status_changed(before, binding_status(generation=2, previous=before, result=result()))
    assert status_changed(before, binding_status(generation=1, previous=before, result=result(healthy=1)))
    assert status_changed({}, before)


def test_the_replacing_patch_nulls_every_dropped_key_at_every_depth() -> None:
    stored = {"observedGeneration": 1, "degradedEndpoints": [{"address": "a", "reason": "r"}],
              "lastDetach": {"callSeconds": 1.0, "changeToCallSeconds": 0.5}, "targets": ["x", "y"]}
    new = {"observedGeneration": 2, "lastDetach": {"callSeconds": 0.2}, "targets": ["x"]}
    patch = replacing_patch(stored, new)
    assert patch == {"observedGeneration": 2, "degradedEndpoints": None,
                     "lastDetach": {"callSeconds": 0.2, "changeToCallSeconds": None}, "targets": ["x"]}
    assert merge_patch(stored, patch) == new
    assert replacing_patch(None, new) == new  # nothing stored yet: the new status as it is
