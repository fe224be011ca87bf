"""The controller's histograms read back (:mod:`negsync.calibration.prometheus`): labels, merges, broken series.

The CLI-level cases run ``negsync calibrate --from`` (the flag this module serves: exit 2 and one line
naming it); the unit cases call :func:`~negsync.calibration.prometheus.measurements` directly.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from negsync.calibration.observables import MAX_SAMPLES
from negsync.calibration.prometheus import measurements, read_histograms
from negsync.cli import main
from negsync.errors import ConfigError

HISTOGRAM = """# TYPE negsync_reaction_latency_seconds histogram
negsync_reaction_latency_seconds_bucket{{{labels},le="0.5"}} {a}
negsync_reaction_latency_seconds_bucket{{{labels},le="1.0"}} {b}
negsync_reaction_latency_seconds_bucket{{{labels},le="+Inf"}} {c}
negsync_reaction_latency_seconds_count{{{labels}}} {c}
negsync_reaction_latency_seconds_sum{{{labels}}} 1.0
"""


def series(labels: str, a: int = 5, b: int = 8, c: int = 10) -> str:
    return HISTOGRAM.format(labels=labels, a=a, b=b, c=c)


def test_provider_means_the_provider_label_not_cloud_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bug: the regex provider="..." matched inside cloud_provider="gcp" and took an aws series for gcp."""
    source = tmp_path / "metrics.txt"
    source.write_text(series('cloud_provider="gcp",provider="aws"'))
    assert main(["calibrate", "--from", str(source), "--provider", "gcp"]) == 2
    assert main(["calibrate", "--from", str(source), "--provider", "aws"]) == 0
    written = yaml.safe_load(capsys.readouterr().out)
    assert len(written["controller"]["reaction"]["samples"]) == 10


def test_escaped_label_values_are_parsed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "metrics.txt"
    source.write_text(series(r'binding="shop/\"web\", v2",provider="gcp"'))
    assert main(["calibrate", "--from", str(source), "--provider", "gcp"]) == 0
    assert len(yaml.safe_load(capsys.readouterr().out)["controller"]["reaction"]["samples"]) == 10


def test_label_sets_are_merged_out_loud_and_providers_never(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "metrics.txt"
    source.write_text(series('operation="attach",provider="gcp"') + series('operation="detach",provider="gcp"', 1, 2, 3)
                      .replace("# TYPE negsync_reaction_latency_seconds histogram\n", ""))
    assert main(["calibrate", "--from", str(source)]) == 0
    captured = capsys.readouterr()
    assert len(yaml.safe_load(captured.out)["controller"]["reaction"]["samples"]) == 13
    assert 'merged 2 label sets into controller.reaction: {operation="attach",provider="gcp"} (10)' in captured.err
    two = tmp_path / "two.txt"
    two.write_text(series('provider="gcp"') + series('provider="aws"').replace(
        "# TYPE negsync_reaction_latency_seconds histogram\n", ""))
    assert main(["calibrate", "--from", str(two)]) == 2
    assert "--provider" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [(series('provider="gcp"', 5, 4, 10), "not cumulative"),
     (series('provider="gcp"').replace('le="+Inf"', 'le="2.0"'), "+Inf"),
     (series('provider="gcp"').replace("_count{provider=\"gcp\"} 10", "_count{provider=\"gcp\"} 11"), "_count"),
     ('negsync_reaction_latency_seconds_bucket{le="1"} abc\n', "neither a field,seconds CSV nor a Prometheus")],
)
def test_broken_histograms_are_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                               message: str) -> None:
    source = tmp_path / "metrics.txt"
    source.write_text(text)
    assert main(["calibrate", "--from", str(source)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from" in err[0] and message in err[0]


def test_buckets_become_their_midpoints() -> None:
    # 5 in (0, 0.5], 3 in (0.5, 1.0], 2 in (1.0, +Inf)
    [found], messages = measurements(series('provider="gcp"'), provider=None, source="m")
    assert found.parameter == "controller.reaction" and messages == []
    assert sorted(found.samples) == [0.25] * 5 + [0.75] * 3 + [1.0] * 2


def test_observations_beyond_the_largest_bucket_are_placed_at_its_bound_and_said_so() -> None:
    [found], _ = measurements(series('provider="gcp"', 5, 8, 10), provider=None, source="m")
    assert max(found.samples) == 1.0
    assert any("20% of the observations lie beyond the largest finite bucket" in c for c in found.cautions)
    [clean], _ = measurements(series('provider="gcp"', 5, 10, 10), provider=None, source="m")
    assert clean.cautions == ()


def test_a_large_histogram_is_scaled_down_to_at_most_max_samples() -> None:
    [found], _ = measurements(series('provider="gcp"', 50_000, 80_000, 80_000), provider=None, source="m")
    assert abs(len(found.samples) - MAX_SAMPLES) <= 2
    assert found.samples.count(0.25) == pytest.approx(MAX_SAMPLES * 5 / 8, abs=1)


def test_series_are_grouped_by_label_set_without_le() -> None:
    text = series('operation="attach",provider="gcp"') + series('operation="detach",provider="gcp"').replace(
        "# TYPE negsync_reaction_latency_seconds histogram\n", "")
    [first, second] = read_histograms(text)["negsync_reaction_latency_seconds"]
    assert first.labels == (("operation", "attach"), ("provider", "gcp"))
    assert second.describe() == '{operation="detach",provider="gcp"}'
    assert first.buckets == ((0.5, 5.0), (1.0, 8.0), (math.inf, 10.0))


@pytest.mark.parametrize(("le", "message"), [('"1.0"', "appears twice"), ('"NaN"', "NaN")])
def test_bad_le_bounds_are_refused(le: str, message: str) -> None:
    text = series('provider="gcp"').replace('le="0.5"', f"le={le}")
    with pytest.raises(ConfigError, match=message) as raised:
        read_histograms(text)
    assert raised.value.field == "--from"
