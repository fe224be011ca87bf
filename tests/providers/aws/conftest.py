"""Fixtures and helpers of the AWS provider tests: moto worlds, providers behind the AWS-faithful proxy.

Every AWS call of the provider goes through the loopback :class:`FaultProxy` (tests/support/elb_proxy.py),
which counts calls per action, records their parameters (so tests can see ``AvailabilityZone=all``)
and injects ``Throttling`` and other errors.  Fixtures (VPC, target groups) are created by a
separate boto3 client straight against moto, so they never show up in the counts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.retries.standard
import pytest

from negsync.core.batching import chunks
from negsync.core.bindings import AwsTargetGroupTarget, BindingSpec, TargetSpec
from negsync.core.diffs import diff
from negsync.core.model import BindingKey, Endpoint, TargetEndpoint, TargetRef
from negsync.core.ports import OwnershipStore
from negsync.providers.aws import (
    AwsProvider,
)
from tests.support.elb_proxy import ElbProxy as FaultProxy
from tests.support.moto import REGION

__all__ = [
    "BINDING",
    "OTHER",
    "REGION",
    "SEQUENCE",
    "FaultProxy",
    "World",
    "addresses",
    "binding_spec",
    "create_vpc",
    "dummy_session",
    "fast_retries",
    "provider_for",
    "reconcile_once",
    "sent_targets",
    "world",
]


BINDING = BindingKey("shop", "web")


OTHER = BindingKey("shop", "admin")


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


SEQUENCE = itertools.count()


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
    test = next(SEQUENCE)

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


def binding_spec(target: TargetSpec) -> BindingSpec:
    return BindingSpec(service_name="web", service_port=8080, target=target)
