"""The ``negsync simulate`` contract: output shapes, plot, default scenario, one-line errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from negsync.sim import command
from negsync.sim.loader import default_scenario_text
from negsync.sim.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def _write(tmp_path: Path, raw: Any, name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return str(path)


def test_packaged_default_equals_simulations_default() -> None:
    assert default_scenario_text() == (ROOT / "simulations" / "default.yaml").read_text()


def test_default_prints_table_then_recommendation(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--runs", "100"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split()[0] == "drain.pre_stop_sleep"
    assert out[0].split()[-1] == "point"
    rows = [line for line in out[2:] if line.endswith((" grid", " refined", " interval"))]
    assert sum(line.endswith(" grid") for line in rows) == 7
    assert out[-1].startswith("recommendation: drain.pre_stop_sleep=")
    assert any(line.startswith("simulated pair: ") for line in out)
    assert any(line.startswith("uncertainty: ") for line in out)


def test_json_shape(tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([_write(tmp_path, small), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["params"] for p in doc["points"]] == [{"drain.pre_stop_sleep": v} for v in (0, 10, 60)]
    point = doc["points"][0]
    assert set(point["failed_requests"]) >= {"mean", "p50", "p99", "by_cause"}
    causes = {"routed_after_stop", "killed_in_flight", "no_capacity"}
    assert set(point["failed_requests"]["by_cause"]) >= causes
    assert set(point["duration_seconds"]) >= {"mean", "p99"}
    assert "mean" in point["min_capacity"]
    rec = doc["recommendation"]
    assert set(rec) >= {"drain.pre_stop_sleep", "drain.termination_grace_period", "reason"}
    assert rec["refinement"]["bracket"] == [10, 60] and rec["refinement"]["resolution"] == 1
    assert 10 < rec["drain.pre_stop_sleep"] <= 60
    assert rec["drain.termination_grace_period"] > rec["drain.pre_stop_sleep"]
    assert rec["simulated"]["params"] == {"drain.pre_stop_sleep": rec["drain.pre_stop_sleep"],
                                          "drain.termination_grace_period": rec["drain.termination_grace_period"]}
    assert rec["simulated"]["meets_objective"] is True


def test_unreachable_objective_gives_null_recommendation(
    tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    small["sweep"] = {"drain.pre_stop_sleep": [0, 1]}
    assert _run([_write(tmp_path, small), "--json", "--seed", "4"]) == 0
    rec = json.loads(capsys.readouterr().out)["recommendation"]
    assert rec["drain.pre_stop_sleep"] is None and rec["drain.termination_grace_period"] is None
    assert "no swept value meets the objective" in rec["reason"]


def test_plot_writes_png(tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.png"
    assert _run([_write(tmp_path, small), "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["default.yaml", "aws-alb.yaml", "aws-nlb.yaml"])
def test_shipped_scenarios_run(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([str(ROOT / "simulations" / name), "--runs", "50"]) == 0
    assert "recommendation:" in capsys.readouterr().out


def test_from_to_step_sweep_and_json_scenario(tmp_path: Path, small: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    small["sweep"] = {"drain.pre_stop_sleep": {"from": 0, "to": 20, "step": 10}}
    assert _run([_write(tmp_path, json.dumps(small), "s.json"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["params"]["drain.pre_stop_sleep"] for p in doc["points"]] == [0, 10, 20]


def _bad(small: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = small
    *parents, last = path.split("/")
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return small


_DELETE = object()

BAD = [
    # (path to change, new value, field named in the message)
    ("colour", "blue", "colour"),
    ("lb/attach_dely", 3, "lb.attach_dely"),
    ("lb/health_check", {"interval": 5, "bogus": 1}, "lb.health_check.bogus"),
    ("traffic/rps", "fast", "traffic.rps"),
    ("workload/replicas", 2.5, "workload.replicas"),
    ("controller/readiness_gate", "yes", "controller.readiness_gate"),
    ("drain/pre_stop_sleep", -1, "drain.pre_stop_sleep"),
    ("lb/detach_delay", {"dist": "fixed", "value": -3}, "lb.detach_delay.value"),
    ("lb/attach_delay", {"dist": "lognormal", "p50": 20, "p99": 5}, "lb.attach_delay.p99"),
    ("drain/termination_grace_period", 5, "drain.pre_stop_sleep"),
    ("sweep", {}, "sweep"),
    ("sweep", {"drain.pre_stop_sleep": []}, "sweep.drain.pre_stop_sleep"),
    ("sweep", {"drain.pre_stop_sleep": [0, 90]}, "sweep.drain.pre_stop_sleep"),
    ("sweep", {"drain.sleep": [1]}, "sweep.drain.sleep"),
    ("sweep", {"workload.shutdown": [1]}, "sweep.workload.shutdown"),
    ("sweep", {"lb.deregistration_delay": {"from": 0, "to": 10}}, "sweep.lb.deregistration_delay.step"),
    ("sweep", {"drain.pre_stop_sleep": {"values": [1], "uncertain": "yes"}}, "sweep.drain.pre_stop_sleep.uncertain"),
    ("sweep", {"drain.pre_stop_sleep": {"values": [1], "resolution": 0}}, "sweep.drain.pre_stop_sleep.resolution"),
    ("sweep", {"drain.pre_stop_sleep": {"values": [1], "from": 0}}, "sweep.drain.pre_stop_sleep.values"),
    ("sweep", {"drain.pre_stop_sleep": {"value": [1]}}, "sweep.drain.pre_stop_sleep.value"),
    ("sweep", {"drain.pre_stop_sleep": {"values": [1, "x"]}}, "sweep.drain.pre_stop_sleep.values[1]"),
    ("workload/max_surge", "lots", "workload.max_surge"),
    ("workload", {"replicas": 4, "max_surge": "0%", "max_unavailable": 0}, "workload.max_surge"),
    ("scenario", "blue-green", "scenario"),
    ("lb/preset", "azure", "lb.preset"),
    ("objective", {"failed_requests": 0, "quantile": 1.5}, "objective.quantile"),
    ("traffic/rps", _DELETE, "traffic.rps"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD, ids=[b[0] + ":" + b[2] for b in BAD])
def test_bad_input_is_one_line_naming_the_field(
    tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str], path: str, value: Any,
    field: str,
) -> None:
    assert _run([_write(tmp_path, _bad(small, path, value))]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"negsync simulate: error: {field}: "), lines[0]
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["--runs", "0"], "runs"), (["--seed", "-1"], "seed"), (["missing.yaml"], "scenario"),
     (["--resolution", "0"], "--resolution"), (["--resolution", "nan"], "--resolution")],
)
def test_bad_arguments(argv: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"negsync simulate: error: {field}: ")


def test_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([_write(tmp_path, "scenario: [unclosed\n")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("negsync simulate: error: scenario: ")


def test_empirical_file_is_read_relative_to_the_scenario(
    tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "detach.txt").write_text("3\n4.5\n6\n")
    small["lb"]["detach_delay"] = {"dist": "empirical", "file": "detach.txt"}
    assert _run([_write(tmp_path, small)]) == 0
    small["lb"]["detach_delay"] = {"dist": "empirical", "file": "nope.txt"}
    assert _run([_write(tmp_path, small)]) == 2
    assert "lb.detach_delay.file" in capsys.readouterr().err


# --------------------------------------------------------------------------- plots


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<?xml"), (".pdf", b"%PDF"), (".png", b"\x89PNG")])
def test_plot_format_follows_the_suffix(
    tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str], suffix: str, magic: bytes
) -> None:
    """Bug: --plot out.svg wrote PNG bytes."""
    target = tmp_path / f"out{suffix}"
    assert _run([_write(tmp_path, small), "--plot", str(target)]) == 0
    data = target.read_bytes()
    assert data.startswith(magic), data[:16]
    if suffix == ".svg":
        assert b"<svg" in data[:2000]


def test_plot_with_an_unknown_suffix_is_refused_before_simulating(
    tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run([_write(tmp_path, small), "--plot", str(tmp_path / "out.jpg")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("negsync simulate: error: --plot: ")
    assert ".png, .svg or .pdf" in err[0]
    assert not (tmp_path / "out.jpg").exists()


# --------------------------------------------------------------------------- input


def test_show_prints_the_resolved_scenario_with_preset_values(capsys: pytest.CaptureFixture[str]) -> None:
    from negsync.sim.presets import PRESETS

    assert _run(["--show"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["lb"]["preset"] == "gcp-neg"
    for key, value in PRESETS["gcp-neg"].items():
        assert shown["lb"][key] == value
    assert shown["objective"] == {"failed_requests": 0, "quantile": 0.99}
    assert shown["sweep"] == {"drain.pre_stop_sleep": [0, 5, 10, 20, 30, 45, 60]}
    assert _run(["--show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == shown


def test_show_output_is_itself_a_scenario(tmp_path: Path, small: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([_write(tmp_path, small), "--show"]) == 0
    shown = capsys.readouterr().out
    assert "health_check" in shown  # filled in from the preset
    assert _run([_write(tmp_path, shown, "shown.yaml"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert _run([_write(tmp_path, small), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["points"] == again["points"]


def test_show_reports_bad_input_like_a_run(tmp_path: Path, small: dict[str, Any],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    small["traffic"]["rps"] = "fast"
    assert _run([_write(tmp_path, small), "--show"]) == 2
    assert capsys.readouterr().err.startswith("negsync simulate: error: traffic.rps: ")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [("max_surge", "25", "percentage"), ("max_surge", "-5%", "percentage"), ("max_surge", "2.5%", "percentage"),
     ("max_unavailable", "150%", "100%")],
)
def test_bad_percentages_name_the_field(tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                        key: str, value: str, words: str) -> None:
    small["workload"][key] = value
    assert _run([_write(tmp_path, small)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"negsync simulate: error: workload.{key}: ") and words in err[0]


def test_empty_file_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([_write(tmp_path, "")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("negsync simulate: error: scenario: ")
    assert "is empty" in err[0] and "simulations/default.yaml" in err[0] and "--show" in err[0]


def test_prestop_beyond_the_default_grace_says_what_to_do(
    tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    small["drain"] = {"pre_stop_sleep": 45}
    del small["sweep"]
    assert _run([_write(tmp_path, small)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("negsync simulate: error: drain.pre_stop_sleep: ")
    assert "default terminationGracePeriodSeconds" in err[0]
    assert "set drain.termination_grace_period" in err[0]


def test_scenario_without_sweep_says_how_to_get_a_recommendation(
    tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    del small["sweep"]
    assert _run([_write(tmp_path, small)]) == 0
    out = capsys.readouterr().out
    assert "warning (no_sweep): " in out and "sweep: {drain.pre_stop_sleep:" in out


def test_show_through_the_negsync_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    from negsync.cli import main

    assert main(["simulate", "--show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    # the default scenario names the gcp-neg preset: --show fills in its values
    assert shown["lb"]["detach_delay"] == PRESETS["gcp-neg"]["detach_delay"]
    assert next(iter(shown["lb"])) == "preset"


def test_unwritable_plot_is_one_line(tmp_path: Path, small: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([_write(tmp_path, small), "--plot", str(tmp_path / "missing" / "out.svg")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("negsync simulate: error: --plot: cannot write ")
