"""Binding status that settles: once nothing changes, nothing is written."""

from __future__ import annotations

import time

from kubernetes import client

from negsync.core.latency import Fixed
from negsync.core.model import BindingKey
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator, merge_patch
from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.kube.test_binding_reconciler import settings
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
    from negsync.kube.status import replacing_patch

    stored = {"degradedEndpoints": [{"address": "a", "reason": "r"}], "lastDetach": {"callSeconds": 1.0,
              "changeToCallSeconds": 0.5}, "endpoints": {"desired": 2}}
    new = {"lastDetach": {"callSeconds": 0.2}, "endpoints": {"desired": 1}}
    assert merge_patch(stored, replacing_patch(stored, new)) == new
