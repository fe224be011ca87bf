"""Cloud-side faults through the real Reconciler + Engine, against three clouds.

* ``memory``: :class:`MemoryProvider` with its own seams (``fail_next``, ``reject``).
* ``aws``: :class:`AwsProvider` → :class:`~tests.support.elb_proxy.ElbProxy` → moto server: real
  boto3 calls, real HTTP 429/503, real read time-outs (the change applied, the answer lost).
* ``gcp``: :class:`GcpProvider` → :class:`~tests.emulators.compute.FakeCompute`: real
  google-api-python-client calls, HTTP 429/503, socket time-outs, a 400 for one endpoint.

Each test syncs 20 endpoints, injects the fault, then changes the desired set under it (10 new
endpoints, 3 turning terminating) and waits for the end state: actual == desired (less what the
API rejected for good, which must be reported), the foreign member / NEG untouched, no
terminating endpoint attached.  The reconciler's back-off is shortened (``retry_base`` 0.5 s
instead of 5 s) so the matrix runs in seconds; docs/reliability.md scales the numbers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from negsync.core.bindings import AwsTargetGroupTarget, BindingSpec, GcpNegTarget, MemoryTarget
from negsync.core.clock import RealClock
from negsync.core.engine import Engine
from negsync.core.model import BindingKey, Endpoint, TargetEndpoint, TargetRef
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding, ReconcileResult
from negsync.errors import TransientError
from negsync.providers.memory import MemoryOwnershipStore, MemoryProvider
from tests.emulators.compute import FakeCompute
from tests.faults.conftest import record
from tests.providers.conftest import REGION, aws_env, moto_server  # noqa: F401  (fixtures)
from tests.support.elb_proxy import ElbProxy
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

KEY = BindingKey("shop", "web")
FAULTS = ["429-retry-after", "503", "timeout", "partial-400"]
PROJECT, ZONE = "proj-negsync", "us-central1-a"
UID = "0f3c2a9e-5b7d-4e21-9a10-5d6f7e8a9b0c"
ATTACH = "compute.networkEndpointGroups.attachNetworkEndpoints"
LIST_EPS = "compute.networkEndpointGroups.listNetworkEndpoints"


def endpoints(prefix: str, start: int, stop: int) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(ip=f"{prefix}.{i}", port=8080, zone=ZONE, node="vm-a-1") for i in range(start, stop))


@dataclass
class Harness:
    """An Engine driving the real Reconciler from a desired state the test edits."""

    provider: Any
    spec: BindingSpec
    ownership: Any = None
    serving: tuple[Endpoint, ...] = ()
    terminating: tuple[Endpoint, ...] = ()
    results: list[ReconcileResult] = field(default_factory=list)
    engine: Engine | None = None

    def start(self) -> Harness:
        def factory(enqueue: Callable[[BindingKey, float, bool], None]) -> Reconciler:
            return Reconciler(provider=self.provider, enqueue=enqueue, ownership=self.ownership,
                              clock=RealClock(), call_workers=4, retry_base=0.5, retry_max=4.0, seed=1,
                              health_poll_interval=0.2, resync_period=30.0)

        self.engine = Engine(reconciler_factory=factory, desired=self.desired, on_result=self.results.append,
                             workers=2)
        self.engine.start()
        return self

    def desired(self, key: BindingKey) -> DesiredBinding:
        return DesiredBinding(key=key, spec=self.spec, endpoints=self.serving, terminating=self.terminating)

    def set(self, serving: tuple[Endpoint, ...], terminating: tuple[Endpoint, ...] = ()) -> None:
        self.serving, self.terminating = serving, terminating
        assert self.engine is not None
        self.engine.enqueue(KEY, 0.0, bool(terminating))

    @property
    def rejected(self) -> set[tuple[str, int]]:
        return {(m.ip, m.port) for m in self.results[-1].rejected} if self.results else set()

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop(timeout=5)


@dataclass
class Cloud:
    """How a test reads one cloud, and how it injects each fault there."""

    harness: Harness
    actual: Callable[[], set[tuple[str, int]]]  # our members (foreign member excluded)
    foreign_intact: Callable[[], bool]
    inject: dict[str, Callable[[], None]]
    faulted: Callable[[str], bool]  # did the fault really happen?
    prefix: str
    bad: str  # the IP the partial-400 fault rejects


def run_fault(cloud: Cloud, fault: str, name: str) -> None:
    h = cloud.harness
    initial = endpoints(cloud.prefix, 1, 21)
    h.set(initial)
    wait_for(lambda: cloud.actual() == {(e.ip, e.port) for e in initial}, timeout=15, what="initial sync")
    cloud.inject[fault]()
    serving = endpoints(cloud.prefix, 4, 31)  # 21..30 new, 1..3 leaving
    terminating = endpoints(cloud.prefix, 1, 4)
    rejected = {(cloud.bad, 8080)} if fault == "partial-400" else set()
    want = {(e.ip, e.port) for e in serving} - rejected
    started = time.monotonic()
    h.set(serving, terminating)
    wait_for(lambda: cloud.actual() == want and (not rejected or h.rejected == rejected), timeout=20,
             what=f"convergence under {name}")
    seconds = time.monotonic() - started
    actual = cloud.actual()
    assert actual == want
    assert not actual & {(e.ip, e.port) for e in terminating}, "a terminating endpoint is attached"
    assert cloud.foreign_intact(), "a member or target negsync does not own was touched"
    if fault == "timeout":  # the caller must have seen the time-out (and survived it)
        wait_for(lambda: any("time" in e.lower() for r in list(h.results) for e in r.errors), timeout=10,
                 what="the time-out reported as a sync error")
    assert cloud.faulted(fault), f"the {fault} fault was never hit"
    record(name, seconds)
    if fault == "partial-400":  # the bad pod is replaced: its IP leaves, everything else stays
        h.set(tuple(e for e in serving if e.ip != cloud.bad))
        wait_for(lambda: cloud.actual() == want and not h.rejected, timeout=10, what="rejected endpoint left")


# -- memory -----------------------------------------------------------------------------------------
@pytest.fixture
def memory() -> Iterator[Cloud]:
    provider = MemoryProvider()
    ref = TargetRef("memory", "local", "shop-web")
    foreign_ref = TargetRef("memory", "local", "someone-elses-pool")
    foreign_member = TargetEndpoint("10.1.250.250", 8080)
    provider.create_foreign(ref, [foreign_member], owner=None)  # in our (shared) pool, registered by others
    provider.create_foreign(foreign_ref, [TargetEndpoint("10.1.0.1", 8080)], owner=BindingKey("other", "x"))
    spec = BindingSpec("web", "http", MemoryTarget("shop-web", shared=True), readiness_gate=False)
    harness = Harness(provider, spec, MemoryOwnershipStore()).start()
    bad = "10.1.0.25"
    timeouts = {"left": 0, "hit": 0}
    real_attach = provider.attach

    def attach(target: TargetRef, members: Any) -> None:
        real_attach(target, members)
        if timeouts["left"] > 0:  # applied, but the caller never hears back
            timeouts["left"] -= 1
            timeouts["hit"] += 1
            raise TransientError("attach: read timed out after 20s")

    provider.attach = attach  # type: ignore[method-assign]
    calls_before: dict[str, int] = {}

    def fail(error: TransientError, count: int, op: str = "attach") -> Callable[[], None]:
        def inject() -> None:
            calls_before["n"] = len(provider._failures)
            provider.fail_next(op, error, count=count)
        return inject

    cloud = Cloud(
        harness=harness,
        actual=lambda: {(m.ip, m.port) for m in provider.members(ref) - {foreign_member}},
        foreign_intact=lambda: foreign_member in provider.members(ref)
        and provider.members(foreign_ref) == {TargetEndpoint("10.1.0.1", 8080)}
        and all(c.ref != foreign_ref for c in provider.calls),
        inject={
            "429-retry-after": fail(TransientError("HTTP 429 Too Many Requests", retry_after=1.0), 2),
            "503": fail(TransientError("HTTP 503 Service Unavailable"), 3, "*"),
            "timeout": lambda: timeouts.update(left=1),
            "partial-400": lambda: provider.reject([TargetEndpoint(bad, 8080)]),
        },
        faulted=lambda fault: (timeouts["hit"] == 1) if fault == "timeout" else
        (bool(harness.rejected) if fault == "partial-400" else not provider._failures),
        prefix="10.1.0",
        bad=bad,
    )
    try:
        yield cloud
    finally:
        harness.stop()


@pytest.mark.parametrize("fault", FAULTS)
def test_memory_cloud_fault(memory: Cloud, fault: str) -> None:
    started = time.monotonic()
    run_fault(memory, fault, f"cloud {fault} (memory)")
    if fault == "429-retry-after":
        assert time.monotonic() - started >= 1.0


# -- aws (moto) -------------------------------------------------------------------------------------
@pytest.fixture
def aws(moto_server: str, aws_env: None) -> Iterator[Cloud]:  # noqa: F811
    import boto3

    from negsync.providers.aws import CLAIMS, AwsProvider

    CLAIMS.clear()
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_server)
    elbv2 = session.client("elbv2", endpoint_url=moto_server)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    name = f"faults-{int(time.monotonic() * 1000) % 10**9}"
    arn = elbv2.create_target_group(Name=name[:32], Protocol="HTTP", Port=8080, VpcId=vpc,
                                    TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    foreign = ("10.0.250.250", 8080)
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": foreign[0], "Port": foreign[1]}])
    proxy = ElbProxy(upstream=moto_server).start()
    provider = AwsProvider(endpoint_url=proxy.url, max_attempts=1, connect_timeout=1, read_timeout=1, session=session)
    spec = BindingSpec("web", "http", AwsTargetGroupTarget(arn=arn, shared=True), readiness_gate=False)
    harness = Harness(provider, spec, MemoryOwnershipStore()).start()

    def registered() -> set[tuple[str, int]]:
        described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        return {(d["Target"]["Id"], d["Target"]["Port"]) for d in described
                if d.get("TargetHealth", {}).get("State") != "draining"}

    bad = "10.0.0.25"

    def faulted(fault: str) -> bool:
        if fault == "timeout":
            return any(c.action == "RegisterTargets" for c in proxy.calls)
        status = {"429-retry-after": 429, "503": 503, "partial-400": 400}[fault]
        return bool(proxy.actions("RegisterTargets", status=status))

    cloud = Cloud(
        harness=harness,
        actual=lambda: registered() - {foreign},
        foreign_intact=lambda: foreign in registered()
        and all(foreign not in c.targets for c in proxy.actions("DeregisterTargets")),
        inject={
            "429-retry-after": lambda: proxy.fail_next("RegisterTargets", 2, status=429, code="Throttling", retry_after=1),
            "503": lambda: (proxy.fail_next("RegisterTargets", 2, status=503, code="ServiceUnavailable"),
                            proxy.fail_next("DeregisterTargets", 1, status=503, code="ServiceUnavailable")),
            "timeout": lambda: proxy.slow_next("RegisterTargets", 1, 1.5),
            "partial-400": lambda: proxy.reject_ips({bad}),
        },
        faulted=faulted,
        prefix="10.0.0",
        bad=bad,
    )
    cloud.proxy = proxy  # type: ignore[attr-defined]
    try:
        yield cloud
    finally:
        harness.stop()
        proxy.stop()
        CLAIMS.clear()


@pytest.mark.parametrize("fault", FAULTS)
def test_aws_cloud_fault(aws: Cloud, fault: str) -> None:
    started = time.monotonic()
    run_fault(aws, fault, f"cloud {fault} (aws/moto)")
    if fault == "429-retry-after":
        throttled = aws.proxy.actions("RegisterTargets", status=429)  # type: ignore[attr-defined]
        after = [c for c in aws.proxy.actions("RegisterTargets", status=200) if c.at > throttled[-1].at]  # type: ignore[attr-defined]
        assert after and after[0].at - throttled[-1].at >= 1.0, "retried before Retry-After"
        assert time.monotonic() - started >= 1.0


# -- gcp (FakeCompute) -------------------------------------------------------------------------------
@pytest.fixture
def gcp() -> Iterator[Cloud]:
    from negsync.providers.gcp import GcpProvider, neg_name

    fake = FakeCompute().start()
    # The project's network, and the VM the endpoints run on owning their range.
    fake.add_subnetwork(PROJECT, "us-central1", "default", cidr="10.0.0.0/8")
    fake.add_instance(PROJECT, ZONE, "vm-a-1", alias_ranges=["10.2.0.0/24"])
    foreign_neg = "someone-elses-neg"
    fake.add_neg(PROJECT, ZONE, foreign_neg, endpoints=[("vm-x", "10.2.0.1", 8080)])
    provider = GcpProvider(cluster_uid=UID, compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                           num_retries=0, operation_timeout=3.0, rate_limit=(1000.0, 1000), http_timeout=1.0)
    spec = BindingSpec("web", "http", GcpNegTarget(project=PROJECT, network="default"), readiness_gate=False)
    harness = Harness(provider, spec).start()
    ours = neg_name(prefix="k8s", cluster_uid=UID, binding=KEY)
    bad = "10.2.0.25"

    def slow_for(seconds: float) -> None:
        fake.set_latency(1.5)  # > http_timeout: every call times out for a while
        timer = threading.Timer(seconds, fake.set_latency, args=(0.0,))
        timer.daemon = True
        timer.start()

    def faulted(fault: str) -> bool:
        if fault == "timeout":
            return True  # checked by the time it took (calls could not succeed during the window)
        status = {"429-retry-after": 429, "503": 503, "partial-400": 400}[fault]
        return fake.count(ATTACH, status) > 0

    cloud = Cloud(
        harness=harness,
        actual=lambda: fake.endpoints(PROJECT, ZONE, ours) if (PROJECT, ZONE, ours) in fake.negs() else set(),
        foreign_intact=lambda: fake.endpoints(PROJECT, ZONE, foreign_neg) == {("10.2.0.1", 8080)}
        and not any(foreign_neg in c.path and c.http_method != "GET" for c in fake.calls),
        inject={
            "429-retry-after": lambda: fake.inject(ATTACH, 429, count=2),
            "503": lambda: (fake.inject(ATTACH, 503, count=2), fake.inject(LIST_EPS, 503, count=1)),
            "timeout": lambda: slow_for(2.0),
            "partial-400": lambda: fake.reject_endpoints({(bad, 8080)}),
        },
        faulted=faulted,
        prefix="10.2.0",
        bad=bad,
    )
    try:
        yield cloud
    finally:
        harness.stop()
        fake.stop()


@pytest.mark.parametrize("fault", FAULTS)
def test_gcp_cloud_fault(gcp: Cloud, fault: str) -> None:
    started = time.monotonic()
    run_fault(gcp, fault, f"cloud {fault} (gcp/FakeCompute)")
    if fault == "timeout":
        assert time.monotonic() - started >= 2.0
