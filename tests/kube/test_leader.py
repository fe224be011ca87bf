"""Leader election: two controllers in one process, exactly one writes, the standby takes over."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from negsync.app import Settings
from negsync.core.clock import VirtualClock
from negsync.core.model import TargetEndpoint, TargetRef
from negsync.kube.controller import Controller
from negsync.kube.leader import LeaderElector
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.support.waiting import wait_for

REF = TargetRef("memory", "local", "shop-web")


class CountingProvider:
    """One shared cloud seen through per-replica handles, so we can tell who wrote."""

    def __init__(self, cloud: MemoryProvider) -> None:
        self._cloud = cloud
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cloud, name)

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self.writes += 1
        self._cloud.attach(ref, endpoints)

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self.writes += 1
        self._cloud.detach(ref, endpoints)


def settings(identity: str) -> Settings:
    return Settings(workers=2, sync_min_interval=0.0, health_poll_interval=0.1, identity=identity, watch_timeout=5,
                    leader_elect=True, lease_namespace="negsync-system", lease_duration=1.5, renew_deadline=1.0,
                    retry_period=0.2)


@pytest.fixture
def pair(kube: KubeApiEmulator) -> Iterator[tuple[Controller, Controller, CountingProvider, CountingProvider, MemoryProvider]]:
    cloud = MemoryProvider()
    handles = (CountingProvider(cloud), CountingProvider(cloud))
    apis = [client.ApiClient(kube.client_configuration()) for _ in range(2)]
    controllers = [Controller(api_client=api, provider=handle, settings=settings(f"replica-{i}"))  # type: ignore[arg-type]
                   for i, (api, handle) in enumerate(zip(apis, handles, strict=True))]
    for controller in controllers:
        controller.start()
    try:
        yield controllers[0], controllers[1], handles[0], handles[1], cloud
    finally:
        for controller in controllers:
            controller.stop(timeout=5)
        for api in apis:
            api.close()


def seed(kube: KubeApiEmulator, ips: list[str]) -> None:
    kube.create(service())
    for i, ip in enumerate(ips):
        kube.create(pod(f"web-{i}", ip=ip))
    kube.create(endpoint_slice("web-abc", ips))
    kube.create(binding(gate=False))


def test_exactly_one_replica_writes_and_the_standby_takes_over(kube: KubeApiEmulator, pair: Any) -> None:
    a, b, handle_a, handle_b, cloud = pair
    leader = wait_for(lambda: next((c for c in (a, b) if c.leading), None), what="a leader")
    standby, leader_handle, standby_handle = (b, handle_a, handle_b) if leader is a else (a, handle_b, handle_a)
    for _ in range(25):  # never two leaders
        assert [a.leading, b.leading].count(True) == 1
        time.sleep(0.02)
    wait_for(lambda: standby.ready, what="standby ready (caches synced, leader known)")
    seed(kube, ["10.1.0.1", "10.1.0.2"])
    wait_for(lambda: cloud.members(REF) == {TargetEndpoint("10.1.0.1", 8080), TargetEndpoint("10.1.0.2", 8080)})
    assert leader_handle.writes >= 1 and standby_handle.writes == 0

    # The leader stops renewing (its API calls fail) but its process lives on.
    class Broken:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise ConnectionError("partitioned")
            return fail

    assert leader.leader is not None
    leader.leader._api = Broken()
    lost_at = time.monotonic()
    wait_for(lambda: not leader.leading, timeout=5, what="old leader steps down")
    wait_for(lambda: standby.leading, timeout=5, what="standby takes over")
    took = time.monotonic() - lost_at
    assert took <= 1.5 + 1.0  # within one lease duration (+ a retry period and scheduling slack)
    assert not leader.leading  # stepped down before the new one started: no overlap
    kube.update(endpoint_slice("web-abc", ["10.1.0.1", "10.1.0.2", "10.1.0.3"]))
    wait_for(lambda: TargetEndpoint("10.1.0.3", 8080) in cloud.members(REF), what="new leader syncs")
    assert standby_handle.writes >= 1


def test_a_clean_stop_releases_the_lease_for_an_immediate_takeover(kube: KubeApiEmulator, pair: Any) -> None:
    a, b, *_ = pair
    leader = wait_for(lambda: next((c for c in (a, b) if c.leading), None), what="a leader")
    standby = b if leader is a else a
    stopped = time.monotonic()
    leader.stop(timeout=5)
    lease = kube.get("coordination.k8s.io/v1", "Lease", "negsync-system", "negsync-controller")
    assert lease is not None and lease["spec"].get("holderIdentity") in (None, "", standby.settings.identity)
    wait_for(lambda: standby.leading, timeout=5, what="standby takes over")
    assert time.monotonic() - stopped < 1.5  # sooner than a lease duration: the lease was released


# -- clock skew: expiry is judged on our own monotonic clock (client-go's observedTime) ------------------
def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _other_holder_renews(kube: KubeApiEmulator, skew: timedelta) -> None:
    """The holder, another replica whose wall clock is off by ``skew``, renews its Lease."""
    kube.patch("coordination.k8s.io/v1", "Lease", "negsync-system", "negsync-controller",
               {"spec": {"renewTime": _micro(datetime.now(UTC) + skew)}})


@pytest.mark.parametrize("skew", [timedelta(hours=-1), timedelta(hours=1)], ids=["holder-behind", "holder-ahead"])
def test_lease_expiry_ignores_the_holders_clock(kube: KubeApiEmulator, api_client: client.ApiClient,
                                                skew: timedelta) -> None:
    start = datetime.now(UTC) + skew
    kube.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "negsync-controller", "namespace": "negsync-system"},
                 "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15, "acquireTime": _micro(start),
                          "renewTime": _micro(start), "leaseTransitions": 0}})
    clock = VirtualClock()
    elector = LeaderElector(coordination_api=client.CoordinationV1Api(api_client), namespace="negsync-system",
                            name="negsync-controller", identity="me", clock=clock)
    # The holder renews every 2 s of our time: whatever its clock says, it keeps the Lease.
    for _ in range(20):
        elector.step()
        assert not elector.is_leader
        clock.advance(2.0)
        _other_holder_renews(kube, skew)
    # The holder dies: its record stops changing.  Not before a lease duration of *our* time ...
    elector.step()
    for _ in range(7):
        clock.advance(2.0)
        elector.step()
        assert not elector.is_leader
    # ... and right after it.
    clock.advance(2.0)
    elector.step()
    assert elector.is_leader
    lease = kube.get("coordination.k8s.io/v1", "Lease", "negsync-system", "negsync-controller")
    assert lease is not None and lease["spec"]["holderIdentity"] == "me"
