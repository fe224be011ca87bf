"""The controller's wiring on its manager: what runs always, what only while leading, and in which order it stops."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client

from negsync.app import Settings
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def elected(identity: str) -> Settings:
    return Settings(workers=2, sync_min_interval=0.0, identity=identity, watch_timeout=5, leader_elect=True,
                    lease_namespace="negsync-system", lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)


def registered(kube: KubeApiEmulator) -> Any:
    status = (kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}).get("status") or {}
    return status.get("endpoints", {}).get("registered")


def test_the_runnables_and_their_groups(api_client: client.ApiClient) -> None:
    ctl = Controller(api_client=api_client, provider=MemoryProvider(), settings=elected("a"))
    always = [r.name for r in ctl.manager.runnables if not r.needs_leader]
    leader_only = [r.name for r in ctl.manager.runnables if r.needs_leader]
    assert always == ["watch-targetbindings", "watch-services", "watch-endpointslices", "watch-pods", "watch-nodes"]
    assert leader_only == ["status-writer", "engine"]  # stopped engine first, then the writer
    assert ctl.manager.elector is ctl.leader is not None
    assert not ctl.ready and ctl.manager.not_ready() == "caches not synced"


def test_a_leader_that_shuts_down_sends_the_status_that_waits_before_it_lets_the_lease_go(
        kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(service())
    kube.create(endpoint_slice("web-abc", ["10.1.0.1"]))
    kube.create(binding(gate=False))
    ctl = Controller(api_client=api_client, provider=MemoryProvider(health_checking=False), settings=elected("a"))
    entered, release = threading.Event(), threading.Event()
    original = ctl.custom.patch_namespaced_custom_object_status
    lease_holder_at_write: list[str] = []

    def held_patch(*args: Any, **kwargs: Any) -> Any:
        lease = kube.get("coordination.k8s.io/v1", "Lease", "negsync-system", "negsync-controller") or {}
        lease_holder_at_write.append((lease.get("spec") or {}).get("holderIdentity") or "")
        if not entered.is_set():
            entered.set()
            release.wait(10)  # the first write stays in flight: the next status waits behind it
        return original(*args, **kwargs)

    ctl.custom.patch_namespaced_custom_object_status = held_patch  # type: ignore[method-assign]
    ctl.start()
    stopped = threading.Event()
    try:
        assert entered.wait(10), "no status write started"
        kube.update(endpoint_slice("web-abc", ["10.1.0.1", "10.1.0.2"]))  # a newer status: 2 registered
        wait_for(lambda: any(r.count("registered") == 2 for r in list(ctl.last_results.values())),
                 what="a reconcile that sees both endpoints registered")
        threading.Thread(target=lambda: (ctl.stop(timeout=10), stopped.set()), daemon=True).start()
        assert not stopped.wait(0.3)  # shutting down waits for the status writer
        release.set()
        assert stopped.wait(15)
    finally:
        release.set()
        ctl.stop(timeout=5)
    assert registered(kube) == 2, "the status that waited was sent"
    assert lease_holder_at_write and all(holder == "a" for holder in lease_holder_at_write), \
        "every status write happened while this replica held the Lease"
    lease = kube.get("coordination.k8s.io/v1", "Lease", "negsync-system", "negsync-controller") or {}
    assert not (lease.get("spec") or {}).get("holderIdentity"), "then the Lease was released"
