"""Security-group rules of ``spec.target.awsTargetGroup.networking`` against moto's EC2 (behind the proxy).

negsync authorizes the rules a binding asks for on the security group of the endpoints' ENIs (or a
named one), marks them with its description, revokes only its own when no binding needs them any
more, and never touches another rule.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from negsync.core.bindings import AwsTargetGroupTarget, parse_binding_spec
from negsync.core.model import BindingKey, Endpoint
from negsync.errors import ConfigError, InvalidTarget
from negsync.providers.aws.networking import OWNER_DESCRIPTION
from tests.support.elb_proxy import ElbProxy

from .conftest import dummy_session, provider_for

WEB, ADMIN = BindingKey("shop", "web"), BindingKey("shop", "admin")
PODS = [Endpoint("10.0.1.10", 8080), Endpoint("10.0.1.11", 8080)]
_SEQUENCE = itertools.count()


@dataclass
class Net:
    arn: str
    node_sg: str
    alb_sg: str
    other_sg: str
    ec2: Any

    def rules(self, group: str) -> set[tuple[str, int, str, str]]:
        found = self.ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])
        return {(r["IpProtocol"], r["FromPort"],
                 (r.get("ReferencedGroupInfo") or {}).get("GroupId") or r.get("CidrIpv4", ""), r.get("Description", ""))
                for r in found["SecurityGroupRules"] if not r["IsEgress"]}

    def spec(self, *peers: dict[str, Any], ports: list[dict[str, Any]] | None = None, group: str = "") -> AwsTargetGroupTarget:
        networking: dict[str, Any] = {"ingress": [{"from": list(peers), **({"ports": ports} if ports else {})}]}
        if group:
            networking["securityGroup"] = group
        parsed = parse_binding_spec({"serviceRef": {"name": "web", "port": 8080},
                                     "target": {"awsTargetGroup": {"arn": self.arn, "networking": networking}}})
        assert isinstance(parsed.target, AwsTargetGroupTarget)
        return parsed.target


FOREIGN = {("tcp", 22, "10.0.0.0/8", "ssh from the bastion"), ("tcp", 8080, "192.168.0.0/16", "ops")}


@pytest.fixture
def net(moto: str, proxy: ElbProxy) -> Net:
    session = dummy_session()
    # EC2 through the proxy, which answers DescribeSecurityGroupRules with descriptions as AWS does.
    ec2, elbv2 = session.client("ec2", endpoint_url=proxy.url), session.client("elbv2", endpoint_url=moto)
    n = next(_SEQUENCE)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    node_sg, alb_sg, other_sg = (ec2.create_security_group(GroupName=f"{name}-{n}", Description=name, VpcId=vpc)["GroupId"]
                                 for name in ("node", "alb", "other"))
    # A node ENI: its primary address and, as secondary addresses, the pod IPs (how the VPC CNI works).
    ec2.create_network_interface(SubnetId=subnet, Groups=[node_sg], PrivateIpAddresses=[
        {"PrivateIpAddress": "10.0.1.100", "Primary": True},
        *({"PrivateIpAddress": p.ip, "Primary": False} for p in PODS)])
    for protocol, port, cidr, description in FOREIGN:  # rules someone else made: never touched
        ec2.authorize_security_group_ingress(GroupId=node_sg, IpPermissions=[
            {"IpProtocol": protocol, "FromPort": port, "ToPort": port,
             "IpRanges": [{"CidrIp": cidr, "Description": description}]}])
    arn = elbv2.create_target_group(Name=f"net-{n}", Protocol="HTTP", Port=8080, VpcId=vpc,
                                    TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    return Net(str(arn), node_sg, alb_sg, other_sg, ec2)


def alb(net: Net) -> dict[str, Any]:
    return {"securityGroup": {"groupID": net.alb_sg}}


def test_rules_are_opened_on_the_pods_eni_group_and_marked(net: Net, proxy: ElbProxy) -> None:
    provider = provider_for(proxy)
    fixture_revokes = len(proxy.actions("RevokeSecurityGroupIngress"))
    spec = net.spec(alb(net), {"ipBlock": {"cidr": "10.9.0.0/16"}})
    assert provider.reconcile_networking(binding=WEB, spec=spec, endpoints=PODS) == net.node_sg
    assert net.rules(net.node_sg) == FOREIGN | {("tcp", 8080, net.alb_sg, OWNER_DESCRIPTION),
                                                ("tcp", 8080, "10.9.0.0/16", OWNER_DESCRIPTION)}
    # Nothing changed: no EC2 call at all the next time.
    before = len(proxy.calls)
    provider.reconcile_networking(binding=WEB, spec=spec, endpoints=PODS)
    assert len(proxy.calls) == before
    # The ipBlock is dropped from the spec: only that rule goes; the others stay.
    provider.reconcile_networking(binding=WEB, spec=net.spec(alb(net)), endpoints=PODS)
    assert net.rules(net.node_sg) == FOREIGN | {("tcp", 8080, net.alb_sg, OWNER_DESCRIPTION)}
    revokes = proxy.actions("RevokeSecurityGroupIngress")[fixture_revokes:]
    assert len(revokes) == 1 and len([k for k in revokes[0].params if k.startswith("SecurityGroupRuleId")]) == 1


def test_a_rule_two_bindings_need_stays_until_the_last_one_is_deleted(net: Net, proxy: ElbProxy) -> None:
    provider = provider_for(proxy)
    ref_spec = net.spec(alb(net))
    provider.reconcile_networking(binding=WEB, spec=ref_spec, endpoints=PODS)
    provider.reconcile_networking(binding=ADMIN, spec=net.spec(alb(net), ports=[{"port": 9090}]), endpoints=PODS)
    ours = {("tcp", 8080, net.alb_sg, OWNER_DESCRIPTION), ("tcp", 9090, net.alb_sg, OWNER_DESCRIPTION)}
    assert net.rules(net.node_sg) == FOREIGN | ours
    from negsync.core.model import TargetRef

    ref = TargetRef("aws", "us-east-1", net.arn)
    assert provider.delete_target(ref, binding=WEB, spec=ref_spec) is False  # the binding is deleted
    assert net.rules(net.node_sg) == FOREIGN | {("tcp", 9090, net.alb_sg, OWNER_DESCRIPTION)}
    provider.delete_target(ref, binding=ADMIN, spec=ref_spec)
    assert net.rules(net.node_sg) == FOREIGN  # every rule of negsync's gone, none of the others


def test_a_named_group_is_used_as_is(net: Net, proxy: ElbProxy) -> None:
    provider = provider_for(proxy)
    looked_up = len(proxy.actions("DescribeNetworkInterfaces"))
    spec = net.spec({"ipBlock": {"cidr": "10.9.0.0/16"}}, ports=[{"protocol": "UDP", "port": 5353}], group=net.other_sg)
    assert provider.reconcile_networking(binding=WEB, spec=spec, endpoints=PODS) == net.other_sg
    assert net.rules(net.other_sg) == {("udp", 5353, "10.9.0.0/16", OWNER_DESCRIPTION)}
    assert len(proxy.actions("DescribeNetworkInterfaces")) == looked_up
    assert net.rules(net.node_sg) == FOREIGN


def test_a_rule_that_exists_without_our_mark_is_left_alone(net: Net, proxy: ElbProxy) -> None:
    provider = provider_for(proxy)
    spec = net.spec({"ipBlock": {"cidr": "192.168.0.0/16"}})  # the "ops" rule already admits it
    provider.reconcile_networking(binding=WEB, spec=spec, endpoints=PODS)
    provider.release(WEB)
    provider.reconcile_networking(binding=WEB, spec=net.spec(alb(net)), endpoints=PODS)
    assert ("tcp", 8080, "192.168.0.0/16", "ops") in net.rules(net.node_sg)
    assert not [r for r in net.rules(net.node_sg) if r[2] == "192.168.0.0/16" and r[3] == OWNER_DESCRIPTION]


def test_enis_with_several_groups_need_a_named_one(net: Net, proxy: ElbProxy) -> None:
    ec2 = net.ec2
    eni = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [net.node_sg]}])["NetworkInterfaces"][0]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"], Groups=[net.node_sg, net.other_sg])
    provider = provider_for(proxy)
    authorized = len(proxy.actions("AuthorizeSecurityGroupIngress"))
    with pytest.raises(InvalidTarget, match=r"several security groups.*networking\.securityGroup"):
        provider.reconcile_networking(binding=WEB, spec=net.spec(alb(net)), endpoints=PODS)
    assert len(proxy.actions("AuthorizeSecurityGroupIngress")) == authorized


def test_no_networking_section_makes_no_ec2_call(net: Net, proxy: ElbProxy) -> None:
    provider = provider_for(proxy)
    before = len(proxy.calls)
    assert provider.reconcile_networking(binding=WEB, spec=AwsTargetGroupTarget(arn=net.arn), endpoints=PODS) is None
    assert len(proxy.calls) == before


@pytest.mark.parametrize(
    ("networking", "field"),
    [
        ({"ingress": [{"from": []}]}, "networking.ingress[0].from"),
        ({"ingress": [{"from": [{"securityGroup": {"groupID": "alb"}}]}]}, "networking.ingress[0].from[0].securityGroup.groupID"),
        ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}, "networking.ingress[0].from[0].ipBlock.cidr"),
        ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "securityGroup": {"groupID": "sg-12345678"}}]}]},
         "networking.ingress[0].from[0]"),
        ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 0}]}]},
         "networking.ingress[0].ports[0].port"),
        ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 80, "protocol": "ICMP"}]}]},
         "networking.ingress[0].ports[0].protocol"),
        ({"securityGroup": "default"}, "networking.securityGroup"),
        ({"egress": []}, "networking.egress"),
    ],
)
def test_bad_networking_names_the_field(networking: dict[str, Any], field: str) -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
    with pytest.raises(ConfigError) as info:
        parse_binding_spec({"serviceRef": {"name": "web", "port": 80},
                            "target": {"awsTargetGroup": {"arn": arn, "networking": networking}}})
    assert info.value.field == f"spec.target.awsTargetGroup.{field}"


def test_every_page_of_the_ec2_listings_is_read(aws_env: None) -> None:
    """DescribeNetworkInterfaces and DescribeSecurityGroupRules page (NextToken; botocore's ec2
    paginators-1.json): the ENI holding the pods' IPs, and negsync's own rule, on a second page
    must be seen — else the binding fails ("no ENI") or the rule is authorized again."""
    from botocore.stub import Stubber

    from negsync.core.bindings import AwsIngressRule, AwsNetworking
    from negsync.core.clock import RealClock
    from negsync.core.model import TargetEndpoint
    from negsync.providers.aws.calls import DEFAULT_RATE_LIMITS, AwsApi
    from negsync.providers.aws.networking import SecurityGroupRules

    from .conftest import REGION

    api = AwsApi(endpoint_url="http://127.0.0.1:9", max_attempts=1, retry_mode="standard",
                 rate_limits=DEFAULT_RATE_LIMITS, clock=RealClock(), session=dummy_session(),
                 connect_timeout=1, read_timeout=1)
    members = [TargetEndpoint("10.0.1.10", 8080)]
    enis = [{"Name": "addresses.private-ip-address", "Values": ["10.0.1.10"]}, {"Name": "vpc-id", "Values": ["vpc-1"]}]
    rules = [{"Name": "group-id", "Values": ["sg-pods"]}]
    ours = {"SecurityGroupRuleId": "sgr-1", "GroupId": "sg-pods", "IsEgress": False, "IpProtocol": "tcp",
            "FromPort": 8080, "ToPort": 8080, "ReferencedGroupInfo": {"GroupId": "sg-alb"},
            "Description": OWNER_DESCRIPTION}
    with Stubber(api.client("ec2", REGION)) as stub:
        stub.add_response("describe_network_interfaces", {"NetworkInterfaces": [], "NextToken": "p2"}, {"Filters": enis})
        stub.add_response("describe_network_interfaces", {"NetworkInterfaces": [{
            "Groups": [{"GroupId": "sg-pods"}], "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.1.10"}]}]},
            {"Filters": enis, "NextToken": "p2"})
        stub.add_response("describe_security_group_rules", {"SecurityGroupRules": [], "NextToken": "p2"},
                          {"Filters": rules})
        stub.add_response("describe_security_group_rules", {"SecurityGroupRules": [ours]},
                          {"Filters": rules, "NextToken": "p2"})
        keeper = SecurityGroupRules(call=api.call, clock=RealClock())
        networking = AwsNetworking(ingress=(AwsIngressRule(peers=("sg-alb",)),))
        # No AuthorizeSecurityGroupIngress is stubbed: authorizing the rule again would fail here.
        assert keeper.reconcile(region=REGION, vpc_id="vpc-1", binding=WEB, networking=networking,
                                endpoints=members) == "sg-pods"
        stub.assert_no_pending_responses()
