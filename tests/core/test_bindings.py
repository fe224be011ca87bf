"""TargetBinding spec parsing: a good spec becomes a frozen record, a bad one an error naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from negsync.core.bindings import AwsTargetGroupTarget, GcpNegTarget, parse_binding_spec
from negsync.errors import ConfigError

GOOD = {"serviceRef": {"name": "web", "port": "http"},
        "target": {"gcpNeg": {"project": "my-project", "network": "default", "zones": ["us-central1-a"]}}}


def test_a_good_spec_parses() -> None:
    spec = parse_binding_spec(GOOD)
    assert spec.service_port == "http" and spec.readiness_gate and spec.ip_family == "IPv4"
    assert isinstance(spec.target, GcpNegTarget) and spec.target.zones == ("us-central1-a",)
    aws = parse_binding_spec({
        "serviceRef": {"name": "web", "port": 80},
        "target": {"awsTargetGroup": {"arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:"
                                             "targetgroup/web/0123456789abcdef", "shared": True}},
    })
    assert isinstance(aws.target, AwsTargetGroupTarget) and aws.target.region == "eu-west-1" and aws.target.shared


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"target": {}}, "spec.target"),
        ({"target": {"gcpNeg": GOOD["target"]["gcpNeg"], "awsTargetGroup": {"arn": "x"}}}, "spec.target"),
        ({"target": {"awsTargetGroup": {"arn": "arn:aws:nope"}}}, "spec.target.awsTargetGroup.arn"),
        ({"target": {"gcpNeg": {"project": "X!", "network": "n"}}}, "spec.target.gcpNeg.project"),
        ({"target": {"gcpNeg": {"project": "my-project", "network": "n", "namePrefix": "a" * 40}}},
         "spec.target.gcpNeg.namePrefix"),
        ({"serviceRef": {"name": "web", "port": -1}}, "spec.serviceRef.port"),
        ({"serviceRef": {"name": "web", "port": 70000}}, "spec.serviceRef.port"),
        ({"serviceRef": {"name": "web"}}, "spec.serviceRef.port"),
        ({"serviceRef": {"port": 80}}, "spec.serviceRef.name"),
        ({"readinessGate": "yes"}, "spec.readinessGate"),
        ({"ipFamily": "IPv5"}, "spec.ipFamily"),
        ({"target": {"azure": {}}}, "spec.target.azure"),
    ],
)
def test_bad_specs_name_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_binding_spec({**GOOD, **patch})
    assert info.value.field == field
    assert str(info.value).startswith(field)
