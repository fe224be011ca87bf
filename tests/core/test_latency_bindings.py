"""Latency distributions and TargetBinding spec parsing: values and field-named errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from negsync.core.bindings import AwsTargetGroupTarget, GcpNegTarget, parse_binding_spec
from negsync.core.latency import Empirical, Fixed, LogNormal, parse_distribution, read_samples
from negsync.errors import ConfigError


def test_lognormal_hits_its_quoted_percentiles() -> None:
    dist = parse_distribution({"dist": "lognormal", "p50": 20, "p99": 90}, field="lb.attach_delay")
    assert isinstance(dist, LogNormal)
    values = dist.sample(np.random.default_rng(1), 200_000)
    assert np.quantile(values, 0.5) == pytest.approx(20, rel=0.02)
    assert np.quantile(values, 0.99) == pytest.approx(90, rel=0.05)
    assert dist.quantile(0.99) == pytest.approx(90)


@pytest.mark.parametrize(
    ("spec", "mean"),
    [({"dist": "fixed", "value": 3}, 3.0), ({"dist": "uniform", "min": 5, "max": 15}, 10.0),
     ({"dist": "exponential", "mean": 4}, 4.0), (7, 7.0), ({"dist": "empirical", "samples": [1, 2, 3]}, 2.0)],
)
def test_sample_means(spec: Any, mean: float) -> None:
    dist = parse_distribution(spec, field="x")
    values = dist.sample(np.random.default_rng(2), 100_000)
    assert float(np.mean(values)) == pytest.approx(mean, rel=0.03)
    assert dist.mean == pytest.approx(mean)
    assert isinstance(dist.sample(np.random.default_rng(2)), float)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"dist": "lognormal", "p50": 20, "p99": 10}, "d.p99"),
        ({"dist": "fixed", "value": -1}, "d.value"),
        ({"dist": "fixed", "value": "1s"}, "d.value"),
        ({"dist": "gamma", "k": 1}, "d.dist"),
        ({"dist": "fixed", "value": 1, "extra": 2}, "d.extra"),
        ({"dist": "uniform", "min": 3}, "d.max"),
        ({"dist": "uniform", "min": 3, "max": 1}, "d.max"),
        ({"dist": "empirical", "samples": []}, "d.samples"),
        ("fast", "d"),
    ],
)
def test_bad_distributions_name_the_field(spec: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_distribution(spec, field="d")
    assert info.value.field == field


def test_empirical_from_a_file_and_from_prometheus_buckets(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("# seconds\n1.5\n2.5\n")
    dist = parse_distribution({"dist": "empirical", "file": "s.txt"}, field="x", base_dir=tmp_path)
    assert isinstance(dist, Empirical) and dist.samples == (1.5, 2.5)
    text = "\n".join([
        'negsync_gate_seconds_bucket{provider="gcp",le="10"} 10',
        'negsync_gate_seconds_bucket{provider="gcp",le="30"} 40',
        'negsync_gate_seconds_bucket{provider="gcp",le="+Inf"} 40',
    ])
    samples = read_samples(text, field="f")
    assert len(samples) == 40
    assert samples.count(5.0) == 10 and samples.count(20.0) == 30
    with pytest.raises(ConfigError, match="line 2"):
        read_samples("1\nabc\n", field="f")
    with pytest.raises(ConfigError) as info:
        parse_distribution({"dist": "empirical", "file": "missing.txt"}, field="x", base_dir=tmp_path)
    assert info.value.field == "x.file"


def test_equal_percentiles_degenerate_to_fixed() -> None:
    assert parse_distribution({"dist": "lognormal", "p50": 5, "p99": 5}, field="x") == Fixed(5.0)


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
