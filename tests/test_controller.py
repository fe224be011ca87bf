"""The controller's own per-binding bookkeeping: a binding that is gone leaves nothing behind.

Issue 18's soak found that ``last_results``, the skipped-endpoint counts and ``DetachTimings`` kept
an entry for every binding ever seen; in a cluster where bindings come and go (preview
environments, per-tenant Services) that grows for the life of the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from negsync.app import Settings
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, service

pytestmark = pytest.mark.timeout(60)

KEY = BindingKey("shop", "web")
REF = TargetRef("memory", "local", "shop-web")


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


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
                 "both endpoints attached")
        kube.update(endpoint_slice("web-abc", ["10.0.0.1"]))  # a detach, so DetachTimings keeps a record
        wait_for(lambda: controller.detach_timings.last(KEY) is not None, "the detach recorded")
        wait_for(lambda: KEY in controller.last_results, "a result kept")
        kube.delete("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
        wait_for(lambda: kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") is None,
                 "the finalizer released")
        wait_for(lambda: KEY not in controller.last_results, "the result dropped")
        assert KEY not in controller.binding_reconciler.skipped
        assert controller.detach_timings.last(KEY) is None
        assert provider.members(REF) == set()
    finally:
        controller.stop(timeout=10)
