"""Availability zones of ELBv2 targets, against moto behind the AWS-faithful proxy (tests/support/elb_proxy.py).

* An IP outside the VPC needs a zone; ``all`` is refused by an ALB target group whose cross-zone
  load balancing is off (LBC issue #4477), so negsync reads the group attribute or learns it from
  AWS's ValidationError, registers with the endpoint's zone, and remembers the choice.
* Deregistration uses the TargetDescription DescribeTargetHealth reported (LBC PR #4544): a
  recomputed zone that differs deregisters nothing on AWS.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from negsync.core.model import BindingKey, Endpoint, TargetEndpoint, TargetRef
from negsync.errors import TransientError
from negsync.providers.aws import AwsProvider, InvalidEndpoints
from tests.support.elb_proxy import ElbProxy

from .conftest import REGION, dummy_session, provider_for, sent_targets

BINDING = BindingKey("shop", "web")
_SEQUENCE = itertools.count()
OUTSIDE = TargetEndpoint("192.168.7.8", 8080)  # a peered VPC's pod: outside the group's VPC
INSIDE = TargetEndpoint("10.0.1.5", 8080)  # in subnet 10.0.1.0/24, zone us-east-1a


@dataclass
class Group:
    arn: str
    elbv2: Any

    @property
    def ref(self) -> TargetRef:
        return TargetRef("aws", REGION, self.arn)

    def spec(self) -> Any:
        from negsync.core.bindings import AwsTargetGroupTarget

        return AwsTargetGroupTarget(arn=self.arn)

    def registered(self) -> set[TargetEndpoint]:
        described = self.elbv2.describe_target_health(TargetGroupArn=self.arn)["TargetHealthDescriptions"]
        return {TargetEndpoint(d["Target"]["Id"], d["Target"]["Port"]) for d in described}

    def cross_zone(self, value: str) -> None:
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=self.arn, Attributes=[{"Key": "load_balancing.cross_zone.enabled", "Value": value}]
        )


def make_group(moto: str, *, protocol: str = "HTTP", cross_zone: str | None = None) -> Group:
    """A target group of type ip in its own VPC with two zoned subnets (AWS detects zones from them)."""
    session = dummy_session()
    ec2, elbv2 = session.client("ec2", endpoint_url=moto), session.client("elbv2", endpoint_url=moto)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24", AvailabilityZone="us-east-1b")
    arn = elbv2.create_target_group(
        Name=f"z{next(_SEQUENCE)}-{protocol.lower()}", Protocol=protocol, Port=8080, VpcId=vpc, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    group = Group(str(arn), elbv2)
    if cross_zone is not None:
        group.cross_zone(cross_zone)
    return group


def desire(provider: AwsProvider, group: Group, *endpoints: Endpoint) -> None:
    """What the reconciler does first: tell the provider the desired endpoints (with their zones)."""
    provider.targets_for(binding=BINDING, spec=group.spec(), endpoints=endpoints)


def zones_sent(proxy: ElbProxy, action: str) -> list[dict[str, str | None]]:
    return [
        {t["Id"]: t.get("AvailabilityZone") for t in sent_targets(call.params).values()}
        for call in proxy.actions(action)
    ]


def test_an_alb_group_with_cross_zone_off_gets_the_endpoints_zone(moto: str, proxy: ElbProxy) -> None:
    group = make_group(moto, cross_zone="false")
    provider = provider_for(proxy)
    desire(provider, group, Endpoint(OUTSIDE.ip, OUTSIDE.port, zone="us-east-1b"), Endpoint(INSIDE.ip, INSIDE.port))
    provider.attach(group.ref, [OUTSIDE, INSIDE])
    assert zones_sent(proxy, "RegisterTargets") == [{OUTSIDE.ip: "us-east-1b", INSIDE.ip: None}]
    assert [c.status for c in proxy.actions("RegisterTargets")] == [200]
    assert group.registered() == {OUTSIDE, INSIDE}
    assert len(proxy.actions("DescribeTargetGroupAttributes")) == 1
    # Remembered per group: the next outside IP goes straight in with its zone, no second read.
    other = TargetEndpoint("192.168.7.9", 8080)
    desire(provider, group, Endpoint(other.ip, other.port, zone="us-east-1a"))
    provider.attach(group.ref, [other])
    assert zones_sent(proxy, "RegisterTargets")[-1] == {other.ip: "us-east-1a"}
    assert len(proxy.actions("DescribeTargetGroupAttributes")) == 1
    # AWS reports the zones it recorded: given ones outside, detected ones inside.
    provider.list_endpoints(group.ref)
    assert {e: r.zone for e, r in provider.reported(group.ref).items()} == {
        OUTSIDE: "us-east-1b", INSIDE: "us-east-1a", other: "us-east-1a"}


def test_the_validation_error_teaches_the_zone_rule_when_the_attribute_cannot_be_read(
    moto: str, proxy: ElbProxy
) -> None:
    group = make_group(moto, cross_zone="false")
    provider = provider_for(proxy, max_attempts=1)
    proxy.fail_next("DescribeTargetGroupAttributes", 1, status=403, code="AccessDenied")
    desire(provider, group, Endpoint(OUTSIDE.ip, OUTSIDE.port, zone="us-east-1b"))
    provider.attach(group.ref, [OUTSIDE])
    assert zones_sent(proxy, "RegisterTargets") == [{OUTSIDE.ip: "all"}, {OUTSIDE.ip: "us-east-1b"}]
    assert [c.status for c in proxy.actions("RegisterTargets")] == [400, 200]
    assert group.registered() == {OUTSIDE}
    other = TargetEndpoint("192.168.7.9", 8080)
    desire(provider, group, Endpoint(other.ip, other.port, zone="us-east-1a"))
    provider.attach(group.ref, [other])
    assert zones_sent(proxy, "RegisterTargets")[-1] == {other.ip: "us-east-1a"}  # remembered: no second 400


@pytest.mark.parametrize(("protocol", "cross_zone"), [("TCP", "false"), ("HTTP", None), ("HTTP", "true")])
def test_all_is_kept_where_aws_accepts_it(moto: str, proxy: ElbProxy, protocol: str, cross_zone: str | None) -> None:
    # An NLB group ignores the rule (LBC PR #4496); an ALB group with cross-zone on (or following
    # the ALB, where it is always on) takes "all".
    group = make_group(moto, protocol=protocol, cross_zone=cross_zone)
    provider = provider_for(proxy)
    desire(provider, group, Endpoint(OUTSIDE.ip, OUTSIDE.port, zone="us-east-1b"))
    provider.attach(group.ref, [OUTSIDE])
    assert zones_sent(proxy, "RegisterTargets") == [{OUTSIDE.ip: "all"}]
    assert group.registered() == {OUTSIDE}
    assert len(proxy.actions("DescribeTargetGroupAttributes")) == (0 if protocol == "TCP" else 1)


def test_an_outside_endpoint_without_a_zone_is_rejected_by_name(moto: str, proxy: ElbProxy) -> None:
    group = make_group(moto, cross_zone="false")
    provider = provider_for(proxy)
    desire(provider, group, Endpoint(OUTSIDE.ip, OUTSIDE.port), Endpoint(INSIDE.ip, INSIDE.port))
    with pytest.raises(InvalidEndpoints) as info:
        provider.attach(group.ref, [OUTSIDE, INSIDE])
    assert info.value.endpoints == (OUTSIDE,)
    assert "cross-zone" in info.value.reasons[OUTSIDE] and "zone" in info.value.reasons[OUTSIDE]
    assert proxy.actions("RegisterTargets") == []


def test_deregistration_uses_the_zone_aws_reported_not_a_recomputed_one(moto: str, proxy: ElbProxy) -> None:
    # LBC PR #4544: registered in its own zone while cross-zone was off; the attribute is turned on
    # since, so a recomputed description says "all" — which AWS answers with success and ignores.
    group = make_group(moto, cross_zone="false")
    provider = provider_for(proxy)
    desire(provider, group, Endpoint(OUTSIDE.ip, OUTSIDE.port, zone="us-east-1b"), Endpoint(INSIDE.ip, INSIDE.port))
    provider.attach(group.ref, [OUTSIDE, INSIDE])
    group.cross_zone("true")
    restarted = provider_for(proxy)  # a new process: nothing remembered but what AWS reports
    members = restarted.list_endpoints(group.ref)
    assert set(members) == {OUTSIDE, INSIDE}
    restarted.detach(group.ref, [OUTSIDE, INSIDE])
    assert zones_sent(proxy, "DeregisterTargets") == [{OUTSIDE.ip: "us-east-1b", INSIDE.ip: "us-east-1a"}]
    assert group.registered() == set()


def test_a_member_never_listed_is_found_again_by_the_confirming_list(moto: str, proxy: ElbProxy) -> None:
    group = make_group(moto, cross_zone="false")
    provider = provider_for(proxy)
    desire(provider, group, Endpoint(OUTSIDE.ip, OUTSIDE.port, zone="us-east-1b"))
    provider.attach(group.ref, [OUTSIDE])
    group.cross_zone("true")
    restarted = provider_for(proxy)
    restarted.detach(group.ref, [OUTSIDE])  # computed "all" first: AWS ignores it; the listing tells the truth
    assert zones_sent(proxy, "DeregisterTargets") == [{OUTSIDE.ip: "all"}, {OUTSIDE.ip: "us-east-1b"}]
    assert group.registered() == set()


def test_deregistering_what_is_not_registered_succeeds_in_one_call(moto: str, proxy: ElbProxy) -> None:
    group = make_group(moto)
    provider = provider_for(proxy)
    provider.attach(group.ref, [INSIDE])
    gone = TargetEndpoint("10.0.1.77", 8080)
    provider.detach(group.ref, [gone])  # AWS: success, nothing to do (moto alone: InvalidTarget)
    assert [c.status for c in proxy.actions("DeregisterTargets")] == [200]
    assert group.registered() == {INSIDE}


def test_a_deregistration_aws_ignores_twice_is_a_transient_error(moto: str, proxy: ElbProxy) -> None:
    group = make_group(moto)
    provider_for(proxy).attach(group.ref, [INSIDE])
    # A restarted process: it never listed nor registered the member, so its description is computed
    # and success proves nothing.  AWS answers success and keeps the target, both times (as for a
    # description that does not match).
    provider = provider_for(proxy)
    proxy.ignore_deregistrations(2)
    with pytest.raises(TransientError, match="still registered"):
        provider.detach(group.ref, [INSIDE])
    assert group.registered() == {INSIDE}


def test_a_member_named_as_registered_needs_no_confirming_listing(moto: str, proxy: ElbProxy) -> None:
    # Issue 18: AWS matches a description it reported or accepted exactly; a DescribeTargetHealth
    # after every DeregisterTargets made churn cost 1.5x the writes (goal: 1.2x).
    group = make_group(moto)
    provider = provider_for(proxy)
    provider.attach(group.ref, [INSIDE])
    before = len([c for c in proxy.calls if c.action == "DescribeTargetHealth"])
    provider.detach(group.ref, [INSIDE])
    assert len([c for c in proxy.calls if c.action == "DescribeTargetHealth"]) == before
    assert group.registered() == set()


def test_two_shared_bindings_on_one_group_keep_their_own_zones(moto: str, proxy: ElbProxy) -> None:
    group = make_group(moto, cross_zone="false")
    provider = provider_for(proxy)
    other = TargetEndpoint("192.168.7.9", 8080)
    from negsync.core.bindings import AwsTargetGroupTarget

    shared = AwsTargetGroupTarget(arn=group.arn, shared=True)
    provider.targets_for(binding=BINDING, spec=shared, endpoints=[Endpoint(OUTSIDE.ip, OUTSIDE.port, zone="us-east-1b")])
    provider.targets_for(binding=BindingKey("shop", "admin"), spec=shared,
                         endpoints=[Endpoint(other.ip, other.port, zone="us-east-1a")])
    provider.attach(group.ref, [OUTSIDE, other])  # one batch holding both bindings' members
    assert zones_sent(proxy, "RegisterTargets") == [{OUTSIDE.ip: "us-east-1b", other.ip: "us-east-1a"}]
    assert group.registered() == {OUTSIDE, other}
