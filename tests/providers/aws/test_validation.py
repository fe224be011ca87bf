"""Which endpoints an ``ip`` target group can take (negsync/providers/aws/validation.py)."""

from __future__ import annotations

import pytest

from negsync.core.model import TargetEndpoint
from negsync.errors import (
    RejectedError,
)
from negsync.providers.aws import (
    InvalidEndpoints,
    invalid_endpoints,
)

from .conftest import (
    FaultProxy,
    World,
    provider_for,
)


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
