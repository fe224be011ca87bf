"""The reconciler on the in-memory provider: convergence, coalescing, priority, bisection, back-off."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from negsync.core.bindings import BindingSpec, MemoryTarget
from negsync.core.clock import VirtualClock
from negsync.core.engine import Engine
from negsync.core.latency import Fixed
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.core.observers import Observer
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding, ReconcileResult
from negsync.errors import TransientError
from negsync.providers.memory import MemoryOwnershipStore, MemoryProvider
from tests.support.waiting import wait_for

KEY = BindingKey("shop", "web")
REF = TargetRef("memory", "local", "web")


def spec(*, shared: bool = False, gate: bool = False) -> BindingSpec:
    target = MemoryTarget(name="web", shared=shared)
    return BindingSpec(service_name="web", service_port="http", target=target, readiness_gate=gate)


def endpoints(count: int, *, start: int = 0) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", port=8080) for i in range(start, start + count))


class World:
    """Desired state a test mutates, and an engine reconciling it into a memory provider."""

    def __init__(self, provider: MemoryProvider, *, shared: bool = False, **kwargs: object) -> None:
        self.provider = provider
        self.desired: dict[BindingKey, DesiredBinding] = {}
        self.results: list[ReconcileResult] = []
        self.shared = shared
        self.ownership = MemoryOwnershipStore()

        def factory(enqueue: Callable[[BindingKey, float, bool], None]) -> Reconciler:
            return Reconciler(provider=provider, enqueue=enqueue,
                              ownership=self.ownership, seed=1, **kwargs)  # type: ignore[arg-type]

        self.engine = Engine(reconciler_factory=factory, desired=self.desired.get, on_result=self.results.append,
                             workers=2)

    def set(self, eps: tuple[Endpoint, ...], *, key: BindingKey = KEY, priority: bool = False) -> None:
        self.desired[key] = DesiredBinding(key=key, spec=spec(shared=self.shared), endpoints=eps)
        self.engine.enqueue(key, 0.0, priority)


@pytest.fixture
def world() -> World:
    w = World(MemoryProvider())
    w.engine.start()
    yield w
    w.provider.resume()
    w.engine.stop(timeout=5)


def members(eps: tuple[Endpoint, ...]) -> set[TargetEndpoint]:
    return {TargetEndpoint(e.ip, e.port) for e in eps}


def test_converges_attach_then_detach(world: World) -> None:
    world.set(endpoints(3))
    wait_for(lambda: world.provider.members(REF) == members(endpoints(3)))
    world.set(endpoints(2, start=1))
    wait_for(lambda: world.provider.members(REF) == members(endpoints(2, start=1)))
    wait_for(lambda: bool(world.results) and world.results[-1].synced)


def test_changes_arriving_during_a_call_coalesce_into_the_fewest_calls(world: World) -> None:
    world.provider.pause()
    world.set(endpoints(1))
    wait_for(lambda: world.engine.reconciler.in_flight() == 1)
    # 1,000 changes arrive while that one call is in flight, each one enqueueing the key.
    for n in range(1, 1001):
        world.set(endpoints(1 + n))
    wait_for(lambda: len(world.engine.queue) == 0 and not world.engine.queue.is_processing(KEY))
    assert world.provider.count("attach") == 0  # the first call is still held
    world.provider.resume()
    wait_for(lambda: world.provider.members(REF) == members(endpoints(1001)))
    # One held call, then ceil(1000 / 500) = 2 — not 1,000.
    assert world.provider.count("attach") == 1 + 2
    assert [c.size for c in world.provider.calls if c.operation == "attach"] == [1, 500, 500]


def test_a_detach_overtakes_an_attach_in_flight() -> None:
    provider = MemoryProvider()
    w = World(provider)
    w.engine.start()
    try:
        w.set(endpoints(2))
        wait_for(lambda: provider.members(REF) == members(endpoints(2)))
        gate = threading.Event()
        original = provider.attach

        def slow_attach(ref: TargetRef, batch: list[TargetEndpoint]) -> None:
            gate.wait(5)
            original(ref, batch)

        provider.attach = slow_attach  # type: ignore[method-assign]
        w.set(endpoints(3))  # attach 10.0.0.2 — held
        wait_for(lambda: w.engine.reconciler.in_flight() == 1)
        w.set(endpoints(2, start=1)[1:] + endpoints(1, start=2), priority=True)  # 10.0.0.0 and .1 terminate
        wait_for(lambda: TargetEndpoint("10.0.0.0", 8080) not in provider.members(REF))
        assert TargetEndpoint("10.0.0.2", 8080) not in provider.members(REF)  # attach still held
        gate.set()
        wait_for(lambda: provider.members(REF) == {TargetEndpoint("10.0.0.2", 8080)})
    finally:
        gate.set()
        w.engine.stop(timeout=5)


def test_a_rejected_batch_is_bisected_and_the_rest_attached(world: World) -> None:
    eps = endpoints(500)
    bad = {TargetEndpoint(eps[17].ip, 8080), TargetEndpoint(eps[401].ip, 8080)}
    world.provider.reject(bad)
    world.set(eps)
    wait_for(lambda: world.provider.members(REF) == members(eps) - bad)
    wait_for(lambda: bool(world.results) and set(world.results[-1].rejected) == bad)
    attach_calls = world.provider.count("attach")
    assert attach_calls < 40  # bisection: ~2 * log2(500) + good halves, not 500 single calls


def test_transient_errors_back_off_and_converge() -> None:
    provider = MemoryProvider()
    provider.fail_next("attach", TransientError("throttled", retry_after=0.05), count=2)
    w = World(provider, retry_base=0.01, retry_max=0.1)
    w.engine.start()
    try:
        w.set(endpoints(5))
        wait_for(lambda: provider.members(REF) == members(endpoints(5)))
        assert provider.count("attach") == 1
    finally:
        w.engine.stop(timeout=5)


def test_min_interval_bounds_the_call_rate() -> None:
    provider = MemoryProvider()
    w = World(provider, min_interval=0.3)
    w.engine.start()
    try:
        w.set(endpoints(1))
        wait_for(lambda: provider.count("attach") == 1)
        for n in range(2, 30):
            w.set(endpoints(n))
            time.sleep(0.005)
        wait_for(lambda: provider.members(REF) == members(endpoints(29)))
        starts = [c.started for c in provider.calls if c.operation == "attach"]
        assert len(starts) <= 3
        assert all(b - a >= 0.29 for a, b in itertools.pairwise(starts))
    finally:
        w.engine.stop(timeout=5)


def test_a_shared_target_only_loses_members_negsync_registered() -> None:
    provider = MemoryProvider()
    foreign = {TargetEndpoint("192.168.9.9", 80)}
    provider.create_foreign(REF, foreign, owner=None)
    w = World(provider, shared=True)
    w.engine.start()
    try:
        w.set(endpoints(2))
        wait_for(lambda: provider.members(REF) == foreign | members(endpoints(2)))
        assert w.ownership.owned(KEY, REF) == frozenset(members(endpoints(2)))
        w.set(())
        wait_for(lambda: provider.members(REF) == foreign)
        assert w.ownership.owned(KEY, REF) == frozenset()
    finally:
        w.engine.stop(timeout=5)


def test_two_bindings_on_one_unshared_target_conflict_instead_of_fighting(world: World) -> None:
    other = BindingKey("shop", "web-copy")
    world.set(endpoints(2))
    wait_for(lambda: provider_has(world, 2))
    world.set(endpoints(3, start=10), key=other)
    wait_for(lambda: any(r.key == other and r.conflicts for r in world.results))
    assert world.provider.members(REF) == members(endpoints(2))


def provider_has(world: World, count: int) -> bool:
    return len(world.provider.members(REF)) == count


def test_deleting_a_binding_detaches_then_removes_its_target(world: World) -> None:
    world.set(endpoints(4))
    wait_for(lambda: provider_has(world, 4))
    world.desired[KEY] = DesiredBinding(key=KEY, spec=spec(), endpoints=endpoints(4), deleting=True)
    world.engine.enqueue(KEY)
    wait_for(lambda: any(r.finalized for r in world.results))
    assert REF not in world.provider.targets()


def test_bindings_that_come_and_go_leave_no_per_key_state(world: World) -> None:
    # Issue 18 (soak): per-target write counters and per-binding entries outlived their binding.
    reconciler = world.engine.reconciler
    for n in range(6):
        key = BindingKey("shop", f"web-{n}")
        world.desired[key] = DesiredBinding(
            key=key, spec=BindingSpec(service_name="web", service_port="http", target=MemoryTarget(name=f"web-{n}")),
            endpoints=endpoints(2, start=10 * n))
        world.engine.enqueue(key)
    wait_for(lambda: reconciler.in_flight() == 0 and len(world.provider.targets()) == 6
               and all(len(world.provider.members(r)) == 2 for r in world.provider.targets()))
    for n in range(6):
        key = BindingKey("shop", f"web-{n}")
        if n % 2:  # finalized through deletion: detach, delete the target
            world.desired[key] = DesiredBinding(key=key, spec=world.desired[key].spec, deleting=True)
        else:  # gone from the caches without a finalizer
            del world.desired[key]
        world.engine.enqueue(key)
    wait_for(lambda: sum(1 for r in world.results if r.finalized) >= 6 and not reconciler.busy())
    with reconciler._lock:
        assert reconciler._targets == {}
        assert reconciler._known == {}
        assert reconciler._cache._writes == {}


def test_attach_times_live_until_the_first_health_read_that_can_time_them() -> None:
    # Issue 18: an attach time per member waited for a healthy report that never comes where the LB
    # checks no health (~160 B per endpoint at 150k endpoints).  It is kept for every binding (the
    # calibration timeline and the attach→healthy metric need it, gate or not) until the first
    # listing that shows the member healthy — or shows that no health check exists.
    clock = VirtualClock()
    healthy: list[TargetEndpoint] = []

    class Healthy(Observer):
        def became_healthy(self, *, ref: TargetRef, endpoint: TargetEndpoint, seconds: float) -> None:
            healthy.append(endpoint)

    for checking in (True, False):
        healthy.clear()
        desired = {KEY: DesiredBinding(key=KEY, spec=spec(gate=False), endpoints=endpoints(3))}
        reconciler = Reconciler(provider=MemoryProvider(clock=clock, health_checking=checking),
                                enqueue=lambda *a: None, clock=clock, observer=Healthy(), call_workers=1,
                                member_list_period=60.0)
        try:
            reconciler.reconcile(KEY, desired.get(KEY))
            deadline = time.monotonic() + 5
            while reconciler.busy():
                assert time.monotonic() < deadline
                time.sleep(0.002)
            assert len(reconciler._attach_times) == 3  # timed from the attach's completion
            clock.advance(60.0)
            reconciler.reconcile(KEY, desired.get(KEY))  # the member listing period: a real listing
            assert len(reconciler._attach_times) == 0
            assert sorted(healthy) == (sorted(members(endpoints(3))) if checking else [])
        finally:
            reconciler.close(wait=False)


class ListCountingProvider(MemoryProvider):
    """The memory provider, counting member listings (its ``calls`` log records writes only)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.lists = 0

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        self.lists += 1
        return super().list_endpoints(ref)


def direct(
    provider: MemoryProvider, clock: VirtualClock, **kwargs: object
) -> tuple[Reconciler, dict[BindingKey, DesiredBinding]]:
    """A reconciler driven by hand: reconcile, then wait for its transaction, no engine in between."""
    desired: dict[BindingKey, DesiredBinding] = {}
    reconciler = Reconciler(provider=provider, enqueue=lambda *_: None, clock=clock, seed=1,
                            **kwargs)  # type: ignore[arg-type]
    return reconciler, desired


def settle(reconciler: Reconciler) -> None:
    wait_for(lambda: not reconciler.busy(), 5, "transaction finished", interval=0.002)


def test_own_writes_update_the_member_cache_so_no_listing_follows_them() -> None:
    # Issue 18: every own write dropped the cache, so each churn round cost a listing per target.
    clock = VirtualClock()
    provider = ListCountingProvider(clock=clock)
    reconciler, desired = direct(provider, clock, resync_period=300.0)
    try:
        for round_ in range(5):
            desired[KEY] = DesiredBinding(key=KEY, spec=spec(), endpoints=endpoints(10, start=round_ * 3))
            reconciler.reconcile(KEY, desired.get(KEY))
            settle(reconciler)
            clock.advance(1.0)
        result = reconciler.reconcile(KEY, desired.get(KEY))
        assert provider.members(REF) == members(endpoints(10, start=12))
        assert provider.lists == 1  # the first reconcile's listing only
        assert result.synced and result.count("registered") == 10
    finally:
        reconciler.close()


def test_the_member_cache_is_listed_again_after_the_resync_period_and_after_an_error() -> None:
    clock = VirtualClock()
    provider = ListCountingProvider(clock=clock)
    reconciler, desired = direct(provider, clock, resync_period=60.0, retry_base=0.0, retry_max=0.0)
    try:
        desired[KEY] = DesiredBinding(key=KEY, spec=spec(), endpoints=endpoints(3))
        reconciler.reconcile(KEY, desired.get(KEY))
        settle(reconciler)
        clock.advance(59.0)
        reconciler.reconcile(KEY, desired.get(KEY))
        assert provider.lists == 1  # own write applied; the listing is 59 s old
        clock.advance(1.0)
        reconciler.reconcile(KEY, desired.get(KEY))
        assert provider.lists == 2  # the resync period forces a real listing
        # Somebody else removed a member: the resync listing sees it and it is re-attached.
        provider.detach(REF, [TargetEndpoint(endpoints(3)[0].ip, 8080)])
        clock.advance(60.0)
        reconciler.reconcile(KEY, desired.get(KEY))
        settle(reconciler)
        assert provider.members(REF) == members(endpoints(3))
        # A failed call leaves the outcome unknown: the next reconcile lists.
        lists = provider.lists
        provider.fail_next("attach", TransientError("timed out"))
        desired[KEY] = DesiredBinding(key=KEY, spec=spec(), endpoints=endpoints(4))
        reconciler.reconcile(KEY, desired.get(KEY))
        settle(reconciler)
        reconciler.reconcile(KEY, desired.get(KEY))
        assert provider.lists == lists + 1
    finally:
        reconciler.close()


def test_gate_health_polls_list_at_most_once_per_poll_interval() -> None:
    clock = VirtualClock()
    provider = ListCountingProvider(clock=clock, attach_delay=Fixed(30.0))
    reconciler, desired = direct(provider, clock, health_poll_interval=5.0)
    try:
        desired[KEY] = DesiredBinding(key=KEY, spec=spec(gate=True), endpoints=endpoints(3))
        reconciler.reconcile(KEY, desired.get(KEY))
        settle(reconciler)
        for _ in range(20):  # many reconciles within one poll interval (other endpoints changing)
            clock.advance(0.2)
            reconciler.reconcile(KEY, desired.get(KEY))
        assert provider.lists == 1
        clock.advance(1.0)  # 5 s after the listing
        reconciler.reconcile(KEY, desired.get(KEY))
        reconciler.reconcile(KEY, desired.get(KEY))
        assert provider.lists == 2
    finally:
        reconciler.close()


def test_failed_calls_back_off_within_the_shared_rule_and_honour_retry_after() -> None:
    # negsync.core.backoff with jitter 1: the n-th failure waits [d, 2d], d = min(cap, base × 2^(n-1)),
    # a longer Retry-After wins, and nothing exceeds the cap.
    clock = VirtualClock()
    provider = MemoryProvider(clock=clock, call_latency=Fixed(0.0))
    provider.fail_next("attach", TransientError("HTTP 503"), count=1)
    provider.fail_next("attach", TransientError("HTTP 429", retry_after=50.0), count=1)
    provider.fail_next("attach", TransientError("HTTP 503"), count=4)
    desired = {KEY: DesiredBinding(key=KEY, spec=spec(), endpoints=endpoints(1))}
    delays: list[float] = []
    reconciler = Reconciler(provider=provider, enqueue=lambda _k, delay, _p: delays.append(delay),
                            clock=clock, seed=1, retry_base=5.0, retry_max=60.0, health_poll_interval=1000.0,
                            resync_period=1000.0)
    try:
        waits = []
        for _ in range(6):
            delays.clear()
            reconciler.reconcile(KEY, desired.get(KEY))
            settle(reconciler)
            waits.append(max(delays))
            clock.advance(max(delays))
        assert waits[1] == 50.0, waits  # the server's Retry-After, longer than [10, 20]
        for n, wait in enumerate(waits, start=1):
            floor = min(60.0, 5.0 * 2 ** (n - 1))
            if n != 2:
                assert floor <= wait <= min(60.0, 2 * floor), (n, waits)
        assert waits[-1] == 60.0  # [60, 120] capped
        reconciler.reconcile(KEY, desired.get(KEY))
        settle(reconciler)
        assert provider.members(REF) == members(endpoints(1))
    finally:
        reconciler.close()


def test_an_observer_overrides_only_what_it_needs() -> None:
    class Detaches(Observer):
        def __init__(self) -> None:
            self.detached_members: list[TargetEndpoint] = []

        def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float,
                     done_at: float) -> None:
            self.detached_members.extend(endpoints)

    clock = VirtualClock()
    observer = Detaches()
    provider = MemoryProvider(clock=clock, call_latency=Fixed(0.0))
    reconciler, desired = direct(provider, clock, observer=observer)
    try:
        for eps in (endpoints(2), endpoints(1)):
            desired[KEY] = DesiredBinding(key=KEY, spec=spec(), endpoints=eps)
            reconciler.reconcile(KEY, desired.get(KEY))
            settle(reconciler)
            clock.advance(1.0)
        assert observer.detached_members == [TargetEndpoint("10.0.0.1", 8080)]
    finally:
        reconciler.close()
