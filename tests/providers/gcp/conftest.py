"""Fixtures and helpers of the GCP provider tests: the fake Compute API, a provider built against it, a driver.

The tests run the real google-api-python-client against the fake Compute API; nothing in the
client is patched: requests go over HTTP to :class:`FakeCompute` on 127.0.0.1.  The only seam is
the provider's clock, whose ``sleep`` (used for the client's own retry back-off) records instead
of sleeping, so retry tests stay fast and can assert the back-off happened.  Reconciler-level
tests drive the real :class:`Reconciler` synchronously (``Driver``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from negsync.core.bindings import BindingSpec, GcpNegTarget
from negsync.core.clock import RealClock
from negsync.core.model import BindingKey, Endpoint, TargetEndpoint, TargetRef
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding, ReconcileResult
from negsync.providers.gcp import (
    GcpProvider,
    neg_name,
)
from tests.emulators.compute import FakeCompute

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


GET = "compute.networkEndpointGroups.get"


AGGREGATED = "compute.networkEndpointGroups.aggregatedList"


RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class SkipSleepClock(RealClock):
    """Real time, but sleeps (the client's retry back-off) are recorded and skipped."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class SteppedClock(SkipSleepClock):
    """Time moves only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 1000.0

    def now(self) -> float:
        return self.at


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
            result = self.reconciler.reconcile(key, self.desired.get(key))
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
