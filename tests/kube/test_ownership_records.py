"""Ownership records of shared target groups are removed once empty (REVIEW-FINDINGS: they outlived their bindings)."""

from __future__ import annotations

from kubernetes import client

from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.kube.ownership import ConfigMapOwnershipStore, configmap_name
from tests.emulators.kubeapi import KubeApiEmulator

KEY = BindingKey("shop", "web")
REF_A = TargetRef("aws", "us-east-1", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/0123456789abcdef")
REF_B = TargetRef("aws", "us-east-1", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/0123456789abcdef")
ONE, TWO = TargetEndpoint("10.0.0.1", 8080), TargetEndpoint("10.0.0.2", 8080)


def record(kube: KubeApiEmulator) -> dict | None:  # type: ignore[type-arg]
    return kube.get("v1", "ConfigMap", "negsync-system", configmap_name(KEY))


def test_an_emptied_record_is_deleted(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    store = ConfigMapOwnershipStore(core_api=client.CoreV1Api(api_client), namespace="negsync-system")
    store.remember(KEY, REF_A, [ONE, TWO])
    store.remember(KEY, REF_B, [ONE])
    store.forget(KEY, REF_A, [ONE, TWO])
    assert record(kube) is not None, "still holds REF_B's member"
    assert store.owned(KEY, REF_A) == frozenset()
    store.forget(KEY, REF_B, [ONE])
    assert record(kube) is None, "nothing left on record: the ConfigMap goes with the binding"
    assert store.owned(KEY, REF_B) == frozenset()
    store.forget(KEY, REF_B, [ONE])  # forgetting again creates nothing
    assert record(kube) is None
    store.remember(KEY, REF_A, [TWO])  # and a later registration records again
    assert record(kube) is not None and store.owned(KEY, REF_A) == frozenset({TWO})


def test_a_record_changed_since_read_is_not_deleted(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    """Another replica added a member between our read and our delete: the precondition keeps it."""
    core = client.CoreV1Api(api_client)
    ours = ConfigMapOwnershipStore(core_api=core, namespace="negsync-system")
    theirs = ConfigMapOwnershipStore(core_api=core, namespace="negsync-system")
    ours.remember(KEY, REF_A, [ONE])
    real_read = ours._read
    raced = [False]

    def read_then_race(binding: BindingKey) -> tuple[dict[str, str], object]:
        result = real_read(binding)
        if not raced[0]:
            raced[0] = True
            theirs.remember(KEY, REF_A, [TWO])
        return result

    ours._read = read_then_race  # type: ignore[method-assign]
    ours.forget(KEY, REF_A, [ONE])
    assert record(kube) is not None
    fresh = ConfigMapOwnershipStore(core_api=core, namespace="negsync-system")
    assert fresh.owned(KEY, REF_A) == frozenset({TWO}) == ours.owned(KEY, REF_A)
