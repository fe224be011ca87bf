"""Ownership records of shared targets across leader changes."""

from __future__ import annotations

from kubernetes import client

from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.kube.controller import Controller
from negsync.kube.ownership import ConfigMapOwnershipStore
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.test_binding_reconciler import settings
from tests.support.waiting import wait_for

KEY = BindingKey("shop", "web")
REF = TargetRef("aws", "eu-west-1", "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shared/abc")
A, B = TargetEndpoint("10.1.0.1", 8080), TargetEndpoint("10.1.0.2", 8080)


def test_leading_again_forgets_nothing_another_leader_registered(kube: KubeApiEmulator) -> None:
    apis = [client.ApiClient(kube.client_configuration()) for _ in range(2)]
    try:
        store_a, store_b = (ConfigMapOwnershipStore(core_api=client.CoreV1Api(api), namespace="negsync-system")
                            for api in apis)
        store_a.remember(KEY, REF, [A])  # replica A leads and registers A ...
        assert store_a.owned(KEY, REF) == {A}
        store_b.remember(KEY, REF, [B])  # ... then B leads and registers B ...
        # ... then A leads again: what it cached before is stale.
        ctl = Controller(api_client=apis[0], provider=MemoryProvider(), settings=settings(), ownership=store_a)
        ctl.start()
        try:
            wait_for(lambda: ctl.leading, what="A leads")
            assert store_a.owned(KEY, REF) == {A, B}
        finally:
            ctl.stop(timeout=5)
    finally:
        for api in apis:
            api.close()
