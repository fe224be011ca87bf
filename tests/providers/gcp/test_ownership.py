"""The ownership description of a NEG and when it is checked (negsync/providers/gcp/ownership.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from negsync.core.model import TargetEndpoint
from negsync.errors import (
    OwnershipConflict,
    ProviderError,
)
from negsync.providers.gcp import (
    GcpProvider,
    NegOwner,
)
from tests.emulators.compute import FakeCompute

from .conftest import (
    ATTACH,
    DELETE,
    DETACH,
    GET,
    KEY,
    OTHER,
    PROJECT,
    UID,
    ZONE_A,
    Driver,
    SteppedClock,
    bspec,
    eps,
    name_of,
    place,
    ref,
    target,
)

pytestmark = pytest.mark.timeout(30)


def test_owner_description_round_trips_and_foreign_ones_are_not_ours() -> None:
    owner = NegOwner(UID, "shop", "web")
    assert NegOwner.parse(owner.description()) == owner
    assert json.loads(owner.description())["managed-by"] == "negsync"
    for foreign in (None, "", "made by hand", '{"managed-by": "someone"}', '{"managed-by": "negsync"}'):
        assert NegOwner.parse(foreign) is None


def test_ownership_is_checked_once_not_before_every_change(fake: FakeCompute, provider: GcpProvider) -> None:
    # Issue 18: a GET before every write cost as much quota as the writes.  Defaults: checked by
    # ensure_target, re-checked once the check is older than the resync period or after an error.
    provider.ensure_target(ref(), binding=KEY, spec=target())
    fake.clear_calls()
    members = [TargetEndpoint(e.ip, e.port, e.node) for e in eps(4)]
    place(fake, members)
    fake.clear_calls()
    for member in members:
        provider.attach(ref(), [member])
    provider.detach(ref(), members[:2])
    assert fake.count(GET) == 0
    assert fake.count(ATTACH) == 4 and fake.count(DETACH) == 1


def test_ownership_is_rechecked_after_the_ttl(fake: FakeCompute, make: Callable[..., GcpProvider]) -> None:
    clock = SteppedClock()
    provider = make(clock=clock, ownership_ttl=300.0)
    provider.ensure_target(ref(), binding=KEY, spec=target())
    with fake._lock:  # deleted and re-created by someone else behind negsync's back
        del fake._negs[(PROJECT, ZONE_A, name_of())]
    fake.add_neg(PROJECT, ZONE_A, name_of())
    clock.at += 300.0
    with pytest.raises(OwnershipConflict):
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    assert fake.count(ATTACH) == 0


def test_ownership_is_rechecked_after_a_failed_change(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    place(fake, [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    with fake._lock:  # deleted behind negsync's back: the next change fails...
        del fake._negs[(PROJECT, ZONE_A, name_of())]
    with pytest.raises(ProviderError):
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    fake.add_neg(PROJECT, ZONE_A, name_of())  # ...and someone else's NEG takes the name
    with pytest.raises(OwnershipConflict):  # the change after the error re-reads the owner
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    assert fake.count(ATTACH) == 1


def test_every_change_is_preceded_by_an_ownership_check_with_ttl_0(
    fake: FakeCompute, make: Callable[..., GcpProvider]
) -> None:
    provider = make(ownership_ttl=0.0)
    provider.ensure_target(ref(), binding=KEY, spec=target())
    # Deleted and re-created by someone else behind negsync's back.
    with fake._lock:  # the fake has no "replace" control; emulate the delete + foreign insert
        del fake._negs[(PROJECT, ZONE_A, name_of())]
    fake.add_neg(PROJECT, ZONE_A, name_of())
    with pytest.raises(OwnershipConflict):
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    assert fake.count(ATTACH) == 0


def test_a_foreign_neg_is_never_attached_detached_or_deleted(fake: FakeCompute, driver: Driver) -> None:
    foreign = [("vm-x", "10.9.9.9", 8080)]
    fake.add_neg(PROJECT, ZONE_A, name_of(), endpoints=foreign)  # no negsync description
    driver.set(KEY, bspec(), eps(3))
    result = driver.run(until=lambda r: bool(r.conflicts))
    assert any("not managed by negsync" in c for c in result.conflicts)
    assert not result.synced
    driver.set(KEY, bspec(), eps(3), deleting=True)
    result = driver.run(until=lambda r: bool(r.conflicts))
    assert not result.finalized
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.9.9.9", 8080)}
    assert fake.count(ATTACH) == fake.count(DETACH) == fake.count(DELETE) == 0
    assert (PROJECT, ZONE_A, name_of()) in fake.negs()


def test_a_neg_of_another_binding_is_refused(
    fake: FakeCompute, provider: GcpProvider, driver: Driver
) -> None:
    # Created by negsync for OTHER (same cluster) under the name KEY would use.
    provider.ensure_target(ref(), binding=OTHER, spec=target())
    driver.set(KEY, bspec(), eps(2))
    result = driver.run(until=lambda r: bool(r.conflicts))
    assert any("belongs to binding shop/api" in c for c in result.conflicts)
    assert fake.count(ATTACH) == 0
    with pytest.raises(OwnershipConflict):
        provider.delete_target(ref(), binding=KEY, spec=target())
    assert (PROJECT, ZONE_A, name_of()) in fake.negs()


def test_ownership_checks_expire_and_a_replaced_neg_is_checked_afresh() -> None:
    from negsync.core.clock import VirtualClock
    from negsync.providers.gcp.ownership import OwnershipChecks

    clock = VirtualClock(start=0.0)
    checks = OwnershipChecks(cluster_uid=UID, ttl=300.0, clock=clock)
    mine = {"id": "1", "description": NegOwner(UID, "shop", "web").description()}
    assert checks.due(ref())
    checks.assign(ref(), KEY)
    checks.check(ref(), mine, KEY)
    assert not checks.due(ref())
    clock.advance(299.0)
    assert not checks.due(ref())
    clock.advance(1.0)
    assert checks.due(ref())
    # Same name, new id, another binding's description: deleted and re-created by someone else.
    with pytest.raises(OwnershipConflict, match="shop/api"):
        checks.verify(ref(), {"id": "2", "description": NegOwner(UID, "shop", "api").description()})
    assert checks.due(ref())
    with pytest.raises(OwnershipConflict, match="another-cluster"):
        checks.check(ref(), {"id": "3", "description": NegOwner("another-cluster", "shop", "web").description()}, None)
    checks.verify(ref(), mine)
    checks.invalidate(ref())
    assert checks.due(ref())
