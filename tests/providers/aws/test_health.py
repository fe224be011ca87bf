"""Members and health from DescribeTargetHealth, and the readiness gate on them (negsync/providers/aws/health.py)."""

from __future__ import annotations

from collections.abc import Sequence

from botocore.stub import Stubber

from negsync.core.clock import VirtualClock
from negsync.core.diffs import diff
from negsync.core.model import Health, TargetEndpoint, TargetRef
from negsync.providers.aws import (
    AwsProvider,
    health_from_state,
)

from .conftest import (
    REGION,
    FaultProxy,
    World,
    provider_for,
)


def test_health_states_map_onto_the_gate() -> None:
    assert health_from_state("initial") is Health.INITIAL
    assert health_from_state("healthy") is Health.HEALTHY
    assert health_from_state("unhealthy") is Health.UNHEALTHY
    assert health_from_state("unused") is Health.UNUSED
    assert health_from_state("draining") is Health.DRAINING
    assert health_from_state("unavailable") is Health.UNKNOWN
    assert health_from_state("unavailable", health_check_enabled=False) is Health.NO_HEALTH_CHECK
    assert health_from_state("something-new") is Health.UNKNOWN
    gate = [
        s
        for s in ("initial", "healthy", "unhealthy", "unused", "draining")
        if health_from_state(s).lets_gate_pass
    ]
    assert gate == ["healthy"]


def test_health_comes_from_describe_target_health(world: World, proxy: FaultProxy) -> None:
    """moto reports only "healthy", so the other states are stubbed on the provider's own client."""
    provider = provider_for(proxy)
    ref = world.ref()
    provider.describe_group(ref)  # cached before the stub takes over the client
    states = ["initial", "healthy", "unhealthy", "unused", "draining", "unavailable"]
    client = provider.client("elbv2", REGION)
    with Stubber(client) as stub:
        stub.add_response(
            "describe_target_health",
            {
                "TargetHealthDescriptions": [
                    {"Target": {"Id": f"10.0.0.{i}", "Port": 8080}, "TargetHealth": {"State": state}}
                    for i, state in enumerate(states, start=1)
                ]
            },
            {"TargetGroupArn": ref.name},
        )
        members = provider.list_endpoints(ref)
    assert [members[TargetEndpoint(f"10.0.0.{i}", 8080)] for i in range(1, 7)] == [
        Health.INITIAL,
        Health.HEALTHY,
        Health.UNHEALTHY,
        Health.UNUSED,
        Health.DRAINING,
        Health.UNKNOWN,
    ]


def test_unavailable_means_no_health_check_when_checks_are_off(world: World, proxy: FaultProxy) -> None:
    # moto ignores HealthCheckEnabled=false on create, so the group's description is stubbed too.
    provider = provider_for(proxy)
    ref = world.ref()
    with Stubber(provider.client("elbv2", REGION)) as stub:
        stub.add_response(
            "describe_target_groups",
            {
                "TargetGroups": [
                    {
                        "TargetGroupArn": ref.name,
                        "TargetGroupName": "web-ip",
                        "TargetType": "ip",
                        "Protocol": "TCP",
                        "Port": 80,
                        "VpcId": world.vpc_id,
                        "HealthCheckEnabled": False,
                        "IpAddressType": "ipv4",
                    }
                ]
            },
            {"TargetGroupArns": [ref.name]},
        )
        stub.add_response(
            "describe_target_health",
            {
                "TargetHealthDescriptions": [
                    {"Target": {"Id": "10.0.0.1", "Port": 80}, "TargetHealth": {"State": "unavailable"}}
                ]
            },
        )
        assert provider.list_endpoints(ref) == {TargetEndpoint("10.0.0.1", 80): Health.NO_HEALTH_CHECK}
    assert provider.describe_group(ref).health_check_enabled is False  # cached: no further call


class SlowHealth:
    """A thin wrapper over the moto-backed provider: targets stay ``initial`` for ``delay`` seconds.

    Real ELBv2 needs several health-check intervals before a new target is ``healthy``; moto
    says ``healthy`` at once.  The wrapper rewrites only the health, as the state DescribeTargetHealth
    would report, so everything else still goes through boto3 and moto.
    """

    def __init__(self, inner: AwsProvider, *, clock: VirtualClock, delay: float) -> None:
        self.inner, self.clock, self.delay = inner, clock, delay
        self.registered_at: dict[TargetEndpoint, float] = {}
        self.draining: set[TargetEndpoint] = set()

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self.inner.attach(ref, endpoints)
        for endpoint in endpoints:
            self.registered_at[endpoint] = self.clock.now()
            self.draining.discard(endpoint)

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        members = self.inner.list_endpoints(ref)
        for endpoint in list(members):
            if endpoint in self.draining:
                members[endpoint] = health_from_state("draining")
            elif self.clock.now() - self.registered_at.get(endpoint, float("-inf")) < self.delay:
                members[endpoint] = health_from_state("initial")
        return members


def gate(members: dict[TargetEndpoint, Health], pod: TargetEndpoint) -> bool:
    """The pod's readiness gate: True only once its target reports a state that lets it pass."""
    return pod in members and members[pod].lets_gate_pass


def test_the_gate_flips_only_once_the_target_turns_healthy(world: World, proxy: FaultProxy) -> None:
    clock = VirtualClock()
    slow = SlowHealth(provider_for(proxy, clock=clock), clock=clock, delay=30.0)
    ref, pod = world.ref(), TargetEndpoint("10.0.0.5", 8080)
    slow.attach(ref, [pod])
    seen = []
    for _ in range(4):
        members = slow.list_endpoints(ref)
        seen.append((clock.now(), members[pod], gate(members, pod)))
        clock.advance(10.0)
    assert seen == [
        (0.0, Health.INITIAL, False),
        (10.0, Health.INITIAL, False),
        (20.0, Health.INITIAL, False),
        (30.0, Health.HEALTHY, True),
    ]


def test_a_draining_target_is_registered_again_for_a_reused_pod_ip(world: World, proxy: FaultProxy) -> None:
    clock = VirtualClock()
    slow = SlowHealth(provider_for(proxy, clock=clock), clock=clock, delay=0.0)
    ref, pod = world.ref(), TargetEndpoint("10.0.0.5", 8080)
    slow.attach(ref, [pod])
    slow.draining.add(pod)  # the old pod left; a new pod got the same IP while the target drains
    members = slow.list_endpoints(ref)
    assert members[pod] is Health.DRAINING and not gate(members, pod)
    present = {e for e, h in members.items() if h.counts_as_present}
    plan = diff({pod}, present)
    assert plan.attach == {pod}
    slow.attach(ref, sorted(plan.attach))
    assert len(proxy.actions("RegisterTargets")) == 2
    assert gate(slow.list_endpoints(ref), pod)


def test_target_health_is_read_as_reported_and_polls_share_the_budget() -> None:
    from negsync.core.clock import VirtualClock
    from negsync.providers.aws.health import HEALTH_POLL_SHARE, HealthPolls, ReportedTarget, read_target_health

    response = {"TargetHealthDescriptions": [
        {"Target": {"Id": "fd00:0::1", "Port": 80, "AvailabilityZone": "all"}, "TargetHealth": {"State": "healthy"}},
        {"Target": {"Id": "10.0.0.2"}, "TargetHealth": {"State": "unavailable"}},  # the group's port
        {"Target": {"Port": 80}, "TargetHealth": {"State": "healthy"}},  # no Id: skipped
    ]}
    members, reported = read_target_health(response, default_port=8080, health_check_enabled=False)
    assert members == {TargetEndpoint("fd00::1", 80): Health.HEALTHY,
                       TargetEndpoint("10.0.0.2", 8080): Health.NO_HEALTH_CHECK}
    # Deregistration names the target exactly as AWS reported it (LBC PR #4544).
    assert reported[TargetEndpoint("fd00::1", 80)] == ReportedTarget("fd00:0::1", 80, "all")
    assert reported[TargetEndpoint("10.0.0.2", 8080)].description() == {"Id": "10.0.0.2", "Port": 8080}
    clock = VirtualClock(start=0.0)
    polls = HealthPolls(clock=clock)
    assert polls.interval("a", describe_rate=None) == 0.0
    for arn in ("a", "b", "c"):
        polls.polled(arn)
    assert polls.interval("a", describe_rate=5.0) == 3 / (5.0 * HEALTH_POLL_SHARE)
    clock.advance(61.0)
    assert polls.interval("a", describe_rate=5.0) == 1 / (5.0 * HEALTH_POLL_SHARE)
