"""The ``negsync simulate`` contract: output shapes, plot, default scenario, one-line errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from negsync.sim import command
from negsync.sim.scenario import default_scenario_text

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
    assert len(out) == 2 + 7 + 1
    assert out[-1].startswith("recommendation: drain.pre_stop_sleep=")


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
    assert rec["drain.pre_stop_sleep"] == 60
    assert rec["drain.termination_grace_period"] > 60


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
    [(["--runs", "0"], "runs"), (["--seed", "-1"], "seed"), (["missing.yaml"], "scenario")],
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
