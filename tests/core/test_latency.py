"""Latency distributions: their values, samples read from files and Prometheus buckets, and field-named errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

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
