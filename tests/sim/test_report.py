"""Rendering a sweep and its decision (:mod:`negsync.sim.report`): table, recommendation line, JSON, plot.

The figure tests run a small study and inspect the matplotlib figure; the table and text tests use
hand-made summaries whose right rendering is known.  That ``negsync simulate`` writes these
(stdout, ``--json``, ``--plot``) is tests/sim/test_command.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from negsync.errors import ConfigError
from negsync.sim import report
from negsync.sim.decision import decide
from negsync.sim.loader import load_path, load_study
from negsync.sim.scenario import CAUSES
from negsync.sim.sweep import PointSummary, run_study


def summary(sleep: float, *, failed_at_objective: int, failed_max: int = 0) -> PointSummary:
    return PointSummary(
        params={"drain.pre_stop_sleep": sleep}, failed_mean=0.25, failed_p50=0, failed_p99=failed_at_objective,
        failed_at_objective=failed_at_objective, expected_mean=0.25, by_cause=dict.fromkeys(CAUSES, 0.0),
        duration_mean=61.04, duration_p99=70.0, min_capacity_mean=3.0, min_capacity_min=3.0, p_any=0.125,
        failed_max=failed_max, failed=np.zeros(8, dtype=np.int64))


def test_the_table_has_a_row_per_point_and_says_which_meet_the_objective(small: dict[str, Any]) -> None:
    study = load_study(small)
    lines = report.table(study, [summary(0, failed_at_objective=4, failed_max=9),
                                 summary(10, failed_at_objective=0)]).splitlines()
    header = lines[0].split()
    assert header[:5] == ["drain.pre_stop_sleep", "failed", "mean", "p50", "p99"] and header[-1] == "p99<=0"
    assert set(lines[1]) == {"-", " "} and len(lines) == 4
    first, second = lines[2].split(), lines[3].split()
    assert first[0] == "0" and first[-1] == "no" and "9" in first and "12.5%" in first and "61.0" in first
    assert second[0] == "10" and second[-1] == "yes"
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_an_objective_quantile_other_than_p50_or_p99_gets_its_own_column(small: dict[str, Any]) -> None:
    small["objective"] = {"quantile": 0.95}
    header = report.table(load_study(small), [summary(0, failed_at_objective=2)]).splitlines()[0].split()
    assert "p95" in header and header[-1] == "p95<=0"


@pytest.mark.parametrize(("recommendation", "line"), [
    ({"drain.pre_stop_sleep": 12, "pod.termination_grace_period": 40, "reason": "smallest passing",
      "simulated": {}, "warnings": []},
     "recommendation: drain.pre_stop_sleep=12, pod.termination_grace_period=40 (smallest passing)"),
    ({"drain.pre_stop_sleep": None, "reason": "no swept value meets the objective", "warnings": [], "worst_case": {}},
     "recommendation: none: no swept value meets the objective"),
])
def test_the_recommendation_line_shows_the_settings_only(recommendation: dict[str, Any], line: str) -> None:
    assert report.recommendation_line(recommendation) == line


@pytest.mark.parametrize(("name", "fmt"), [("out.png", "png"), ("OUT.SVG", "svg"), ("a.b.pdf", "pdf")])
def test_the_plot_format_is_the_suffix(name: str, fmt: str) -> None:
    assert report.plot_format(Path(name)) == fmt


@pytest.mark.parametrize("name", ["out.jpg", "out", "svg"])
def test_a_plot_without_a_known_suffix_names_the_flag(name: str) -> None:
    with pytest.raises(ConfigError, match=r"use \.png, \.svg or \.pdf") as raised:
        report.plot_format(Path(name))
    assert raised.value.field == "--plot"


def test_the_json_points_keep_their_documented_keys(small: dict[str, Any]) -> None:
    study = load_study(small)
    doc = report.to_json(study, [summary(0, failed_at_objective=4), summary(10, failed_at_objective=0)], {})
    assert [p["meets_objective"] for p in doc["points"]] == [False, True]
    failed = doc["points"][0]["failed_requests"]
    assert {"mean", "p50", "p99", "at_objective_quantile", "p_any", "max", "expected_mean", "by_cause"} <= set(failed)
    assert doc["objective"] == {"failed_requests": 0, "quantile": 0.99} and doc["seed"] == 3


def _figure(tmp_path: Path, raw: dict[str, Any]) -> Any:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    study = load_path(path)  # an empirical file is read relative to the scenario
    summaries = run_study(study)
    decision = decide(study, summaries)
    fig = report.figure(study, summaries, decision)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return fig, decision


def _inside(inner: Any, outer: Any) -> bool:
    return bool(inner.x0 < outer.x1 and inner.x1 > outer.x0 and inner.y0 < outer.y1 and inner.y1 > outer.y0)


def test_plot_marks_recommendation_and_objective_with_units_ticks_and_title(
    tmp_path: Path, small: dict[str, Any]
) -> None:
    fig, decision = _figure(tmp_path, small)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    rec = decision.values["drain.pre_stop_sleep"]
    assert any(label.startswith(f"recommended drain.pre_stop_sleep = {rec} s") for label in labels), labels
    assert any(label.startswith("objective: p99 <= 0") for label in labels), labels
    assert ax.get_xlabel() == "drain.pre_stop_sleep (s)"
    assert [t.get_text() for t in ax.get_yticklabels() if t.get_text()], "y tick labels lost"
    title = fig._suptitle.get_text()
    assert "4 replicas" in title and "100 rps" in title and "preset gcp-neg" in title and "calibrated" in title
    legend = fig.legends[0]
    renderer = fig.canvas.get_renderer()
    assert not _inside(legend.get_window_extent(renderer), ax.get_window_extent(renderer)), "legend covers the data"


def test_plot_y_ticks_survive_a_sweep_without_failures(tmp_path: Path, small: dict[str, Any]) -> None:
    small["sweep"] = {"drain.pre_stop_sleep": [70, 80]}  # every point: 0 failed requests
    fig, _ = _figure(tmp_path, small)
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]


def test_two_d_sweep_is_a_heatmap(tmp_path: Path, small: dict[str, Any]) -> None:
    small["drain"]["termination_grace_period"] = 150
    small["sweep"] = {"drain.pre_stop_sleep": [0, 30, 60, 90], "lb.detach_delay.p99": [20, 30]}
    fig, _ = _figure(tmp_path, small)
    ax = fig.axes[0]
    assert ax.get_images(), "no heatmap"
    assert ax.get_xlabel() == "drain.pre_stop_sleep (s)"
    assert ax.get_ylabel().startswith("lb.detach_delay.p99 (s)")
    assert "uncertain" in ax.get_ylabel()


def test_calibrated_scenario_says_so_in_the_title(tmp_path: Path, small: dict[str, Any]) -> None:
    (tmp_path / "detach.txt").write_text("3\n4.5\n6\n")
    small["lb"]["detach_delay"] = {"dist": "empirical", "file": "detach.txt"}
    fig, _ = _figure(tmp_path, small)
    title = fig._suptitle.get_text()
    assert ", calibrated" in title and "not calibrated" not in title
