"""The GCP NEG provider through the real google-api-python-client against the fake Compute API.

Nothing in the client is patched: requests go over HTTP to :class:`FakeCompute` on 127.0.0.1.
The only seam is the provider's clock, whose ``sleep`` (used for the client's own retry back-off)
records instead of sleeping, so retry tests stay fast and can assert the back-off happened.
Reconciler-level tests drive the real :class:`Reconciler` synchronously (``Driver``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httplib2
import pytest
from google.auth.credentials import AnonymousCredentials
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
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.gcp import (
    MAX_NAME_LENGTH,
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


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as f:
        yield f


@pytest.fixture
def clock() -> SkipSleepClock:
    return SkipSleepClock()


@pytest.fixture
def make(fake: FakeCompute, clock: SkipSleepClock) -> Callable[..., GcpProvider]:
    def build(**overrides: Any) -> GcpProvider:
        kwargs: dict[str, Any] = {
            "cluster_uid": UID,
            "compute_endpoint": fake.api_endpoint,
            "credentials": AnonymousCredentials(),
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
    """The real reconciler, reconciled by hand until a condition holds (no engine, no queue)."""

    def __init__(self, provider: GcpProvider) -> None:
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
def driver(provider: GcpProvider) -> Iterator[Driver]:
    d = Driver(provider)
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
        return {"healths": [{"healthState": s} for s in states]}

    assert health_from_item({}, health_checked=False) is Health.NO_HEALTH_CHECK
    assert health_from_item({}, health_checked=True) is Health.INITIAL
    assert health_from_item(item("HEALTHY"), health_checked=False) is Health.HEALTHY
    assert health_from_item(item("UNHEALTHY", "HEALTHY"), health_checked=False) is Health.HEALTHY
    assert health_from_item(item("HEALTHY", "DRAINING"), health_checked=False) is Health.DRAINING
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

    def work(i: int) -> None:
        r = refs[i % 3]
        provider.attach(r, [TargetEndpoint(f"10.1.{i}.1", 80, "vm")])
        assert TargetEndpoint(f"10.1.{i}.1", 80, "vm") in provider.list_endpoints(r)

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


def test_operation_errors_are_mapped(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    member = [TargetEndpoint("10.0.0.1", 8080, "vm-1")]
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
        provider = make(compute_endpoint=fake.api_endpoint)
        provider.ensure_target(ref(), binding=KEY, spec=target())
        a, b = (TargetEndpoint(e.ip, e.port, e.node) for e in eps(2))
        provider.attach(ref(), [a, b])
        fake.set_backend(PROJECT, ZONE_A, name_of())
        assert provider.list_endpoints(ref()) == {a: Health.NO_HEALTH_CHECK, b: Health.NO_HEALTH_CHECK}
        fake.set_health(PROJECT, ZONE_A, name_of(), a.ip, a.port, "HEALTHY")
        assert provider.list_endpoints(ref()) == {a: Health.HEALTHY, b: Health.INITIAL}
        # The kube layer can say a health-checked backend uses the NEG before any probe reports.
        known = make(compute_endpoint=fake.api_endpoint, health_check_known=lambda r: True)
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
