"""RegisterTargets and DeregisterTargets in batches of 200, with zones outside the VPC (negsync/providers/aws/registration.py)."""

from __future__ import annotations

from negsync.core.model import Health, TargetEndpoint

from .conftest import (
    BINDING,
    REGION,
    SEQUENCE,
    FaultProxy,
    World,
    addresses,
    create_vpc,
    dummy_session,
    provider_for,
    sent_targets,
)


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


def test_ips_outside_the_vpc_are_registered_in_zone_all(world: World, proxy: FaultProxy, moto: str) -> None:
    # Its own VPC, since it adds a secondary CIDR (EKS custom networking) to it.
    vpc_id = create_vpc(moto)
    dummy_session().client("ec2", endpoint_url=moto).associate_vpc_cidr_block(
        VpcId=vpc_id, CidrBlock="100.64.0.0/16"
    )
    arn = world.elbv2.create_target_group(
        Name=f"t{next(SEQUENCE)}-az", Protocol="HTTP", Port=8080, VpcId=vpc_id, TargetType="ip"
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


def test_detach_is_idempotent(world: World, proxy: FaultProxy) -> None:
    provider = provider_for(proxy)
    ref = world.ref()
    kept, gone = TargetEndpoint("10.0.0.5", 8080), TargetEndpoint("10.0.0.6", 8080)
    provider.attach(ref, [kept])
    provider.detach(ref, [gone])  # moto answers InvalidTarget: nothing to do, not an error
    provider.attach(ref, [gone])
    provider.detach(ref, [gone, TargetEndpoint("10.0.0.7", 8080)])  # retried with the one still there
    assert world.registered() == {kept}
