"""Clients, the credential chain, the shared throttle budget, retries, paging and errors of every AWS call.

negsync/providers/aws/calls.py, against moto behind the AWS-faithful proxy.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from negsync.core.clock import VirtualClock
from negsync.core.model import Health, TargetEndpoint, TargetRef
from negsync.core.ports import TargetProvider
from negsync.errors import (
    ConfigError,
    InvalidTarget,
    ProviderError,
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.aws import (
    DEFAULT_RATE_LIMITS,
    AwsProvider,
)
from negsync.providers.ratelimit import RateLimits, parse_rate_limits
from tests.support.waiting import wait_for

from .conftest import (
    BINDING,
    REGION,
    FaultProxy,
    World,
    addresses,
    provider_for,
)


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
