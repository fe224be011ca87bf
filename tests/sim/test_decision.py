"""Recommendations that hold: refinement, worst case over uncertain axes, the simulated pair and
the warnings (negsync.sim.decision), through the ``negsync simulate`` CLI (the bootstrap: test_bootstrap.py).

Each recommendation is checked against an independent simulation of the recommended settings
(the engine on a scenario written with those values, no sweep), not against the decision code's
own numbers.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from negsync.sim.loader import load_study
from negsync.sim.vectorized import simulate
from tests.sim.running import simulate_json


def _objective_value(raw: dict[str, Any], settings: dict[str, float]) -> int:
    """Failed requests at the objective quantile, simulating ``settings`` written into ``raw``."""
    scenario = copy.deepcopy(raw)
    scenario.pop("sweep", None)
    for path, value in settings.items():
        node = scenario
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    s = load_study(scenario).base
    q = s.objective.quantile
    return int(np.quantile(simulate(s).failed, q, method="inverted_cdf"))


def _recommended(doc: dict[str, Any]) -> dict[str, float]:
    rec = doc["recommendation"]
    return {k: rec[k] for k in ("drain.pre_stop_sleep", "drain.termination_grace_period")}


# --------------------------------------------------------------------------- bugs of the old rule


def test_on_sigkill_recommended_grace_meets_the_objective(tmp_path: Path, small: dict[str, Any]) -> None:
    """Bug: with shutdown: on-sigkill the pair (0 s, 7 s) was recommended and fails when simulated."""
    small["workload"]["shutdown"] = "on-sigkill"
    doc = simulate_json(tmp_path, small)
    pair = _recommended(doc)
    assert _objective_value(small, pair) <= 0, pair
    codes = {w["code"] for w in doc["recommendation"]["warnings"]}
    assert {"prestop_ignored", "grace_raised"} <= codes
    assert doc["recommendation"]["simulated"]["params"] == pair


@pytest.mark.parametrize("shutdown", ["on-sigterm", "on-sigkill"])
def test_recommended_pair_is_simulated_for_every_shutdown_mode(
    tmp_path: Path, small: dict[str, Any], shutdown: str
) -> None:
    small["workload"]["shutdown"] = shutdown
    rec = simulate_json(tmp_path, small)["recommendation"]
    simulated = rec["simulated"]
    assert simulated["meets_objective"] is True
    assert simulated["failed_requests"]["at_objective_quantile"] == _objective_value(small, _recommended(
        {"recommendation": rec}))


def test_two_d_sweep_takes_the_uncertain_lb_axis_at_its_worst(tmp_path: Path, small: dict[str, Any]) -> None:
    """Bug: a preStop x detach-p99 sweep recommended the sleep that only works for the best LB."""
    small["lb"]["detach_delay"] = {"dist": "lognormal", "p50": 5, "p99": 20}
    small["drain"]["termination_grace_period"] = 150
    small["sweep"] = {
        "drain.pre_stop_sleep": {"from": 0, "to": 120, "step": 10},
        "lb.detach_delay.p99": [10, 20, 40],
    }
    doc = simulate_json(tmp_path, small)
    rec = doc["recommendation"]
    # the recommended pair holds at the most pessimistic LB assumption, not only at the best
    pessimistic = copy.deepcopy(small)
    pessimistic["lb"]["detach_delay"]["p99"] = 40
    assert _objective_value(pessimistic, _recommended(doc)) <= 0, _recommended(doc)
    assert rec["lb.detach_delay.p99"] == 40
    assert rec["worst_case"] == {"lb.detach_delay.p99": 40}
    assert doc["uncertain"] == ["lb.detach_delay.p99"]


def test_uncertain_false_makes_an_lb_axis_a_decision(tmp_path: Path, small: dict[str, Any]) -> None:
    small["lb"]["detach_delay"] = {"dist": "lognormal", "p50": 5, "p99": 20}
    small["sweep"] = {"drain.pre_stop_sleep": [0, 30, 60],
                      "lb.detach_delay.p99": {"values": [10, 60], "uncertain": False}}
    doc = simulate_json(tmp_path, small)
    assert doc["uncertain"] == []
    assert doc["recommendation"]["refinement"] is None  # two decision axes: not refined, and said so
    assert "grid_too_coarse" in {w["code"] for w in doc["recommendation"]["warnings"]}


# A load balancer fixed here rather than by a preset, so a preset refit cannot move the bracket.
_SLOW_LB = {"preset": "gcp-neg", "detach_delay": {"dist": "lognormal", "p50": 10, "p99": 30}, "retries": 0}


def test_coarse_grid_does_not_decide_the_answer(tmp_path: Path, small: dict[str, Any]) -> None:
    """Bug: the recommendation was whichever grid value passed first (60 on a 0/30/60 grid)."""
    small["lb"] = dict(_SLOW_LB)
    small["sweep"] = {"drain.pre_stop_sleep": [0, 30, 60]}
    coarse = simulate_json(tmp_path, small)["recommendation"]
    small["sweep"] = {"drain.pre_stop_sleep": {"from": 0, "to": 60, "step": 1}}
    fine = simulate_json(tmp_path, small)["recommendation"]
    assert coarse["drain.pre_stop_sleep"] == fine["drain.pre_stop_sleep"]
    assert coarse["refinement"]["bracket"] == [30, 60]
    assert coarse["refinement"]["grid_choice"] == 60
    assert coarse["drain.pre_stop_sleep"] < 60
    # a second below the recommendation fails: the stated resolution is reached
    below = {**_recommended({"recommendation": coarse})}
    below["drain.pre_stop_sleep"] -= 1
    below["drain.termination_grace_period"] = 90
    assert _objective_value(small, below) > 0


def test_resolution_is_stated_and_honoured(tmp_path: Path, small: dict[str, Any]) -> None:
    small["lb"] = dict(_SLOW_LB)
    small["sweep"] = {"drain.pre_stop_sleep": [0, 30, 60]}
    rec = simulate_json(tmp_path, small, "--resolution", "0.5")["recommendation"]
    assert rec["refinement"]["resolution"] == 0.5
    assert (rec["drain.pre_stop_sleep"] * 2) % 1 == 0
    values = sorted(p["params"]["drain.pre_stop_sleep"] for p in rec["refinement"]["points"])
    assert all(30 < v < 60 for v in values) and all((v * 2) % 1 == 0 for v in values)


# --------------------------------------------------------------------------- output


def test_points_carry_p_any_max_and_the_objective_quantile(tmp_path: Path, small: dict[str, Any]) -> None:
    small["objective"] = {"failed_requests": 0, "quantile": 0.95}
    doc = simulate_json(tmp_path, small)
    for point in doc["points"]:
        failed = point["failed_requests"]
        assert 0 <= failed["p_any"] <= 1
        assert failed["max"] >= failed["p99"] >= failed["at_objective_quantile"] >= failed["p50"]
        assert point["meets_objective"] == (failed["at_objective_quantile"] <= 0)
    first = doc["points"][0]["failed_requests"]
    assert first["p_any"] == 1.0 and first["max"] > 0  # preStop 0 always fails here


def test_a_pass_below_a_failure_is_not_trusted(small: dict[str, Any]) -> None:
    from dataclasses import replace

    from negsync.sim.decision import decide
    from negsync.sim.sweep import run_study

    small["sweep"] = {"drain.pre_stop_sleep": [0, 30, 60]}
    study = load_study(small)
    grid = run_study(study)
    # as if noise had made 0 s pass while 30 s fails
    noisy = [replace(grid[0], failed_at_objective=0), replace(grid[1], failed_at_objective=5), grid[2]]
    decision = decide(study, noisy)
    assert decision.values["drain.pre_stop_sleep"] is not None
    assert decision.values["drain.pre_stop_sleep"] > 30
    assert "non_monotone" in {c.code for c in decision.cautions}


def _codes(doc: dict[str, Any]) -> set[str]:
    return {w["code"] for w in doc["recommendation"]["warnings"]}


def test_warns_when_nothing_passes_and_the_sweep_must_be_extended(tmp_path: Path, small: dict[str, Any]) -> None:
    small["sweep"] = {"drain.pre_stop_sleep": [0, 1]}
    doc = simulate_json(tmp_path, small)
    assert doc["recommendation"]["drain.pre_stop_sleep"] is None
    assert "at_sweep_edge" in _codes(doc)


def test_warns_when_the_smallest_swept_value_already_passes(tmp_path: Path, small: dict[str, Any]) -> None:
    small["sweep"] = {"drain.pre_stop_sleep": [70, 80]}
    doc = simulate_json(tmp_path, small)
    assert doc["recommendation"]["drain.pre_stop_sleep"] == 70
    assert "at_sweep_edge" in _codes(doc)


def test_warns_when_failures_come_only_from_no_capacity(tmp_path: Path, small: dict[str, Any]) -> None:
    # one replica, no readiness gate: the old pod leaves before the LB routes to the new one
    small["workload"] = {"replicas": 1, "max_surge": 1, "max_unavailable": 0,
                         "startup": {"dist": "fixed", "value": 1}}
    small["controller"] = {"readiness_gate": False}
    small["sweep"] = {"drain.pre_stop_sleep": [45, 60]}
    doc = simulate_json(tmp_path, small)
    by_cause = doc["points"][-1]["failed_requests"]["by_cause"]
    assert by_cause["routed_after_stop"] == 0 and by_cause["no_capacity"] > 0
    assert "no_capacity_only" in _codes(doc)


def test_warns_about_rare_large_failures_hidden_by_the_quantile(tmp_path: Path, small: dict[str, Any]) -> None:
    doc = simulate_json(tmp_path, small)
    simulated = doc["recommendation"]["simulated"]["failed_requests"]
    assert ("rare_large_failures" in _codes(doc)) == (simulated["max"] > 0)
    small["objective"] = {"failed_requests": 0, "quantile": 1}
    strict = simulate_json(tmp_path, small)
    assert "rare_large_failures" not in _codes(strict)
    assert strict["recommendation"]["simulated"]["failed_requests"]["max"] == 0


def test_warns_about_too_few_runs(tmp_path: Path, small: dict[str, Any]) -> None:
    small["runs"] = 50
    assert "few_runs" in _codes(simulate_json(tmp_path, small))


def test_no_sweep_checks_the_scenario_and_says_how_to_get_a_recommendation(
    tmp_path: Path, small: dict[str, Any]
) -> None:
    del small["sweep"]
    small["drain"] = {"pre_stop_sleep": 60, "termination_grace_period": 90}
    doc = simulate_json(tmp_path, small)
    assert "no_sweep" in _codes(doc)
    message = next(w["message"] for w in doc["recommendation"]["warnings"] if w["code"] == "no_sweep")
    assert "sweep:" in message
    assert doc["recommendation"]["simulated"]["params"]["drain.pre_stop_sleep"] == 60


def test_recommended_grace_covers_the_health_check_drain(small: dict[str, Any]) -> None:
    """The app serves health_check_drain seconds after SIGTERM: SIGKILL must not come before."""
    from negsync.sim.report import recommend
    from negsync.sim.sweep import run_study

    small["drain"] = {"pre_stop_sleep": 5, "termination_grace_period": 300}
    small["sweep"] = {"drain.health_check_drain": [0, 60, 120]}
    small["runs"] = 50
    study = load_study(small)
    rec = recommend(study, run_study(study))
    drain = rec["drain.health_check_drain"]
    assert drain is not None and drain > 0
    assert rec["drain.termination_grace_period"] >= rec["drain.pre_stop_sleep"] + drain
