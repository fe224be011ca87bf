"""The NEG lifecycle: create-or-adopt, the start-up listing, deletion (negsync/providers/gcp/negs.py)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from negsync.core.model import BindingKey
from negsync.errors import (
    InvalidTarget,
)
from negsync.providers.gcp import (
    GcpProvider,
    NegOwner,
)
from tests.emulators.compute import FakeCompute

from .conftest import (
    AGGREGATED,
    ATTACH,
    DELETE,
    DETACH,
    INSERT,
    KEY,
    OTHER,
    PROJECT,
    UID,
    ZONE_A,
    ZONE_B,
    ZONE_C,
    Driver,
    bspec,
    eps,
    ips,
    name_of,
    ref,
    target,
)

pytestmark = pytest.mark.timeout(30)


def test_creates_one_neg_per_zone_with_name_description_and_network(
    fake: FakeCompute, provider: GcpProvider, driver: Driver
) -> None:
    endpoints = eps(3, zone=ZONE_A) + eps(2, zone=ZONE_B, start=10)
    # zones: pre-created even while empty, so a backend service can reference it at once.
    driver.set(KEY, bspec(zones=(ZONE_C,)), endpoints)
    result = driver.run()
    name = name_of()
    assert fake.negs(PROJECT) == [(PROJECT, z, name) for z in (ZONE_A, ZONE_B, ZONE_C)]
    assert fake.count(INSERT) == 3
    for zone in (ZONE_A, ZONE_B, ZONE_C):
        neg = fake.neg(PROJECT, zone, name)
        assert NegOwner.parse(neg["description"]) == NegOwner(UID, "shop", "web")
        assert neg["network"].endswith(f"projects/{PROJECT}/global/networks/default")
        assert neg["subnetwork"].endswith(f"projects/{PROJECT}/regions/us-central1/subnetworks/nodes")
        assert neg["networkEndpointType"] == "GCE_VM_IP_PORT"
    assert fake.endpoint_instances(PROJECT, ZONE_A, name) == {(e.ip, e.port): e.node for e in endpoints[:3]}
    assert fake.endpoints(PROJECT, ZONE_B, name) == ips(endpoints[3:])
    assert fake.endpoints(PROJECT, ZONE_C, name) == set()
    assert {t.ref for t in result.targets} == {ref(ZONE_A), ref(ZONE_B), ref(ZONE_C)}
    # A second reconcile of the same state issues no mutation.
    before = fake.count(ATTACH) + fake.count(INSERT)
    driver.run()
    assert fake.count(ATTACH) + fake.count(INSERT) == before


def test_existing_targets_finds_only_our_negs_after_a_restart(
    fake: FakeCompute, make: Callable[..., GcpProvider], driver: Driver
) -> None:
    driver.set(KEY, bspec(), eps(1, zone=ZONE_A) + eps(1, zone=ZONE_B, start=5))
    driver.run()
    # Same name in a third zone, made by someone else: never adopted.
    fake.add_neg(PROJECT, ZONE_C, name_of())
    fresh = make()
    assert fresh.existing_targets(binding=KEY, spec=target()) == [ref(ZONE_A), ref(ZONE_B)]
    assert fresh.existing_targets(binding=OTHER, spec=target()) == []


def test_start_up_adopts_every_bindings_negs_from_one_aggregated_listing(
    fake: FakeCompute, make: Callable[..., GcpProvider], driver: Driver
) -> None:
    # Issue 18: one aggregatedList per binding made a cold start of 5,000 bindings 5,000 calls.
    keys = [BindingKey("shop", f"web-{n}") for n in range(4)]
    for n, key in enumerate(keys):
        driver.set(key, bspec(), eps(1, zone=ZONE_A, start=n))
        driver.run(key)
    fresh = make()
    fake.clear_calls()
    with ThreadPoolExecutor(max_workers=4) as pool:  # the workers of a starting controller, at once
        found = list(pool.map(lambda key: fresh.existing_targets(binding=key, spec=target()), keys))
    refs = dict(zip(keys, found, strict=True))
    assert all(len(found) == 1 and found[0].location.endswith(ZONE_A) for found in refs.values())
    assert fake.count(AGGREGATED) == 1
    # Kept current with our own writes: a NEG created or deleted after the listing is seen.
    other_ref = fresh.ref(OTHER, target(), ZONE_B)
    fresh.ensure_target(other_ref, binding=OTHER, spec=target())
    assert fresh.existing_targets(binding=OTHER, spec=target()) == [other_ref]
    assert fresh.delete_target(refs[keys[0]][0], binding=keys[0], spec=target())
    assert fresh.existing_targets(binding=keys[0], spec=target()) == []
    assert fake.count(AGGREGATED) == 1


def test_ensure_target_rejects_a_neg_in_another_network(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    # The check runs on every ensure, not only on creation: a NEG's network is immutable.
    with pytest.raises(InvalidTarget, match="network"):
        provider.ensure_target(ref(), binding=KEY, spec=target(network="other-vpc"))


def test_a_neg_deleted_behind_our_back_is_recreated_with_its_endpoints(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(3)
    driver.set(KEY, bspec(), endpoints)
    driver.run(until=lambda r: r.synced and r.count("registered") == 3)
    description = fake.neg(PROJECT, ZONE_A, name_of())["description"]
    fake.remove_neg(PROJECT, ZONE_A, name_of())
    driver.reconciler.invalidate()
    driver.run(until=lambda r: r.synced and r.count("registered") == 3)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints)
    recreated = fake.neg(PROJECT, ZONE_A, name_of())
    assert recreated["description"] == description  # same name, same ownership
    assert recreated["subnetwork"].endswith("/subnetworks/nodes")


def test_deleting_a_binding_detaches_everything_then_deletes_its_negs(
    fake: FakeCompute, driver: Driver
) -> None:
    driver.set(KEY, bspec(), eps(3, zone=ZONE_A) + eps(2, zone=ZONE_B, start=10))
    driver.run()
    driver.set(KEY, bspec(), eps(3, zone=ZONE_A) + eps(2, zone=ZONE_B, start=10), deleting=True)
    result = driver.run(until=lambda r: r.finalized)
    assert fake.negs(PROJECT) == []
    assert fake.count(DETACH) == 2 and fake.count(DELETE) == 2
    assert result.retained == ()
    # Detaches happened before the deletes.
    order = [c.method_id for c in fake.calls if c.method_id in (DETACH, DELETE)]
    assert order.index(DELETE) > max(i for i, m in enumerate(order) if m == DETACH)


def test_a_neg_in_use_by_a_backend_service_is_retained(fake: FakeCompute, driver: Driver) -> None:
    driver.set(KEY, bspec(), eps(2, zone=ZONE_A) + eps(2, zone=ZONE_B, start=10))
    driver.run()
    fake.set_backend(PROJECT, ZONE_A, name_of())
    driver.set(KEY, bspec(), (), deleting=True)
    result = driver.run(until=lambda r: r.finalized)
    assert result.retained == (ref(ZONE_A),)
    assert fake.negs(PROJECT) == [(PROJECT, ZONE_A, name_of())]
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()  # emptied, just not deleted


def test_delete_of_a_missing_neg_succeeds(provider: GcpProvider) -> None:
    assert provider.delete_target(ref(ZONE_C), binding=KEY, spec=target()) is True


def test_start_up_adoption_reads_every_page_of_the_aggregated_listing(
    fake: FakeCompute, make: Callable[..., GcpProvider], driver: Driver
) -> None:
    # More of the cluster's NEGs than one page holds (compute v1: at most 500 per page); the
    # binding's own NEGs sort after the fillers, so they are on the second page.
    driver.set(KEY, bspec(), eps(1, zone=ZONE_A) + eps(1, zone=ZONE_B, start=5))
    driver.run()
    marker = name_of().split("-")[1]
    for i in range(520):
        fake.add_neg(PROJECT, (ZONE_A, ZONE_B, ZONE_C)[i % 3], f"k8s-{marker}-aaa-{i:03}")
    fake.clear_calls()
    assert make().existing_targets(binding=KEY, spec=target()) == [ref(ZONE_A), ref(ZONE_B)]
    assert fake.count(AGGREGATED) == 2
