"""AwsProvider: one ref per target group, and the real reconciler syncing through it (negsync/providers/aws/provider.py)."""

from __future__ import annotations

from negsync.core.model import Endpoint, TargetEndpoint
from negsync.providers.aws import (
    AwsProvider,
)
from negsync.providers.memory import MemoryOwnershipStore
from tests.support.waiting import wait_for

from .conftest import (
    BINDING,
    FaultProxy,
    World,
    addresses,
    binding_spec,
    provider_for,
)


def test_targets_for_is_one_ref_per_group_in_the_arns_region(world: World) -> None:
    provider = AwsProvider()
    spec = world.spec()
    endpoints = [Endpoint("10.0.0.1", 8080, zone="us-east-1a"), Endpoint("fd00:0:0::1", 8080, node="n1")]
    assert provider.targets_for(binding=BINDING, spec=spec, endpoints=endpoints) == {
        world.ref(): {TargetEndpoint("10.0.0.1", 8080), TargetEndpoint("fd00::1", 8080)}
    }
    assert provider.targets_for(binding=BINDING, spec=spec, endpoints=[]) == {world.ref(): set()}
    assert provider.existing_targets(binding=BINDING, spec=spec) == [world.ref()]
    assert world.ref().location == "us-east-1"


def test_the_reconciler_syncs_450_targets_in_three_calls(world: World, proxy: FaultProxy) -> None:
    from negsync.core.reconciling import DesiredBinding, Reconciler

    provider = provider_for(proxy)
    endpoints = tuple(Endpoint(e.ip, e.port) for e in addresses(450))
    current = {BINDING: DesiredBinding(BINDING, binding_spec(world.spec(shared=True)), endpoints)}
    store = MemoryOwnershipStore()
    reconciler = Reconciler(provider=provider, enqueue=lambda *_: None, ownership=store)
    try:
        reconciler.reconcile(BINDING, current[BINDING])
        wait_for(lambda: reconciler.in_flight() == 0)
        result = reconciler.reconcile(BINDING, current[BINDING])
        assert result.synced and result.count("registered") == 450
        assert len(proxy.actions("RegisterTargets")) == 3
        assert len(store.owned(BINDING, world.ref())) == 450
        current[BINDING] = DesiredBinding(BINDING, binding_spec(world.spec(shared=True)), ())
        reconciler.reconcile(BINDING, current[BINDING])
        wait_for(lambda: reconciler.in_flight() == 0)
        assert len(proxy.actions("DeregisterTargets")) == 3
        assert world.registered() == set()
    finally:
        reconciler.close()
