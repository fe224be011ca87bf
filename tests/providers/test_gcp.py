"""The GCP NEG provider through the real google-api-python-client against the fake Compute API.

Nothing in the client is patched: requests go over HTTP to :class:`FakeCompute` on 127.0.0.1.
The only seam is the provider's clock, whose ``sleep`` (used for the client's own retry back-off)
records instead of sleeping, so retry tests stay fast and can assert the back-off happened.
Reconciler-level tests drive the real :class:`Reconciler` synchronously (``Driver``).
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError

from negsync.core.bindings import BindingSpec, GcpNegTarget
from negsync.core.clock import RealClock
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.core.reconciling import DesiredBinding, Reconciler, ReconcileResult
from negsync.errors import (
    ConfigError,
    InvalidTarget,
    OwnershipConflict,
    ProviderError,
    QuotaExceeded,
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.gcp import (
    MAX_NAME_LENGTH,
    QUOTA_RETRY_AFTER,
    GcpProvider,
    NegOwner,
    _from_http_error,
    health_from_item,
    neg_name,
    parse_location,
)
from tests.emulators.compute import FakeCompute

pytestmark = pytest.mark.timeout(30)

PROJECT = "proj-negsync"
ZONE_A, ZONE_B, ZONE_C = "us-central1-a", "us-central1-b", "us-central1-c"
UID = "0f3c2a9e-5b7d-4e21-9a10-5d6f7e8a9b0c"
KEY = BindingKey("shop", "web")
OTHER = BindingKey("shop", "api")
ATTACH = "compute.networkEndpointGroups.attachNetworkEndpoints"
DETACH = "compute.networkEndpointGroups.detachNetworkEndpoints"
LIST_EPS = "compute.networkEndpointGroups.listNetworkEndpoints"
INSERT = "compute.networkEndpointGroups.insert"
DELETE = "compute.networkEndpointGroups.delete"
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


# -- fixtures and helpers -----------------------------------------------------------------------
class SkipSleepClock(RealClock):
    """Real time, but sleeps (the client's retry back-off) are recorded and skipped."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def new_project(fake: FakeCompute) -> FakeCompute:
    """The project's network: ``default`` with the ``nodes`` subnetwork in us-central1."""
    fake.add_subnetwork(PROJECT, "us-central1", "nodes", cidr="10.0.0.0/8")
    return fake


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as f:
        yield new_project(f)


def place(fake: FakeCompute, endpoints: Iterable[Endpoint | TargetEndpoint], zone: str = "") -> None:
    """The VMs the endpoints name exist and own their IPs (each a /32 alias range)."""
    for e in endpoints:
        instance = e.node if isinstance(e, Endpoint) else e.instance
        fake.provision(PROJECT, (e.zone if isinstance(e, Endpoint) else "") or zone or ZONE_A, instance, [e.ip],
                       subnetwork="nodes")


@pytest.fixture
def clock() -> SkipSleepClock:
    return SkipSleepClock()


@pytest.fixture
def make(fake: FakeCompute, clock: SkipSleepClock) -> Callable[..., GcpProvider]:
    def build(**overrides: Any) -> GcpProvider:
        kwargs: dict[str, Any] = {
            "cluster_uid": UID,
            "compute_endpoint": fake.api_endpoint,
            "credentials": fake.credentials(),
            "num_retries": 2,
            "operation_timeout": 5.0,
            "rate_limit": (1000.0, 1000),
            "clock": clock,
            "http_timeout": 5.0,
        }
        kwargs.update(overrides)
        return GcpProvider(**kwargs)

    return build


@pytest.fixture
def provider(make: Callable[..., GcpProvider]) -> GcpProvider:
    return make()


def target(**overrides: Any) -> GcpNegTarget:
    kwargs: dict[str, Any] = {"project": PROJECT, "network": "default", "subnetwork": "nodes"}
    kwargs.update(overrides)
    return GcpNegTarget(**kwargs)


def bspec(*, gate: bool = False, **overrides: Any) -> BindingSpec:
    return BindingSpec(service_name="web", service_port=80, target=target(**overrides), readiness_gate=gate)


def eps(count: int, *, zone: str = ZONE_A, start: int = 0, node: str = "") -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(
            ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            port=8080,
            zone=zone,
            node=node or f"vm-{zone[-1]}-{i % 3}",
        )
        for i in range(start, start + count)
    )


def name_of(key: BindingKey = KEY) -> str:
    return neg_name(prefix="k8s", cluster_uid=UID, binding=key)


def ref(zone: str = ZONE_A, key: BindingKey = KEY) -> TargetRef:
    return TargetRef("gcp", f"{PROJECT}/{zone}", name_of(key))


def ips(endpoints: tuple[Endpoint, ...]) -> set[tuple[str, int]]:
    return {(e.ip, e.port) for e in endpoints}


def batch_sizes(fake: FakeCompute, method_id: str) -> list[int]:
    return [
        len(c.body["networkEndpoints"]) for c in fake.calls if c.method_id == method_id and c.status == 200
    ]


class Driver:
    """The real reconciler, reconciled by hand until a condition holds (no engine, no queue).

    ``set`` also plays the cloud side of the cluster: the VMs the endpoints run on exist.
    """

    def __init__(self, provider: GcpProvider, fake: FakeCompute | None = None) -> None:
        self.fake = fake
        self.desired: dict[BindingKey, DesiredBinding] = {}
        self.reconciler = Reconciler(
            provider=provider,
            source=self.desired.get,
            enqueue=lambda key, delay, priority: None,
            retry_base=0.01,
            retry_max=0.05,
            health_poll_interval=0.0,
            seed=1,
        )

    def set(
        self, key: BindingKey, spec: BindingSpec, endpoints: tuple[Endpoint, ...], *, deleting: bool = False
    ) -> None:
        if self.fake is not None:
            place(self.fake, endpoints)
        self.desired[key] = DesiredBinding(key=key, spec=spec, endpoints=endpoints, deleting=deleting)

    def run(
        self,
        key: BindingKey = KEY,
        until: Callable[[ReconcileResult], bool] = lambda r: r.synced,
        timeout: float = 20.0,
    ) -> ReconcileResult:
        deadline = time.monotonic() + timeout
        while True:
            result = self.reconciler.reconcile(key)
            if until(result) and self.reconciler.in_flight() == 0:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached: {result}")
            while self.reconciler.in_flight() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.01)

    def close(self) -> None:
        self.reconciler.close(timeout=5)


@pytest.fixture
def driver(provider: GcpProvider, fake: FakeCompute) -> Iterator[Driver]:
    d = Driver(provider, fake)
    yield d
    d.close()


# -- names and pure helpers -----------------------------------------------------------------------
def test_name_is_deterministic_rfc1035_and_at_most_63_chars() -> None:
    name = neg_name(prefix="k8s", cluster_uid=UID, binding=KEY)
    assert name == neg_name(prefix="k8s", cluster_uid=UID, binding=KEY)
    assert name.startswith("k8s-0f3c2a9e-shop-web-") and len(name) <= MAX_NAME_LENGTH
    assert RFC1035.match(name)
    assert name != neg_name(prefix="k8s", cluster_uid=UID, binding=OTHER)
    assert name != neg_name(prefix="k8s", cluster_uid="another-cluster", binding=KEY)


def test_name_trims_namespace_and_binding_fairly() -> None:
    long_ns, long_name = "n" * 63, "b" * 253
    both = neg_name(prefix="k8s", cluster_uid=UID, binding=BindingKey(long_ns, long_name))
    assert len(both) == MAX_NAME_LENGTH and RFC1035.match(both)
    _, _, ns_part, name_part, _ = both.split("-")
    assert abs(len(ns_part) - len(name_part)) <= 1  # equal shares when both are long
    # A short field keeps its length and hands its unused share to the long one.
    short = neg_name(prefix="k8s", cluster_uid=UID, binding=BindingKey("a", long_name))
    assert len(short) == MAX_NAME_LENGTH and short.split("-")[2] == "a"
    assert len(short.split("-")[3]) > len(name_part)
    # Names that only differ after the trim point still differ (the hash covers the full input).
    assert both != neg_name(prefix="k8s", cluster_uid=UID, binding=BindingKey(long_ns, long_name + "x"))
    # The longest allowed prefix still fits; dots in a binding name become hyphens.
    longest = neg_name(prefix="p" * 20, cluster_uid=UID, binding=BindingKey(long_ns, "a.b." + long_name))
    assert len(longest) == MAX_NAME_LENGTH and RFC1035.match(longest)


def test_parse_location_and_owner_description() -> None:
    assert parse_location(ref()) == (PROJECT, ZONE_A)
    with pytest.raises(InvalidTarget):
        parse_location(TargetRef("gcp", ZONE_A, "x"))
    owner = NegOwner(UID, "shop", "web")
    assert NegOwner.parse(owner.description()) == owner
    assert json.loads(owner.description())["managed-by"] == "negsync"
    for foreign in (None, "", "made by hand", '{"managed-by": "someone"}', '{"managed-by": "negsync"}'):
        assert NegOwner.parse(foreign) is None


def test_health_from_item() -> None:
    def item(*states: str) -> dict[str, Any]:
        return {"healths": [{"healthState": s, "backendService": {"backendService": f"bs-{i}"}}
                            for i, s in enumerate(states)]}

    assert health_from_item({}, health_checked=False) is Health.NO_HEALTH_CHECK
    assert health_from_item({}, health_checked=True) is Health.INITIAL
    assert health_from_item(item("HEALTHY"), health_checked=False) is Health.HEALTHY
    assert health_from_item(item("UNHEALTHY", "HEALTHY"), health_checked=False) is Health.HEALTHY
    # HEALTHY in any backend service passes the gate (ingress-gce getHealthyBackendService).
    assert health_from_item(item("HEALTHY", "DRAINING"), health_checked=False) is Health.HEALTHY
    assert health_from_item(item("UNHEALTHY", "DRAINING"), health_checked=False) is Health.DRAINING
    assert health_from_item(item("UNHEALTHY"), health_checked=False) is Health.UNHEALTHY
    assert health_from_item(item("UNKNOWN"), health_checked=False) is Health.UNKNOWN


def test_constructor_validates(make: Callable[..., GcpProvider]) -> None:
    with pytest.raises(ConfigError):
        make(cluster_uid="")
    with pytest.raises(ConfigError):
        make(rate_limit=(0.0, 1))
    with pytest.raises(ConfigError):
        make(num_retries=-1)


# -- NEG lifecycle --------------------------------------------------------------------------------
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


def test_instance_comes_from_the_provider_id_lookup(
    fake: FakeCompute, make: Callable[..., GcpProvider]
) -> None:
    provider = make(instance_for_node=lambda node: {"node-1": "gke-pool-1-abcd"}.get(node))
    groups = provider.targets_for(
        binding=KEY,
        spec=target(),
        endpoints=[
            Endpoint("10.0.0.1", 80, zone=ZONE_A, node="node-1"),
            Endpoint("10.0.0.2", 80, zone=ZONE_A, node="unknown-node"),  # no instance: skipped
            Endpoint("10.0.0.3", 80, zone="", node="node-1"),  # no zone: skipped
        ],
    )
    assert groups == {ref(ZONE_A): {TargetEndpoint("10.0.0.1", 80, "gke-pool-1-abcd")}}


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


# -- sync calls: batching ---------------------------------------------------------------------
def test_1200_endpoints_attach_in_3_calls_and_detach_in_3_calls(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(1200)
    driver.set(KEY, bspec(), endpoints)
    result = driver.run(timeout=25)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints)
    assert fake.count(ATTACH) == 3
    assert sorted(batch_sizes(fake, ATTACH)) == [200, 500, 500]
    assert result.count("registered") == 1200
    driver.set(KEY, bspec(), ())
    driver.run(timeout=25)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()
    assert fake.count(DETACH) == 3
    assert sorted(batch_sizes(fake, DETACH)) == [200, 500, 500]


def test_list_endpoints_pages_through_more_than_500(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    members = [TargetEndpoint(e.ip, e.port, e.node) for e in eps(700)]
    place(fake, members)
    provider.attach(ref(), members[:500])
    provider.attach(ref(), members[500:])
    fake.clear_calls()
    listed = provider.list_endpoints(ref())
    assert set(listed) == set(members)
    assert fake.count(LIST_EPS) == 2  # 500 + 200
    assert all(c.body == {"healthStatus": "SHOW"} for c in fake.calls if c.method_id == LIST_EPS)


def test_detach_of_an_already_gone_endpoint_detaches_the_rest(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    a, b = (TargetEndpoint(e.ip, e.port, e.node) for e in eps(2))
    place(fake, [a, b])
    provider.attach(ref(), [a, b])
    provider.detach(ref(), [b])
    provider.detach(ref(), [a, b])  # b is gone: a strict 400 for the batch, then only a
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()


GET = "compute.networkEndpointGroups.get"
AGGREGATED = "compute.networkEndpointGroups.aggregatedList"


class SteppedClock(SkipSleepClock):
    """Time moves only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 1000.0

    def now(self) -> float:
        return self.at


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


def test_concurrent_calls_use_one_http_object_per_thread(fake: FakeCompute, provider: GcpProvider) -> None:
    refs = [ref(z) for z in (ZONE_A, ZONE_B, ZONE_C)]
    for r in refs:
        provider.ensure_target(r, binding=KEY, spec=target())

    for i in range(24):
        place(fake, [TargetEndpoint(f"10.1.{i}.1", 80, f"vm-{i % 3}")], zone=parse_location(refs[i % 3])[1])

    def work(i: int) -> None:
        r = refs[i % 3]
        provider.attach(r, [TargetEndpoint(f"10.1.{i}.1", 80, f"vm-{i % 3}")])
        assert TargetEndpoint(f"10.1.{i}.1", 80, f"vm-{i % 3}") in provider.list_endpoints(r)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(work, range(24)))
    assert sum(len(fake.endpoints(PROJECT, z, name_of())) for z in (ZONE_A, ZONE_B, ZONE_C)) == 24


# -- ownership ------------------------------------------------------------------------------------
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


# -- degraded mode: bisection ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["request", "operation"])
def test_bisection_isolates_2_bad_endpoints_among_500(fake: FakeCompute, driver: Driver, mode: str) -> None:
    endpoints = eps(500)
    bad = [endpoints[17], endpoints[401]]
    fake.reject_endpoints(ips(tuple(bad)), mode=mode)
    driver.set(KEY, bspec(), endpoints)
    result = driver.run(timeout=25)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints) - ips(tuple(bad))
    assert set(result.rejected) == {TargetEndpoint(e.ip, e.port, e.node) for e in bad}
    assert result.synced and result.count("registered") == 498
    # log2(500) ~ 9 levels, two bad leaves: far fewer than 500 single calls.
    assert fake.count(ATTACH) < 45


# -- errors and retries ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "reason"), [(429, "rateLimitExceeded"), (503, "backendError"), (403, "rateLimitExceeded")]
)
def test_the_client_retries_throttling_and_5xx(
    fake: FakeCompute, provider: GcpProvider, clock: SkipSleepClock, status: int, reason: str
) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    place(fake, [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    fake.inject(ATTACH, status, count=2, reason=reason)
    provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    assert fake.count(ATTACH, status) == 2 and fake.count(ATTACH, 200) == 1
    assert len(clock.sleeps) == 2 and clock.sleeps[1] <= 4.0  # rand() * 2**n, through our clock
    # The retries reused one requestId, so a lost response cannot apply the change twice.
    ids = {c.query["requestId"][0] for c in fake.calls if c.method_id == ATTACH}
    assert len(ids) == 1
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_retries_exhausted_become_transient_and_the_reconciler_converges(
    fake: FakeCompute, driver: Driver, clock: SkipSleepClock
) -> None:
    fake.inject(ATTACH, 429, count=3)  # num_retries=2: the first call fails for good
    fake.inject(ATTACH, 503, count=3)  # and so does the next one
    driver.set(KEY, bspec(), eps(5))
    result = driver.run(timeout=20)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(eps(5))
    assert fake.count(ATTACH, 429) == 3 and fake.count(ATTACH, 503) == 3
    assert result.synced


def test_transient_error_carries_no_bisection(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    fake.inject(ATTACH, 500, count=3)
    with pytest.raises(TransientError, match="HTTP 500"):
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    fake.inject(LIST_EPS, 404, count=1)
    with pytest.raises(TargetNotFound):
        provider.list_endpoints(ref())


def test_permission_denied_is_not_retried_and_names_iam(fake: FakeCompute, provider: GcpProvider) -> None:
    fake.inject("compute.networkEndpointGroups.get", 403, reason="forbidden", message="Required 'compute.x' permission")
    with pytest.raises(ProviderError, match="IAM") as info:
        provider.ensure_target(ref(), binding=KEY, spec=target())
    assert not isinstance(info.value, TransientError)
    assert fake.count("compute.networkEndpointGroups.get") == 1


def test_retry_after_header_reaches_the_transient_error() -> None:
    response = httplib2.Response({"status": 429, "retry-after": "7"})
    body = json.dumps({"error": {"code": 429, "message": "slow down", "errors": [{"reason": "rateLimitExceeded"}]}})
    error = _from_http_error(HttpError(response, body.encode()), what="attach", conflict_ok=False)
    assert isinstance(error, TransientError) and error.retry_after == 7.0


def test_retry_after_as_an_http_date_reaches_the_transient_error() -> None:
    # RFC 9110 §10.2.3 allows an HTTP-date; it was dropped (None) before negsync.core.backoff read it.
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    response = httplib2.Response({"status": 503, "retry-after": when})
    body = json.dumps({"error": {"code": 503, "message": "backend unavailable", "errors": [{"reason": "backendError"}]}})
    error = _from_http_error(HttpError(response, body.encode()), what="attach", conflict_ok=False)
    assert isinstance(error, TransientError) and error.retry_after is not None and 55 <= error.retry_after <= 60


def test_operation_errors_are_mapped(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    member = [TargetEndpoint("10.0.0.1", 8080, "vm-1")]
    place(fake, member)
    fake.fail_next_operation("RESOURCE_NOT_READY", "not ready", http_status=400, method_id=ATTACH)
    with pytest.raises(TransientError, match="RESOURCE_NOT_READY"):
        provider.attach(ref(), member)
    fake.fail_next_operation("INVALID_FIELD_VALUE", "bad endpoint", http_status=400, method_id=ATTACH)
    with pytest.raises(RejectedError, match="INVALID_FIELD_VALUE"):
        provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()
    provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_an_operation_past_its_deadline_is_transient(
    fake: FakeCompute, make: Callable[..., GcpProvider]
) -> None:
    provider = make(operation_timeout=0.3)
    provider.ensure_target(ref(), binding=KEY, spec=target())
    place(fake, [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    fake.operation_delay = math.inf
    fake.wait_timeout = 0.1
    started = time.monotonic()
    with pytest.raises(TransientError, match="not done after"):
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    assert time.monotonic() - started < 2.0
    assert fake.count("compute.zoneOperations.wait") >= 2
    fake.complete_operations()
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_the_rate_limit_paces_every_attempt(fake: FakeCompute, make: Callable[..., GcpProvider]) -> None:
    make().ensure_target(ref(), binding=KEY, spec=target())
    provider = make(rate_limit=(20.0, 2))
    fake.clear_calls()
    fake.inject(LIST_EPS, 429, count=1)  # the client's retry takes a token too
    started = time.monotonic()
    for _ in range(7):
        provider.list_endpoints(ref())
    elapsed = time.monotonic() - started
    assert fake.count(None) == 8 == provider.bucket(PROJECT).granted
    assert elapsed >= (8 - 2) / 20 - 0.02  # burst 2, then 20 per second


# -- deletion (finalizer) -------------------------------------------------------------------------
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


# -- health and the readiness gate -----------------------------------------------------------------
def test_health_feeds_the_readiness_gate(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(2)
    members = {TargetEndpoint(e.ip, e.port, e.node) for e in endpoints}
    driver.set(KEY, bspec(gate=True), endpoints)
    # No backend service, no health check: the gate passes with reason NoHealthCheck.
    result = driver.run(until=lambda r: r.synced and set(r.health.values()) == {Health.NO_HEALTH_CHECK})
    assert set(result.health) == members
    fake.set_backend(PROJECT, ZONE_A, name_of())
    driver.reconciler.invalidate()  # all members passed the gate, so the reconciler stopped polling
    result = driver.run(until=lambda r: set(r.health.values()) == {Health.UNKNOWN})
    assert result.count("healthy") == 0
    for e in endpoints:
        fake.set_health(PROJECT, ZONE_A, name_of(), e.ip, e.port, "HEALTHY")
    result = driver.run(until=lambda r: set(r.health.values()) == {Health.HEALTHY})
    assert result.count("healthy") == 2
    fake.set_health(PROJECT, ZONE_A, name_of(), endpoints[0].ip, endpoints[0].port, "UNHEALTHY")
    driver.reconciler.invalidate()
    assert driver.reconciler.reconcile(KEY).health[min(members)] is Health.UNHEALTHY


def test_unprobed_endpoints_of_a_health_checked_neg_do_not_pass_the_gate(
    make: Callable[..., GcpProvider],
) -> None:
    with FakeCompute(default_health=None) as fake:
        new_project(fake)
        provider = make(compute_endpoint=fake.api_endpoint, credentials=fake.credentials())
        provider.ensure_target(ref(), binding=KEY, spec=target())
        a, b = (TargetEndpoint(e.ip, e.port, e.node) for e in eps(2))
        place(fake, [a, b])
        provider.attach(ref(), [a, b])
        fake.set_backend(PROJECT, ZONE_A, name_of())
        assert provider.list_endpoints(ref()) == {a: Health.NO_HEALTH_CHECK, b: Health.NO_HEALTH_CHECK}
        fake.set_health(PROJECT, ZONE_A, name_of(), a.ip, a.port, "HEALTHY")
        assert provider.list_endpoints(ref()) == {a: Health.HEALTHY, b: Health.INITIAL}
        # The kube layer can say a health-checked backend uses the NEG before any probe reports.
        known = make(compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                     health_check_known=lambda r: True)
        fake.clear_backend(PROJECT, ZONE_A, name_of())
        assert set(known.list_endpoints(ref()).values()) == {Health.INITIAL}


def test_threads_do_not_share_http_objects(provider: GcpProvider) -> None:
    seen: list[object] = []  # the objects themselves (thread idents and ids can be reused)
    lock = threading.Lock()
    barrier = threading.Barrier(4)  # all four threads alive at once

    def grab() -> None:
        http = provider._http(PROJECT)
        with lock:
            seen.append(http)
        barrier.wait(5)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(h) for h in seen}) == 4
    assert provider._http(PROJECT) is provider._http(PROJECT)


# -- issue 13: errors classified as GCE means them ---------------------------------------------------
def test_resource_not_ready_is_transient_never_a_rejection(fake: FakeCompute, provider: GcpProvider) -> None:
    # terraform-provider-google isSubnetworkUnreadyError: 400 resourceNotReady is retried.
    provider.ensure_target(ref(), binding=KEY, spec=target())
    member = [TargetEndpoint("10.0.0.1", 8080, "vm-1")]
    place(fake, member)
    fake.inject(ATTACH, 400, reason="resourceNotReady",
                message="The resource 'projects/p/regions/us-central1/subnetworks/nodes' is not ready")
    with pytest.raises(TransientError) as caught:
        provider.attach(ref(), member)
    assert not isinstance(caught.value, RejectedError)
    provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_resource_not_ready_never_blocks_an_endpoint(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(4)
    fake.inject(ATTACH, 400, count=3, reason="resourceNotReady")
    driver.set(KEY, bspec(), endpoints)
    result = driver.run(until=lambda r: r.synced and r.count("registered") == 4)
    assert not result.rejected  # no bisection of a batch that was never wrong


def test_quota_exceeded_is_its_own_error_and_a_per_minute_quota_is_not(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    fake.inject(INSERT, 403, reason="quotaExceeded",
                message="Quota 'NETWORK_ENDPOINT_GROUPS' exceeded.  Limit: 100.0 globally.")
    with pytest.raises(QuotaExceeded) as caught:
        provider.ensure_target(ref(), binding=KEY, spec=target())
    assert caught.value.retry_after == QUOTA_RETRY_AFTER  # slow retry
    # is403QuotaExceededPerMinuteError: a per-minute rate quota clears by waiting.
    per_minute = ("Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' "
                  "of service 'compute.googleapis.com' for consumer 'project_number:1'.")
    fake.inject(INSERT, 403, reason="quotaExceeded", message=per_minute)
    with pytest.raises(TransientError) as transient:
        provider.ensure_target(ref(), binding=KEY, spec=target())
    assert not isinstance(transient.value, QuotaExceeded)
    # The operation form (QUOTA_EXCEEDED, as resource quotas fail instance inserts).
    fake.neg_quota = 0
    with pytest.raises(QuotaExceeded, match="NETWORK_ENDPOINT_GROUPS"):
        provider.ensure_target(ref(), binding=KEY, spec=target())


def test_quota_exceeded_surfaces_on_the_result_and_the_status(fake: FakeCompute, driver: Driver) -> None:
    from negsync.kube.status import binding_status

    fake.neg_quota = 0
    driver.set(KEY, bspec(), eps(2))
    result = driver.run(until=lambda r: bool(r.quota_exceeded))
    assert "NETWORK_ENDPOINT_GROUPS" in result.quota_exceeded[0]
    status = binding_status(generation=1, previous={}, result=result)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "QuotaExceeded"
    fake.neg_quota = None
    result = driver.run(until=lambda r: r.synced and r.count("registered") == 2)
    assert not result.quota_exceeded


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


def test_a_404_about_an_instance_is_a_rejection_not_a_missing_neg(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    good, gone = TargetEndpoint("10.0.0.1", 8080, "vm-1"), TargetEndpoint("10.0.0.2", 8080, "vm-gone")
    place(fake, [good])
    with pytest.raises(RejectedError, match="instance"):
        provider.attach(ref(), [good, gone])
    fake.remove_neg(PROJECT, ZONE_A, name_of())
    with pytest.raises(TargetNotFound):
        provider.attach(ref(), [good])


# -- issue 13: health read as GKE reads it ---------------------------------------------------------------
def test_healthy_in_any_backend_service_passes_and_forwarding_rule_entries_do_not_count(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    a, b = (TargetEndpoint(e.ip, e.port, e.node) for e in eps(2))
    place(fake, [a, b])
    provider.attach(ref(), [a, b])
    # Only a passthrough forwarding rule reports health: not a backend service, so not health-checked.
    fake.add_forwarding_rule(PROJECT, ZONE_A, name_of(), "ilb")
    fake.set_health(PROJECT, ZONE_A, name_of(), a.ip, a.port, "HEALTHY")
    assert provider.list_endpoints(ref()) == {a: Health.NO_HEALTH_CHECK, b: Health.NO_HEALTH_CHECK}
    # Two backend services: HEALTHY in one of them is enough, whatever the other says.
    fake.set_backend(PROJECT, ZONE_A, name_of(), backend_service="external")
    fake.set_backend(PROJECT, ZONE_A, name_of(), backend_service="internal")
    fake.set_health(PROJECT, ZONE_A, name_of(), a.ip, a.port, "DRAINING", backend_service="internal")
    fake.set_health(PROJECT, ZONE_A, name_of(), b.ip, b.port, "UNHEALTHY")
    listed = provider.list_endpoints(ref())
    assert listed == {a: Health.HEALTHY, b: Health.UNHEALTHY}


def test_a_draining_member_is_a_member_and_is_not_attached_again(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(2)
    driver.set(KEY, bspec(), endpoints)
    driver.run(until=lambda r: r.synced and r.count("registered") == 2)
    fake.set_backend(PROJECT, ZONE_A, name_of())
    fake.set_health(PROJECT, ZONE_A, name_of(), endpoints[0].ip, endpoints[0].port, "DRAINING")
    attaches = fake.count(ATTACH)
    driver.reconciler.invalidate()
    for _ in range(3):
        result = driver.run()
    assert fake.count(ATTACH) == attaches  # ingress-gce: every listed endpoint is present
    assert result.count("draining") == 1


def test_a_detached_endpoint_draining_in_the_list_is_not_detached_again(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(3)
    driver.set(KEY, bspec(), endpoints)
    driver.run(until=lambda r: r.synced and r.count("registered") == 3)
    fake.set_backend(PROJECT, ZONE_A, name_of())
    driver.set(KEY, bspec(), endpoints[1:])
    driver.run(until=lambda r: r.synced and fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints[1:]))
    detaches = fake.count(DETACH)
    driver.reconciler.invalidate()
    result = driver.run()
    assert result.synced and fake.count(DETACH) == detaches and fake.count(DETACH, 400) == 0


# -- issue 13: endpoints GCE removes by itself ---------------------------------------------------------
def test_endpoints_of_a_stopped_vm_are_reattached_within_one_member_listing_period(fake: FakeCompute) -> None:
    from negsync.core.clock import VirtualClock

    clock = VirtualClock(start=1000.0)
    provider = GcpProvider(cluster_uid=UID, compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                           num_retries=0, operation_timeout=5.0, rate_limit=(1000.0, 1000), http_timeout=5.0)
    driver = Driver(provider, fake)
    driver.reconciler = Reconciler(provider=provider, source=driver.desired.get,
                                   enqueue=lambda key, delay, priority: None, clock=clock, seed=1)
    try:
        endpoints = eps(3, node="vm-preemptible")
        driver.set(KEY, bspec(), endpoints)
        result = driver.run(until=lambda r: r.synced and r.count("registered") == 3)
        assert result.requeue_after is not None and result.requeue_after <= 60.0  # the default period
        # Preempted: GCE drops the VM's endpoints; it comes back with the same name and pods.
        fake.stop_instance(PROJECT, ZONE_A, "vm-preemptible")
        fake.start_instance(PROJECT, ZONE_A, "vm-preemptible")
        assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()
        attaches = fake.count(ATTACH)
        clock.advance(59.0)
        driver.reconciler.reconcile(KEY)
        assert fake.count(ATTACH) == attaches  # the member list is still fresh
        clock.advance(2.0)
        driver.run(until=lambda r: r.synced and r.count("registered") == 3)
        assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints)
    finally:
        driver.close()


def test_member_list_period_is_a_flag() -> None:
    import argparse

    from negsync.app import Settings, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert Settings.from_args(parser.parse_args([])).member_list_period == 60.0
    assert Settings.from_args(parser.parse_args(["--member-list-period", "30s"])).member_list_period == 30.0
    with pytest.raises(ConfigError, match="--member-list-period"):
        Settings.from_args(parser.parse_args(["--member-list-period", "0"]))


# -- issue 13: one NEG per (zone, subnetwork) -------------------------------------------------------------
def test_nodes_of_a_non_default_subnetwork_get_a_neg_of_their_own(fake: FakeCompute) -> None:
    # An auto-mode-like network: "default" subnetwork, plus the node pool's own "pool-b".
    fake.add_subnetwork(PROJECT, "us-central1", "default", cidr="172.16.0.0/16")
    fake.add_subnetwork(PROJECT, "us-central1", "pool-b", cidr="192.168.0.0/16")
    fake.add_instance(PROJECT, ZONE_A, "n-default", subnetwork="default", alias_ranges=["172.16.1.0/24"])
    fake.add_instance(PROJECT, ZONE_A, "n-pool-b", subnetwork="pool-b", alias_ranges=["192.168.1.0/24"])
    subnets = {"n-default": "", "n-pool-b": "pool-b"}
    provider = GcpProvider(cluster_uid=UID, compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                           num_retries=0, operation_timeout=5.0, rate_limit=(1000.0, 1000), http_timeout=5.0,
                           subnet_for_node=subnets.get)
    driver = Driver(provider)  # the VMs are set up above
    try:
        endpoints = (Endpoint("172.16.1.5", 8080, ZONE_A, "n-default"), Endpoint("192.168.1.5", 8080, ZONE_A, "n-pool-b"))
        driver.set(KEY, bspec(subnetwork=""), endpoints)
        result = driver.run(until=lambda r: r.synced and r.count("registered") == 2)
        assert not result.rejected
        other = neg_name(prefix="k8s", cluster_uid=UID, binding=KEY, subnet="pool-b")
        assert other != name_of() and len(other) <= MAX_NAME_LENGTH and RFC1035.match(other)
        assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("172.16.1.5", 8080)}
        assert fake.endpoints(PROJECT, ZONE_A, other) == {("192.168.1.5", 8080)}
        assert fake.neg(PROJECT, ZONE_A, other)["subnetwork"].endswith("/subnetworks/pool-b")
        # After a restart both NEGs are found again (every name of the binding ends with its hash).
        fresh = GcpProvider(cluster_uid=UID, compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                            num_retries=0, operation_timeout=5.0, rate_limit=(1000.0, 1000), http_timeout=5.0)
        assert {r.name for r in fresh.existing_targets(binding=KEY, spec=target(subnetwork=""))} == {name_of(), other}
    finally:
        driver.close()


def test_the_provider_waits_again_when_zone_operations_wait_returns_early(fake: FakeCompute,
                                                                          provider: GcpProvider) -> None:
    fake.wait_returns_early = True  # the reference: wait may return before the operation is DONE
    fake.operation_delay = 0.2
    provider.ensure_target(ref(), binding=KEY, spec=target())
    member = [TargetEndpoint("10.0.0.1", 8080, "vm-1")]
    place(fake, member)
    provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}
    assert fake.count("compute.zoneOperations.wait") >= 2


def test_the_controller_wires_node_subnets_into_the_provider(fake: FakeCompute) -> None:
    import argparse

    from negsync.app import NodeInstances, Settings, add_arguments, build_provider
    from negsync.kube.caches import Caches, decode_node

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--provider", "gcp", "--gcp-compute-endpoint", fake.api_endpoint, "--gcp-anonymous",
                              "--cluster-uid", UID])
    instances = NodeInstances()
    provider = build_provider(Settings.from_args(args), api_client=None, clock=RealClock(), instances=instances)
    assert isinstance(provider, GcpProvider)
    instances.caches = Caches()
    labels = {"topology.kubernetes.io/zone": ZONE_A, "cloud.google.com/gke-node-pool-subnet": "pool-b"}
    instances.caches.nodes.put(("", "n-b"), decode_node(
        {"metadata": {"name": "n-b", "labels": labels}, "spec": {"providerID": f"gce://{PROJECT}/{ZONE_A}/vm-b"}}))
    endpoint = Endpoint("192.168.1.5", 8080, ZONE_A, "n-b")
    assert provider.subnet_of(endpoint, target(subnetwork="")) == "pool-b"
    assert provider.subnet_of(endpoint, target(subnetwork="pool-b")) == ""  # pinned: the binding's own NEG
    groups = provider.targets_for(binding=KEY, spec=target(subnetwork=""), endpoints=[endpoint])
    assert [r.name for r in groups] == [neg_name(prefix="k8s", cluster_uid=UID, binding=KEY, subnet="pool-b")]
    assert groups[next(iter(groups))] == {TargetEndpoint("192.168.1.5", 8080, "vm-b")}


def test_a_401_with_credentials_that_cannot_refresh_is_a_provider_error_not_a_crash(
        make: Callable[..., GcpProvider]) -> None:
    """Seen in the walkthrough: anonymous credentials against an API that wants a token raised
    google.auth's InvalidOperation out of the reconcile as a traceback."""
    import google.auth.credentials

    anonymous = make(credentials=google.auth.credentials.AnonymousCredentials())
    with pytest.raises(ProviderError, match="credentials"):
        anonymous.existing_targets(binding=KEY, spec=target())
