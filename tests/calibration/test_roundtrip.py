"""The calibration round trip: logs generated from known delays calibrate back to those delays.

Tolerance: each delay is seen only when a request arrives, so with ``rps`` requests per second to
an endpoint every calibrated sample is off by about ``1 / rps`` (here 5 rps: 0.2 s on average,
the last detach request early, the first attach request late).  Stated bound: the sorted
calibrated samples are within 0.5 s of the sorted true delays at the median and within 2 s
everywhere; p50 and p90 within 0.5 s.

A cross-module test, kept on purpose: generated logs go through ``negsync calibrate`` (timeline,
accesslogs, propagation, command) and the result through the simulator.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from negsync.cli import main
from negsync.sim.lifecycle import Streams, build_timeline
from negsync.sim.loader import load_study
from tests.calibration.synthetic import Rollout, alb_lines, gcp_entries, rollout

MEDIAN_TOLERANCE = 0.5
MAX_TOLERANCE = 2.0


def write_inputs(tmp_path: Path, data: Rollout, fmt: str) -> tuple[Path, Path]:
    timeline = tmp_path / "controller.log"
    timeline.write_text("\n".join(data.timeline) + "\n")
    if fmt == "alb":
        log = tmp_path / "alb.log.gz"
        with gzip.open(log, "wt") as handle:
            handle.write("\n".join(alb_lines(data.requests)) + "\n")
    elif fmt == "gcp-array":  # gcloud logging read --format=json; serverIp without a port
        log = tmp_path / "gcp.json"
        log.write_text(json.dumps(gcp_entries(data.requests), indent=1))
    else:  # a Cloud Storage sink: JSON lines, serverIp with a port
        log = tmp_path / "gcp.jsonl"
        log.write_text("\n".join(json.dumps(e) for e in gcp_entries(data.requests, with_port=True)) + "\n")
    return log, timeline


def assert_close(calibrated: list[float], truth: np.ndarray) -> None:
    got, want = np.sort(np.asarray(calibrated)), np.sort(truth)
    assert got.size == want.size
    error = np.abs(got - want)
    assert float(np.median(error)) < MEDIAN_TOLERANCE, error
    assert float(error.max()) < MAX_TOLERANCE, error
    for q in (0.5, 0.9):
        assert abs(np.quantile(got, q) - np.quantile(want, q)) < MEDIAN_TOLERANCE


@pytest.mark.parametrize("fmt", ["alb", "gcp-array", "gcp-lines"])
def test_access_logs_and_timeline_calibrate_back_to_the_known_delays(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    data = rollout()
    log, timeline = write_inputs(tmp_path, data, fmt)
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", "--access-log", str(log), "--timeline", str(timeline), "--out", str(out)]) == 0
    scenario = yaml.safe_load(out.read_text())
    lb = scenario["lb"]
    assert lb["detach_delay"]["dist"] == "empirical" and lb["attach_delay"]["dist"] == "empirical"
    assert_close(lb["detach_delay"]["samples"], data.detach_delay)
    assert_close(lb["attach_delay"]["samples"], data.attach_delay)
    # The attach observable contains the health-check wait: the scenario says so.
    assert lb["attach_delay_includes_health_check"] is True
    err = capsys.readouterr().err
    assert "calibrated lb.detach_delay: 40 samples" in err and "detach propagation" in err
    assert "not calibrated controller.reaction" in err
    # The simulator takes what calibrate wrote.
    assert load_study(scenario).points


def test_the_provider_flag_forces_the_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = rollout(endpoints=20)
    log, timeline = write_inputs(tmp_path, data, "alb")
    assert main(["calibrate", "--access-log", str(log), "--timeline", str(timeline), "--provider", "gcp"]) == 2
    assert "--access-log" in capsys.readouterr().err
    assert main(["calibrate", "--access-log", str(log), "--timeline", str(timeline), "--provider", "aws"]) == 0


def test_a_calibrated_attach_delay_is_not_followed_by_another_health_check_wait() -> None:
    """Engine meaning: with the flag, new pods are routed at startup + reaction + attach_delay, nothing more."""
    raw = {
        "scenario": "node-drain", "runs": 50, "traffic": {"rps": 100}, "workload": {"replicas": 4, "pods_per_node": 1},
        "lb": {"preset": "aws-alb", "attach_delay": {"dist": "fixed", "value": 30}},
        "controller": {"reaction": {"dist": "fixed", "value": 1}},
    }
    measured = {**raw, "lb": {**raw["lb"], "attach_delay_includes_health_check": True}}
    for scenario, extra in ((measured, (0.0, 0.0)), (raw, (1e-9, 15.0))):
        s = load_study(scenario).base
        timeline = build_timeline(s, 50, Streams(1))
        routed = timeline.a[:, timeline.removed:]
        lag = routed - 31.0  # startup 0 + reaction 1 + attach 30
        assert extra[0] <= lag.min() and lag.max() <= extra[1] + 1e-9


def test_sparse_traffic_and_few_samples_are_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = rollout(endpoints=8, rps=0.3, seed=3)
    log, timeline = write_inputs(tmp_path, data, "alb")
    assert main(["calibrate", "--access-log", str(log), "--timeline", str(timeline)]) == 0
    err = capsys.readouterr().err
    assert "warning: lb.detach_delay: only" in err and "fewer than 20" in err
    assert "requests reach an endpoint every" in err


def test_the_timeline_can_come_from_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`kubectl logs ... | negsync calibrate --timeline - ...`."""
    import io

    data = rollout(endpoints=20)
    log, timeline = write_inputs(tmp_path, data, "alb")
    monkeypatch.setattr("sys.stdin", io.StringIO(timeline.read_text()))
    assert main(["calibrate", "--access-log", str(log), "--timeline", "-"]) == 0
    written = yaml.safe_load(capsys.readouterr().out)
    assert_close(written["lb"]["detach_delay"]["samples"], data.detach_delay)


def test_calibrated_attach_reproduces_the_true_attach_to_routed_time_in_the_engine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Health-check wait counted once: truth (programming delay + checks) → observed → calibrated → same lag."""
    truth = {
        "scenario": "node-drain", "runs": 2000, "seed": 5, "traffic": {"rps": 100},
        "workload": {"replicas": 4, "pods_per_node": 1}, "lb": {"preset": "gcp-neg"},
        "controller": {"reaction": {"dist": "fixed", "value": 1}},
    }

    def routed_lag(raw: dict[str, object], seed: int) -> np.ndarray:
        s = load_study(raw).base
        tl = build_timeline(s, s.runs, Streams(seed))
        return tl.a[:, tl.removed:].ravel() - 1.0  # minus startup 0 and reaction 1: attach done -> routed

    observed = routed_lag(truth, 1)  # what access logs would show for 2000 attaches
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(truth))
    samples = tmp_path / "attach.csv"
    samples.write_text("field,seconds\n" + "".join(f"lb.attach_delay,{v:.4f}\n" for v in observed))
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", "--from", str(samples), "--scenario", str(base), "--out", str(out)]) == 0
    calibrated = yaml.safe_load(out.read_text())
    again = routed_lag(calibrated, 2)
    for q in (0.1, 0.5, 0.9):
        assert abs(np.quantile(again, q) - np.quantile(observed, q)) < 0.05 * np.quantile(observed, q) + 0.5
    # Without the flag the engine would add the health-check wait a second time (mean 7.5 s here).
    del calibrated["lb"]["attach_delay_includes_health_check"]
    assert np.median(routed_lag(calibrated, 2)) - np.median(observed) > 5.0


def test_several_log_files_as_a_shell_glob_gives_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = rollout(endpoints=20)
    lines = alb_lines(data.requests)
    parts = [tmp_path / f"part-{i}.log" for i in range(3)]
    for i, part in enumerate(parts):  # ALB writes one file per node and 5 minutes
        part.write_text("\n".join(lines[i::3]) + "\n")
    _, timeline = write_inputs(tmp_path, data, "alb")
    assert main(["calibrate", "--access-log", *map(str, parts), "--timeline", str(timeline)]) == 0
    written = yaml.safe_load(capsys.readouterr().out)
    assert_close(written["lb"]["detach_delay"]["samples"], data.detach_delay)


def test_a_reused_pod_ip_is_measured_when_separable_and_skipped_when_not(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json as json_

    from tests.calibration.synthetic import T0, iso

    def line(**fields: object) -> str:
        return json_.dumps({"msg": "endpoint timeline", "target": "t", **fields})

    requests: list[tuple[float, str]] = []
    timeline = []
    rng = np.random.default_rng(1)
    for n, gap in enumerate((60.0, 2.0)):  # new pod on the same IP 60 s / 2 s after the old one's detach
        ip = f"10.7.0.{n + 1}:8080"
        issued = T0 + 100 + 200 * n
        stop = issued + 10.0  # the LB routes to the old pod for 10 s after the detach
        attached = issued + gap
        start = attached + 20.0  # ... and to the new pod from 20 s after its attach
        requests += [(float(t), ip) for t in np.sort(rng.uniform(issued - 20, stop, 300))]
        requests += [(float(t), ip) for t in np.sort(rng.uniform(start, start + 30, 300))]
        timeline += [line(event="detach", endpoint=ip, detach_issued=iso(issued), detach_done=iso(issued + 0.1)),
                     line(event="attach", endpoint=ip, attach_done=iso(attached), first_healthy=iso(start))]
    requests += [(float(t), "10.9.0.1:8080") for t in np.arange(T0, T0 + 600, 0.5)]
    log = tmp_path / "alb.log"
    log.write_text("\n".join(alb_lines(sorted(requests))) + "\n")
    (tmp_path / "t.log").write_text("\n".join(timeline) + "\n")
    assert main(["calibrate", "--access-log", str(log), "--timeline", str(tmp_path / "t.log")]) == 0
    captured = capsys.readouterr()
    lb = yaml.safe_load(captured.out)["lb"]
    assert lb["detach_delay"]["samples"] == pytest.approx([10.0], abs=0.3)
    assert lb["attach_delay"]["samples"] == pytest.approx([20.0], abs=0.3)
    assert "note: 2 timeline events gave no sample: pod IP reused while the LB still routed" in captured.err
