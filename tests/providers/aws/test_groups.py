"""Target-group resolution: type, existence (negsync/providers/aws/groups.py)."""

from __future__ import annotations

import pytest

from negsync.core.model import TargetEndpoint
from negsync.errors import (
    InvalidTarget,
    TargetNotFound,
)

from .conftest import (
    BINDING,
    FaultProxy,
    World,
    provider_for,
)


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
