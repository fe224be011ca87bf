"""The AWS provider against moto in server mode, through real boto3 clients; and the token bucket.

Every AWS call of the provider goes through the loopback :class:`FaultProxy` (conftest), which
counts calls per action, records their parameters (so tests can see ``AvailabilityZone=all``)
and injects ``Throttling`` and other errors.  Fixtures (VPC, target groups) are created by a
separate boto3 client straight against moto, so they never show up in the counts.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.retries.standard
import pytest
from botocore.stub import Stubber

from negsync.core.batching import chunks
from negsync.core.bindings import AwsTargetGroupTarget, BindingSpec, TargetSpec
from negsync.core.clock import RealClock, VirtualClock
from negsync.core.diffs import diff
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.core.ports import OwnershipStore, TargetProvider
from negsync.errors import (
    ConfigError,
    InvalidTarget,
    OwnershipConflict,
    ProviderError,
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.aws import (
    DEFAULT_RATE_LIMITS,
    AwsProvider,
    InvalidEndpoints,
    TargetGroupClaims,
    health_from_state,
    invalid_endpoints,
)
from negsync.providers.memory import MemoryOwnershipStore
from negsync.providers.ratelimit import RateLimits, TokenBucket, parse_rate_limits
from tests.support.elb_proxy import ElbProxy as FaultProxy
from tests.support.waiting import wait_for

from .conftest import REGION

BINDING = BindingKey("shop", "web")
OTHER = BindingKey("shop", "admin")


# ------------------------------------------------------------------------------ token bucket


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # one token at 2/s
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.advance(100)  # an idle bucket saves at most one burst
    assert sum(bucket.try_acquire() for _ in range(10)) == 3
    assert bucket.granted == 7


def test_bucket_acquire_blocks_until_virtual_time_passes() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(1.0, 1, clock=clock)
    assert bucket.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(bucket.acquire()), daemon=True)
    waiter.start()
    wait_for(lambda: clock.next_deadline() is not None)  # the waiter is parked on the clock
    assert got == []
    clock.advance(1.0)
    waiter.join(timeout=5)
    assert got == [True]
    assert bucket.granted == 2


def test_bucket_acquire_gives_up_at_once_when_the_deadline_is_too_close() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(0.5, 1, clock=clock)
    assert bucket.acquire(timeout=0)
    assert bucket.acquire(timeout=1.0) is False  # the next token is 2 s away
    assert clock.now() == 0.0


def test_bucket_is_thread_safe() -> None:
    bucket = TokenBucket(0.001, 100, clock=VirtualClock())
    results: list[bool] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(50):
            ok = bucket.try_acquire()
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sum(results) == 100 == bucket.granted
    assert len(results) == 400


def test_bucket_with_the_real_clock_waits_for_a_refill() -> None:
    bucket = TokenBucket(200.0, 1, clock=RealClock())
    assert all(bucket.acquire(timeout=5) for _ in range(5))  # 4 of them waited ~5 ms each
    assert bucket.granted == 5


def test_bucket_rejects_nonsense() -> None:
    for rate, burst in ((0, 1), (-1, 1), (float("inf"), 1), (1, 0)):
        with pytest.raises(ValueError):
            TokenBucket(rate, burst)


def test_a_throttle_group_is_one_bucket_shared_by_every_operation_it_matches() -> None:
    # AWS counts Describe* together and Register/Deregister together, per account and region; the
    # old code gave each operation a bucket of its own, so two Describe calls paid twice the budget.
    clock = VirtualClock()
    limits = RateLimits({"RegisterTargets|DeregisterTargets": (4, 2), "Describe*": (10, 3), "*": (10, 4)}, clock=clock)
    assert limits.groups_for("DescribeTargetHealth") == ["Describe*", "*"]
    assert limits.groups_for("DeregisterTargets") == ["RegisterTargets|DeregisterTargets", "*"]
    assert limits.groups_for("ModifyListener") == ["*"]
    assert limits.limit_for("DescribeTargetHealth") == (10, 3)
    assert RateLimits({"Describe*": (1, 1)}).limit_for("RegisterTargets") is None
    assert RateLimits({"Describe*": (1, 1)}).acquire("RegisterTargets", timeout=0)
    # The Describe group's burst of 3 is shared: a DescribeTargetGroups after two health reads is the last.
    assert limits.acquire("DescribeTargetHealth", timeout=0)
    assert limits.acquire("DescribeTargetHealth", timeout=0)
    assert limits.acquire("DescribeTargetGroups", timeout=0)
    assert not limits.acquire("DescribeVpcs", timeout=0)
    # Registration has its own group, but the account-wide one (burst 4) is shared by all actions.
    assert limits.acquire("RegisterTargets", timeout=0)
    assert not limits.acquire("DeregisterTargets", timeout=0)
    assert limits["*"].granted == 4 and limits["Describe*"].granted == 3
    assert sorted(limits) == ["*", "Describe*", "RegisterTargets|DeregisterTargets"]
    with pytest.raises(ValueError):
        RateLimits({"A||B": (1, 1)})


def test_defaults_stay_below_aws_refill_and_leave_room_for_other_tools() -> None:
    from negsync.providers.aws import AWS_THROTTLE_LIMITS

    assert set(DEFAULT_RATE_LIMITS) == set(AWS_THROTTLE_LIMITS)
    for group, (rate, burst) in DEFAULT_RATE_LIMITS.items():
        aws_rate, aws_burst = AWS_THROTTLE_LIMITS[group]
        assert rate < aws_rate and burst <= aws_burst, group
    # Every ELBv2 call negsync makes pays into the account-wide group as well as its own.
    limits = RateLimits(DEFAULT_RATE_LIMITS)
    for operation in ("RegisterTargets", "DeregisterTargets", "DescribeTargetHealth", "DescribeTargetGroups",
                      "DescribeTargetGroupAttributes"):
        assert "*" in limits.groups_for(operation) and len(limits.groups_for(operation)) == 2, operation


def test_the_flag_still_sets_the_groups() -> None:
    # --aws-rate-limits keeps its syntax; a key may now name a group (A|B) and merges into the defaults.
    flag = parse_rate_limits("Describe*=6:30, RegisterTargets|DeregisterTargets=2:5", field="--aws-rate-limits")
    provider = AwsProvider(rate_limits=flag, clock=VirtualClock())
    limits = provider.limits(REGION)
    assert limits.limit_for("DescribeTargetHealth") == (6.0, 30)  # the tightest of Describe* and *
    assert limits.limit_for("DeregisterTargets") == (2.0, 5)
    assert limits.groups_for("RegisterTargets") == ["RegisterTargets|DeregisterTargets", "*"]
    assert provider.rate_limits["*"] == DEFAULT_RATE_LIMITS["*"]


def test_parse_rate_limits() -> None:
    assert parse_rate_limits("RegisterTargets=4:20, Describe*=50:200,") == {
        "RegisterTargets": (4.0, 20),
        "Describe*": (50.0, 200),
    }
    for bad in ("RegisterTargets=4", "=1:1", "X=0:1", "X=1:0", "X=a:b"):
        with pytest.raises(ConfigError) as info:
            parse_rate_limits(bad, field="--aws-rate-limits")
        assert info.value.field == "--aws-rate-limits"


# ------------------------------------------------------------------------------ pure parts


def test_validation_matches_the_real_apis_rules() -> None:
    good = [
        TargetEndpoint("10.0.1.5", 8080),
        TargetEndpoint("192.168.3.4", 1),
        TargetEndpoint("100.64.0.9", 65535),
    ]
    bad = {
        TargetEndpoint("10.0.1.6", 0): "port",
        TargetEndpoint("10.0.1.7", 65536): "port",
        TargetEndpoint("pod-a", 80): "not an IP",
        TargetEndpoint("fd00::1", 80): "IPv6",
        TargetEndpoint("8.8.8.8", 80): "outside the VPC",
        TargetEndpoint("127.0.0.1", 80): "loopback",
        TargetEndpoint("169.254.169.254", 80): "link-local",
    }
    found = invalid_endpoints([*good, *bad], family="ipv4", vpc_cidrs=["10.0.0.0/16"])
    assert set(found) == set(bad)
    for endpoint, word in bad.items():
        assert word in found[endpoint]
    # A public range the VPC owns is fine; IPv6 groups take IPv6 only.
    assert not invalid_endpoints([TargetEndpoint("54.1.2.3", 80)], family="ipv4", vpc_cidrs=["54.1.0.0/16"])
    assert set(
        invalid_endpoints([TargetEndpoint("10.0.0.1", 80), TargetEndpoint("2600:1f18::5", 80)], family="ipv6")
    ) == {TargetEndpoint("10.0.0.1", 80)}


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


def test_constructor_checks_its_flags() -> None:
    with pytest.raises(ConfigError):
        AwsProvider(retry_mode="legacy")
    with pytest.raises(ConfigError):
        AwsProvider(max_attempts=0)
    with pytest.raises(ValueError):
        AwsProvider(rate_limits={"RegisterTargets": (0, 1)})
    provider: TargetProvider = AwsProvider(
        rate_limits={"RegisterTargets": (1, 2)}
    )  # the protocol, statically
    assert isinstance(provider, AwsProvider)
    assert provider.rate_limits == {**DEFAULT_RATE_LIMITS, "RegisterTargets": (1, 2)}
    assert provider.name == "aws" and provider.max_batch_size == 200


# ------------------------------------------------------------------------------ moto world


@dataclass
class World:
    vpc_id: str
    ip_arn: str
    instance_arn: str
    ipv6_arn: str
    elbv2: Any  # a boto3 client straight against moto, for fixtures and checks

    def spec(self, arn: str | None = None, *, shared: bool = False) -> AwsTargetGroupTarget:
        return AwsTargetGroupTarget(arn=arn or self.ip_arn, shared=shared)

    def ref(self, arn: str | None = None) -> TargetRef:
        return TargetRef("aws", REGION, arn or self.ip_arn)

    def registered(self, arn: str | None = None) -> set[TargetEndpoint]:
        response = self.elbv2.describe_target_health(TargetGroupArn=arn or self.ip_arn)
        return {
            TargetEndpoint(d["Target"]["Id"], d["Target"]["Port"])
            for d in response["TargetHealthDescriptions"]
        }


_SEQUENCE = itertools.count()
_VPCS: dict[str, str] = {}


def create_vpc(moto: str, cidr: str = "10.0.0.0/16") -> str:
    return str(dummy_session().client("ec2", endpoint_url=moto).create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"])


@pytest.fixture
def world(moto: str) -> World:
    """Fresh, uniquely named target groups in a VPC shared by the tests that do not change it."""
    elbv2 = dummy_session().client("elbv2", endpoint_url=moto)
    if moto not in _VPCS:
        _VPCS[moto] = create_vpc(moto)
    vpc_id = _VPCS[moto]
    test = next(_SEQUENCE)

    def group(kind: str, **kwargs: Any) -> str:
        response = elbv2.create_target_group(
            Name=f"t{test}-{kind}", Protocol="HTTP", Port=8080, VpcId=vpc_id, **kwargs
        )
        return str(response["TargetGroups"][0]["TargetGroupArn"])

    return World(
        vpc_id=vpc_id,
        ip_arn=group("ip", TargetType="ip"),
        instance_arn=group("instance", TargetType="instance"),
        ipv6_arn=group("ipv6", TargetType="ip", IpAddressType="ipv6"),
        elbv2=elbv2,
    )


@pytest.fixture(autouse=True)
def _fresh_claims() -> Iterable[None]:
    from negsync.providers.aws import CLAIMS

    CLAIMS.clear()
    yield
    CLAIMS.clear()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's standard mode backs off up to 20 s; the retry *decisions* are what we test."""
    monkeypatch.setattr(
        botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0
    )


_SESSION: list[boto3.Session] = []


def dummy_session() -> boto3.Session:
    """One session with dummy keys for all tests: its loader caches the (large) service models,
    which a fresh session per provider would parse again at ~1 s per test."""
    if not _SESSION:
        _SESSION.append(
            boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        )
    return _SESSION[0]


def provider_for(proxy: FaultProxy, **kwargs: Any) -> AwsProvider:
    kwargs.setdefault("max_attempts", 3)
    kwargs.setdefault("session", dummy_session())
    return AwsProvider(endpoint_url=proxy.url, connect_timeout=2, read_timeout=10, **kwargs)


def addresses(count: int, *, prefix: str = "10.0", port: int = 8080) -> list[TargetEndpoint]:
    return [TargetEndpoint(f"{prefix}.{i // 250}.{i % 250 + 1}", port) for i in range(count)]


def sent_targets(call_params: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Targets.member.N.{Id,Port,AvailabilityZone} from a recorded query → {N: {field: value}}."""
    targets: dict[str, dict[str, str]] = {}
    for key, values in call_params.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "Targets":
            targets.setdefault(parts[2], {})[parts[3]] = values[0]
    return targets


# ------------------------------------------------------------------------------ sync calls


def test_450_targets_take_three_calls_each_way(world: World, proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    ref = world.ref()
    provider.ensure_target(ref, binding=BINDING, spec=world.spec())
    wanted = addresses(450)
    provider.attach(ref, wanted)
    registers = proxy.actions("RegisterTargets")
    assert [len(sent_targets(c.params)) for c in registers] == [200, 200, 50]
    assert world.registered() == set(wanted)
    members = provider.list_endpoints(ref)
    assert set(members) == set(wanted)
    assert set(members.values()) == {Health.HEALTHY}  # moto: healthy at once

    provider.detach(ref, wanted)
    assert [len(sent_targets(c.params)) for c in proxy.actions("DeregisterTargets")] == [200, 200, 50]
    assert world.registered() == set()
    # Target group and VPC were described once each, whatever the number of calls.
    assert len(proxy.actions("DescribeTargetGroups")) == 1
    assert len(proxy.actions("DescribeVpcs")) == 1


@pytest.mark.parametrize(
    "variables",
    [("AWS_ENDPOINT_URL",), ("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", "AWS_ENDPOINT_URL_EC2")],
)
def test_group_and_endpoint_from_the_environment(
    world: World, moto: str, monkeypatch: pytest.MonkeyPatch, variables: tuple[str, ...]
) -> None:
    # The default credential chain (env here) and botocore's own AWS_ENDPOINT_URL support.
    for variable in variables:
        monkeypatch.setenv(variable, moto)
    provider = AwsProvider(max_attempts=1)
    ref = world.ref()
    provider.ensure_target(ref, binding=BINDING, spec=world.spec())
    info = provider.describe_group(ref)
    assert (info.target_type, info.vpc_id, info.protocol, info.port, info.ip_family) == (
        "ip",
        world.vpc_id,
        "HTTP",
        8080,
        "ipv4",
    )
    provider.attach(ref, [TargetEndpoint("10.0.0.7", 8080)])
    assert provider.list_endpoints(ref) == {TargetEndpoint("10.0.0.7", 8080): Health.HEALTHY}


def test_clients_are_cached_per_region_and_created_once_under_concurrency(proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    seen: list[Any] = []
    threads = [
        threading.Thread(target=lambda: seen.append(provider.client("elbv2", REGION))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len({id(c) for c in seen}) == 1
    assert provider.client("elbv2", "eu-west-1") is not seen[0]
    assert provider.client("elbv2", "eu-west-1").meta.region_name == "eu-west-1"


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


def test_ips_outside_the_vpc_are_registered_in_zone_all(world: World, proxy: FaultProxy, moto: str) -> None:
    # Its own VPC, since it adds a secondary CIDR (EKS custom networking) to it.
    vpc_id = create_vpc(moto)
    dummy_session().client("ec2", endpoint_url=moto).associate_vpc_cidr_block(
        VpcId=vpc_id, CidrBlock="100.64.0.0/16"
    )
    arn = world.elbv2.create_target_group(
        Name=f"t{next(_SEQUENCE)}-az", Protocol="HTTP", Port=8080, VpcId=vpc_id, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    provider = provider_for(proxy)
    ref = world.ref(arn)
    inside, secondary, outside = (
        TargetEndpoint("10.0.3.4", 8080),
        TargetEndpoint("100.64.1.2", 8080),
        TargetEndpoint("192.168.7.8", 8080),
    )
    provider.attach(ref, [inside, secondary, outside])
    registered = sent_targets(proxy.actions("RegisterTargets")[0].params)
    assert {t["Id"]: t.get("AvailabilityZone") for t in registered.values()} == {
        "10.0.3.4": None,
        "100.64.1.2": None,
        "192.168.7.8": "all",
    }
    assert provider.vpc_cidrs(REGION, vpc_id) == ("10.0.0.0/16", "100.64.0.0/16")
    provider.detach(ref, [outside])
    deregistered = sent_targets(proxy.actions("DeregisterTargets")[0].params)
    assert [t.get("AvailabilityZone") for t in deregistered.values()] == ["all"]
    assert world.registered(arn) == {inside, secondary}


def test_invalid_endpoints_are_refused_before_any_call(world: World, proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    good = TargetEndpoint("10.0.0.5", 8080)
    bad = [TargetEndpoint("fd00::5", 8080), TargetEndpoint("10.0.0.6", 0), TargetEndpoint("not-an-ip", 80)]
    with pytest.raises(InvalidEndpoints) as info:
        provider.attach(world.ref(), [good, *bad])
    assert isinstance(info.value, RejectedError)
    assert set(info.value.endpoints) == set(bad)
    assert proxy.actions("RegisterTargets") == []
    # An IPv6 group refuses IPv4 and takes IPv6 (family from the group's IpAddressType).
    ipv6 = world.ref(world.ipv6_arn)
    with pytest.raises(InvalidEndpoints) as info:
        provider.attach(ipv6, [TargetEndpoint("10.0.0.5", 8080), TargetEndpoint("2600:1f18::5", 8080)])
    assert info.value.endpoints == (TargetEndpoint("10.0.0.5", 8080),)
    provider.attach(ipv6, [TargetEndpoint("2600:1f18::5", 8080)])
    assert world.registered(world.ipv6_arn) == {TargetEndpoint("2600:1f18::5", 8080)}


def test_an_instance_target_group_is_refused(world: World, proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    ref = world.ref(world.instance_arn)
    with pytest.raises(InvalidTarget, match=r"type 'instance'.*'ip'"):
        provider.ensure_target(ref, binding=BINDING, spec=world.spec(world.instance_arn))
    with pytest.raises(InvalidTarget):
        provider.attach(ref, [TargetEndpoint("10.0.0.5", 8080)])
    assert proxy.actions("RegisterTargets") == []


def test_a_missing_target_group_is_target_not_found(world: World, proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    arn = world.ip_arn.rsplit("/", 1)[0] + "/0123456789abcdef"
    with pytest.raises(TargetNotFound):
        provider.ensure_target(world.ref(arn), binding=BINDING, spec=world.spec(arn))


def test_detach_is_idempotent(world: World, proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    ref = world.ref()
    kept, gone = TargetEndpoint("10.0.0.5", 8080), TargetEndpoint("10.0.0.6", 8080)
    provider.attach(ref, [kept])
    provider.detach(ref, [gone])  # moto answers InvalidTarget: nothing to do, not an error
    provider.attach(ref, [gone])
    provider.detach(ref, [gone, TargetEndpoint("10.0.0.7", 8080)])  # retried with the one still there
    assert world.registered() == {kept}


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


# ------------------------------------------------------------------------------ errors, throttling


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_throttling_is_retried_by_botocore_and_paced_by_the_bucket(
    world: World, proxy: FaultProxy, fast_retries: None, mode: str
) -> None:
    provider = provider_for(proxy, max_attempts=3, retry_mode=mode)
    ref = world.ref()
    wanted = addresses(450)
    proxy.fail_next("RegisterTargets", 2)  # the first chunk is throttled twice, then goes through
    provider.attach(ref, wanted)
    assert len(proxy.actions("RegisterTargets")) == 3 + 2
    assert world.registered() == set(wanted)
    # Every HTTP attempt, retries included, took a token from the RegisterTargets bucket.
    assert provider.limits(REGION)["RegisterTargets|DeregisterTargets"].granted == 5


def test_throttling_beyond_max_attempts_is_transient(
    world: World, proxy: FaultProxy, fast_retries: None
) -> None:
    provider = provider_for(proxy, max_attempts=1)
    ref = world.ref()
    provider.describe_group(ref)
    proxy.fail_next("RegisterTargets", 1)
    with pytest.raises(TransientError, match="Throttling"):
        provider.attach(ref, [TargetEndpoint("10.0.0.5", 8080)])
    assert len(proxy.actions("RegisterTargets")) == 1
    provider.attach(ref, [TargetEndpoint("10.0.0.5", 8080)])  # the reconciler's retry
    assert world.registered() == {TargetEndpoint("10.0.0.5", 8080)}


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (503, "ServiceUnavailable", TransientError),
        (500, "InternalFailure", TransientError),
        (400, "RequestLimitExceeded", TransientError),
        (400, "ValidationError", RejectedError),
        (400, "InvalidTarget", RejectedError),
        (403, "AccessDenied", InvalidTarget),
        (400, "TargetGroupNotFound", TargetNotFound),
        (400, "SomethingNew", ProviderError),
    ],
)
def test_api_errors_map_onto_negsync_errors(
    world: World, proxy: FaultProxy, fast_retries: None, status: int, code: str, error: type[Exception]
) -> None:
    provider = provider_for(proxy, max_attempts=1)
    ref = world.ref()
    provider.describe_group(ref)
    proxy.fail_next("RegisterTargets", 1, status=status, code=code)
    with pytest.raises(error) as info:
        provider.attach(ref, [TargetEndpoint("10.0.0.5", 8080)])
    assert code in str(info.value)


def test_an_unreachable_endpoint_is_transient(aws_env: None) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = AwsProvider(
        endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout=1, read_timeout=1
    )
    arn = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/x/0123456789abcdef"
    with pytest.raises(TransientError):
        provider.describe_group(TargetRef("aws", REGION, arn))


def test_missing_credentials_are_not_transient(
    aws_env: None, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = AwsProvider(endpoint_url=moto, max_attempts=1)
    arn = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/x/0123456789abcdef"
    with pytest.raises(ProviderError, match="credentials") as info:
        provider.describe_group(TargetRef("aws", REGION, arn))
    assert not isinstance(info.value, TransientError)


def test_the_bucket_paces_register_calls_in_virtual_time(world: World, proxy: FaultProxy) -> None:
    clock = VirtualClock()
    provider = provider_for(proxy, clock=clock, rate_limits={"RegisterTargets": (1.0, 2)})
    ref = world.ref()
    provider.describe_group(ref)
    provider.vpc_cidrs(REGION, world.vpc_id)
    done = threading.Event()

    def attach_all() -> None:
        provider.attach(ref, addresses(1000))
        done.set()

    worker = threading.Thread(target=attach_all, daemon=True)
    worker.start()  # 5 chunks: a burst of 2, then one per virtual second

    def calls() -> int:
        return len(proxy.actions("RegisterTargets"))

    wait_for(lambda: calls() == 2 and clock.next_deadline() is not None)
    for expected in (3, 4, 5):
        assert calls() == expected - 1  # parked on the bucket until the clock moves
        clock.advance(1.0)
        wait_for(lambda expected=expected: calls() == expected)  # type: ignore[misc]
        if expected < 5:
            wait_for(lambda: clock.next_deadline() is not None)
    worker.join(timeout=10)
    assert done.is_set()
    assert len(world.registered()) == 1000


# ------------------------------------------------------------------------------ ownership


def reconcile_once(
    provider: AwsProvider,
    binding: BindingKey,
    spec: AwsTargetGroupTarget,
    endpoints: Iterable[TargetEndpoint],
    store: OwnershipStore,
) -> None:
    """What the reconciler does for one target, synchronously: remember before attach, detach owned."""
    groups = provider.targets_for(
        binding=binding, spec=spec, endpoints=[Endpoint(e.ip, e.port) for e in endpoints]
    )
    for ref, desired in groups.items():
        provider.ensure_target(ref, binding=binding, spec=spec)
        present = {e for e, h in provider.list_endpoints(ref).items() if h.counts_as_present}
        plan = diff(desired, present, owned=store.owned(binding, ref) if spec.shared else None)
        for batch in chunks(plan.detach, limit=provider.max_batch_size):
            provider.detach(ref, batch)
            store.forget(binding, ref, batch)
        for batch in chunks(plan.attach, limit=provider.max_batch_size):
            if spec.shared:
                store.remember(binding, ref, batch)
            provider.attach(ref, batch)


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
    from negsync.core.reconciling import Reconciler
    from negsync.core.records import DesiredBinding

    provider = provider_for(proxy)
    web, admin = addresses(3), addresses(2, prefix="10.0.200")
    desired = {
        BINDING: DesiredBinding(
            BINDING, _binding_spec(world.spec()), tuple(Endpoint(e.ip, e.port) for e in web)
        ),
        OTHER: DesiredBinding(
            OTHER, _binding_spec(world.spec()), tuple(Endpoint(e.ip, e.port) for e in admin)
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


def _binding_spec(target: TargetSpec) -> BindingSpec:
    return BindingSpec(service_name="web", service_port=8080, target=target)


def test_the_reconciler_syncs_450_targets_in_three_calls(world: World, proxy: FaultProxy) -> None:
    from negsync.core.reconciling import Reconciler
    from negsync.core.records import DesiredBinding

    provider = provider_for(proxy)
    endpoints = tuple(Endpoint(e.ip, e.port) for e in addresses(450))
    current = {BINDING: DesiredBinding(BINDING, _binding_spec(world.spec(shared=True)), endpoints)}
    store = MemoryOwnershipStore()
    reconciler = Reconciler(provider=provider, enqueue=lambda *_: None, ownership=store)
    try:
        reconciler.reconcile(BINDING, current[BINDING])
        wait_for(lambda: reconciler.in_flight() == 0)
        result = reconciler.reconcile(BINDING, current[BINDING])
        assert result.synced and result.count("registered") == 450
        assert len(proxy.actions("RegisterTargets")) == 3
        assert len(store.owned(BINDING, world.ref())) == 450
        current[BINDING] = DesiredBinding(BINDING, _binding_spec(world.spec(shared=True)), ())
        reconciler.reconcile(BINDING, current[BINDING])
        wait_for(lambda: reconciler.in_flight() == 0)
        assert len(proxy.actions("DeregisterTargets")) == 3
        assert world.registered() == set()
    finally:
        reconciler.close()


# ------------------------------------------------------------------------------ slow health and the gate


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
