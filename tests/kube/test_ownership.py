"""Ownership records of shared targets: kept across leader changes, safe against racing replicas, removed once empty."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.errors import TransientError
from negsync.kube.controller import Controller
from negsync.kube.ownership import ConfigMapOwnershipStore, configmap_name
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.test_binding_reconciler import settings
from tests.support.waiting import wait_for

KEY = BindingKey("shop", "web")
REF = TargetRef("aws", "eu-west-1", "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shared/abc")
A, B = TargetEndpoint("10.1.0.1", 8080), TargetEndpoint("10.1.0.2", 8080)
REF_A = TargetRef("aws", "us-east-1", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/0123456789abcdef")
REF_B = TargetRef("aws", "us-east-1", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/0123456789abcdef")
ONE, TWO = TargetEndpoint("10.0.0.1", 8080), TargetEndpoint("10.0.0.2", 8080)


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


# -- the ConfigMap record: its name, its encoding, and writes that race ---------------------------

# apimachinery validation: IsDNS1123Subdomain for object names, IsConfigMapKey for data keys.
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
NAMESPACE = "negsync-system"


class RacingCore:
    """A CoreV1Api whose next write is preceded by ``before_write`` (another replica writing first).

    Everything else goes to the real client, so the conflict is the one the API server answers.
    """

    def __init__(self, real: client.CoreV1Api, before_write: Callable[[], None] | None = None) -> None:
        self._real = real
        self._before_write = before_write
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _race(self) -> None:
        self.writes += 1
        hook, self._before_write = self._before_write, None
        if hook is not None:
            hook()

    def create_namespaced_config_map(self, *args: Any, **kwargs: Any) -> Any:
        self._race()
        return self._real.create_namespaced_config_map(*args, **kwargs)

    def replace_namespaced_config_map(self, *args: Any, **kwargs: Any) -> Any:
        self._race()
        return self._real.replace_namespaced_config_map(*args, **kwargs)


class FailingCore:
    """Answers every call with one HTTP status."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            raise ApiException(status=self.status, reason="test")
        return fail


def test_the_record_is_named_for_the_binding_and_a_long_name_stays_a_valid_unique_name() -> None:
    assert configmap_name(KEY) == "negsync-owned-shop-web"
    namespace = "n" * 63
    long_a, long_b = BindingKey(namespace, "a" * 240 + "-x"), BindingKey(namespace, "a" * 240 + "-y")
    assert len(configmap_name(long_a)) <= 253 and DNS1123_SUBDOMAIN.match(configmap_name(long_a))
    assert configmap_name(long_a) != configmap_name(long_b)  # they differ only past the cut
    assert configmap_name(long_a) == configmap_name(BindingKey(namespace, "a" * 240 + "-x"))


@pytest.mark.parametrize("cut_on", [".", "-"])
def test_a_long_name_cut_on_a_separator_is_still_a_valid_object_name(cut_on: str) -> None:
    # A TargetBinding's name is a DNS-1123 subdomain and may hold dots; the cut at 242 characters of
    # "negsync-owned-<ns>-<name>" must not leave a label ending in "." or "-" before the digest,
    # or the API server rejects the ConfigMap (422) and the shared binding never registers.
    prefix = "negsync-owned-shop-"
    name = "a" * (242 - len(prefix) - 1) + cut_on + "b" * 20  # a valid name of 244 characters
    assert DNS1123_SUBDOMAIN.match(name) and len(name) <= 253
    cut = configmap_name(BindingKey("shop", name))
    assert len(cut) <= 253
    assert DNS1123_SUBDOMAIN.match(cut), cut[230:]


def test_members_survive_a_restart_in_a_record_the_api_accepts(kube: KubeApiEmulator,
                                                                api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    with_instance = TargetEndpoint("10.0.0.3", 9090, "i-0123456789abcdef0")
    ConfigMapOwnershipStore(core_api=core, namespace=NAMESPACE).remember(KEY, REF_A, [ONE, with_instance])
    ConfigMapOwnershipStore(core_api=core, namespace=NAMESPACE).remember(KEY, REF_B, [TWO])
    fresh = ConfigMapOwnershipStore(core_api=core, namespace=NAMESPACE)  # a new process: nothing cached
    assert fresh.owned(KEY, REF_A) == frozenset({ONE, with_instance})
    assert fresh.owned(KEY, REF_B) == frozenset({TWO})  # two targets of one binding, one record
    assert fresh.owned(BindingKey("shop", "other"), REF_A) == frozenset()
    stored = kube.get("v1", "ConfigMap", NAMESPACE, configmap_name(KEY))
    assert stored is not None
    assert stored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "negsync"}
    assert len(stored["data"]) == 2
    for key, value in stored["data"].items():
        assert CONFIGMAP_KEY.match(key) and len(key) <= 253  # an ARN is not a valid key; its hash is
        assert all(isinstance(member, list) and len(member) == 3 for member in json.loads(value))


def test_reads_are_cached_until_invalidated(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    ours, theirs = (ConfigMapOwnershipStore(core_api=core, namespace=NAMESPACE) for _ in range(2))
    ours.remember(KEY, REF_A, [ONE])
    theirs.remember(KEY, REF_A, [TWO])  # another leader, unknown to us
    reads = len(kube.requests)
    assert ours.owned(KEY, REF_A) == frozenset({ONE})  # our own cache: no request
    assert len(kube.requests) == reads
    ours.invalidate()  # we lead again
    assert ours.owned(KEY, REF_A) == frozenset({ONE, TWO})


def test_a_write_that_lost_a_race_is_re_read_and_re_applied(kube: KubeApiEmulator,
                                                            api_client: client.ApiClient) -> None:
    real = client.CoreV1Api(api_client)
    theirs = ConfigMapOwnershipStore(core_api=real, namespace=NAMESPACE)
    theirs.remember(KEY, REF_A, [ONE])
    racing = RacingCore(real, lambda: theirs.remember(KEY, REF_A, [TWO]))
    ours = ConfigMapOwnershipStore(core_api=racing, namespace=NAMESPACE)
    third = TargetEndpoint("10.0.0.3", 8080)
    ours.remember(KEY, REF_A, [third])  # its PUT carries a stale resourceVersion: 409, re-read, PUT again
    assert racing.writes == 2
    fresh = ConfigMapOwnershipStore(core_api=real, namespace=NAMESPACE)
    assert fresh.owned(KEY, REF_A) == frozenset({ONE, TWO, third}) == ours.owned(KEY, REF_A)


def test_a_create_that_lost_a_race_updates_the_record_the_other_created(kube: KubeApiEmulator,
                                                                        api_client: client.ApiClient) -> None:
    real = client.CoreV1Api(api_client)
    theirs = ConfigMapOwnershipStore(core_api=real, namespace=NAMESPACE)
    racing = RacingCore(real, lambda: theirs.remember(KEY, REF_A, [TWO]))
    ours = ConfigMapOwnershipStore(core_api=racing, namespace=NAMESPACE)
    ours.remember(KEY, REF_A, [ONE])  # both saw no record; theirs was created first (409 AlreadyExists)
    assert racing.writes == 2
    assert ConfigMapOwnershipStore(core_api=real, namespace=NAMESPACE).owned(KEY, REF_A) == frozenset({ONE, TWO})


def test_a_record_that_keeps_changing_gives_up_with_a_transient_error_naming_it(
        kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    real = client.CoreV1Api(api_client)
    theirs = ConfigMapOwnershipStore(core_api=real, namespace=NAMESPACE)
    theirs.remember(KEY, REF_A, [ONE])

    class AlwaysRacing(RacingCore):
        def _race(self) -> None:
            self.writes += 1
            theirs.remember(KEY, REF_A, [TargetEndpoint(f"10.0.1.{self.writes}", 8080)])

    racing = AlwaysRacing(real)
    ours = ConfigMapOwnershipStore(core_api=racing, namespace=NAMESPACE, attempts=3)
    with pytest.raises(TransientError, match=configmap_name(KEY)):
        ours.remember(KEY, REF_A, [TWO])
    assert racing.writes == 3
    assert TWO not in ConfigMapOwnershipStore(core_api=real, namespace=NAMESPACE).owned(KEY, REF_A)


@pytest.mark.parametrize("status", [403, 500, 503])
def test_api_errors_are_transient_errors_for_the_reconciler_to_retry(status: int) -> None:
    store = ConfigMapOwnershipStore(core_api=FailingCore(status), namespace=NAMESPACE)
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        store.owned(KEY, REF_A)
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        store.remember(KEY, REF_A, [ONE])
