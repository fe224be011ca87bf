"""A used-up resource quota surfaces as condition Degraded/QuotaExceeded and an Event (issue 13, item 2).

Waiting alone does not clear a resource quota (e.g. the NEG count), so unlike a throttle it is shown
to the user; the reconciler keeps retrying slowly and the condition clears once a call succeeds.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from negsync.errors import QuotaExceeded
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding
from tests.kube.test_binding_reconciler import seed_service, settings
from tests.support.waiting import wait_for


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
