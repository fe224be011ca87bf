"""Which binding manages which target group, shared or not (negsync/providers/aws/claims.py)."""

from __future__ import annotations

import pytest

from negsync.core.model import Endpoint, TargetEndpoint
from negsync.errors import (
    OwnershipConflict,
    TransientError,
)
from negsync.providers.aws import (
    TargetGroupClaims,
)
from negsync.providers.memory import MemoryOwnershipStore
from tests.support.waiting import wait_for

from .conftest import (
    BINDING,
    OTHER,
    FaultProxy,
    World,
    addresses,
    binding_spec,
    provider_for,
    reconcile_once,
)


def test_claims_registry_semantics() -> None:
    claims = TargetGroupClaims()
    claims.claim("arn-1", BINDING, shared=False)
    claims.claim("arn-1", BINDING, shared=False)  # idempotent
    with pytest.raises(OwnershipConflict, match="shop/web"):
        claims.claim("arn-1", OTHER, shared=False)
    with pytest.raises(OwnershipConflict, match="shop/web"):
        claims.claim("arn-1", OTHER, shared=True)  # sharing needs both sides to agree
    claims.claim("arn-2", BINDING, shared=False)  # the spec moved: the old claim goes
    claims.claim("arn-1", OTHER, shared=True)
    claims.claim("arn-1", BINDING, shared=True)
    assert claims.holders("arn-1") == {BINDING: True, OTHER: True}
    assert claims.holders("arn-2") == {}
    claims.release(OTHER)
    claims.release(BINDING)
    claims.claim("arn-1", OTHER, shared=False)


def test_an_unshared_binding_owns_the_whole_group(world: World, proxy: FaultProxy) -> None:
    foreign = TargetEndpoint("10.0.9.9", 8080)
    world.elbv2.register_targets(
        TargetGroupArn=world.ip_arn, Targets=[{"Id": foreign.ip, "Port": foreign.port}]
    )
    provider = provider_for(proxy)
    ours = addresses(3)
    reconcile_once(provider, BINDING, world.spec(), ours, MemoryOwnershipStore())
    assert world.registered() == set(ours)  # the target not in the cluster was deregistered


def test_a_shared_group_only_loses_what_this_binding_registered(world: World, proxy: FaultProxy) -> None:
    foreign = TargetEndpoint("10.0.9.9", 8080)
    world.elbv2.register_targets(
        TargetGroupArn=world.ip_arn, Targets=[{"Id": foreign.ip, "Port": foreign.port}]
    )
    provider = provider_for(proxy)
    store = MemoryOwnershipStore()
    spec = world.spec(shared=True)
    first = addresses(3)
    reconcile_once(provider, BINDING, spec, first, store)  # first run, no record: detaches nothing
    assert world.registered() == {foreign, *first}
    assert proxy.actions("DeregisterTargets") == []
    assert store.owned(BINDING, world.ref()) == set(first)

    reconcile_once(provider, BINDING, spec, first[:1], store)  # scale down
    assert world.registered() == {foreign, first[0]}
    reconcile_once(provider, BINDING, spec, [], store)  # scale to zero
    assert world.registered() == {foreign}
    assert store.owned(BINDING, world.ref()) == frozenset()


def test_shared_ownership_is_recorded_before_register_so_a_lost_call_cannot_leak(
    world: World, proxy: FaultProxy, fast_retries: None
) -> None:
    provider = provider_for(proxy, max_attempts=1)
    store = MemoryOwnershipStore()
    spec = world.spec(shared=True)
    pod = TargetEndpoint("10.0.0.5", 8080)
    proxy.fail_next("RegisterTargets", 1, status=503, code="ServiceUnavailable")  # the response is "lost"
    with pytest.raises(TransientError):
        reconcile_once(provider, BINDING, spec, [pod], store)
    assert store.owned(BINDING, world.ref()) == {pod}  # recorded although the call failed
    world.elbv2.register_targets(TargetGroupArn=world.ip_arn, Targets=[{"Id": pod.ip, "Port": pod.port}])
    reconcile_once(provider, BINDING, spec, [], store)  # the pod went away: ours, so it is removed
    assert world.registered() == set()


def test_two_bindings_on_one_group_without_shared_conflict(world: World, proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    ref = world.ref()
    provider.ensure_target(ref, binding=BINDING, spec=world.spec())
    with pytest.raises(OwnershipConflict, match="shop/web") as info:
        provider.ensure_target(ref, binding=OTHER, spec=world.spec())
    assert "shared: true" in str(info.value)
    # Another provider instance in the same process sees the same claims.
    with pytest.raises(OwnershipConflict):
        provider_for(proxy).ensure_target(ref, binding=OTHER, spec=world.spec(shared=True))
    assert provider.delete_target(ref, binding=BINDING, spec=world.spec()) is False  # not ours to delete
    provider.ensure_target(ref, binding=OTHER, spec=world.spec())  # released with the binding
    provider.release(OTHER)
    provider.ensure_target(ref, binding=BINDING, spec=world.spec(shared=True))
    provider.ensure_target(ref, binding=OTHER, spec=world.spec(shared=True))


def test_the_reconciler_reports_the_conflict_and_leaves_the_group_alone(
    world: World, proxy: FaultProxy
) -> None:
    from negsync.core.reconciling import DesiredBinding, Reconciler

    provider = provider_for(proxy)
    web, admin = addresses(3), addresses(2, prefix="10.0.200")
    desired = {
        BINDING: DesiredBinding(
            BINDING, binding_spec(world.spec()), tuple(Endpoint(e.ip, e.port) for e in web)
        ),
        OTHER: DesiredBinding(
            OTHER, binding_spec(world.spec()), tuple(Endpoint(e.ip, e.port) for e in admin)
        ),
    }
    reconciler = Reconciler(provider=provider, enqueue=lambda *_: None)
    try:
        first = reconciler.reconcile(BINDING, desired[BINDING])
        assert not first.conflicts
        wait_for(lambda: reconciler.in_flight() == 0)
        second = reconciler.reconcile(OTHER, desired[OTHER])
        assert second.conflicts and "shop/web" in second.conflicts[0]
        wait_for(lambda: reconciler.in_flight() == 0)
        assert world.registered() == set(web)
    finally:
        reconciler.close()
