"""How sure a recommendation is (negsync.sim.bootstrap): the share of resamples choosing the same value, and
an interval that covers what other seeds recommend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from negsync.sim.loader import load_study
from tests.sim.running import simulate_json


def test_uncertainty_is_a_bootstrap_share_and_an_interval(tmp_path: Path, small: dict[str, Any]) -> None:
    rec = simulate_json(tmp_path, small)["recommendation"]
    uncertainty = rec["uncertainty"]
    assert uncertainty["resamples"] == 200
    assert 0 < uncertainty["same_value_share"] <= 1
    lo, hi = uncertainty["interval"]
    assert lo <= rec["drain.pre_stop_sleep"] and (hi is None or rec["drain.pre_stop_sleep"] <= hi)


def test_unstable_choice_is_warned(tmp_path: Path, small: dict[str, Any]) -> None:
    small["runs"] = 100  # a p99 of 100 runs is one run: resamples disagree
    small["sweep"] = {"drain.pre_stop_sleep": {"from": 0, "to": 60, "step": 1}}
    rec = simulate_json(tmp_path, small)["recommendation"]
    assert rec["uncertainty"]["same_value_share"] < 0.8
    assert "unstable" in {w["code"] for w in rec["warnings"]}


def test_deterministic_delays_give_a_stable_choice(tmp_path: Path, small: dict[str, Any]) -> None:
    small["lb"] = {"preset": "gcp-neg", "detach_delay": {"dist": "fixed", "value": 12}, "health_check": None}
    small["sweep"] = {"drain.pre_stop_sleep": [0, 10, 20, 30]}
    rec = simulate_json(tmp_path, small)["recommendation"]
    assert rec["drain.pre_stop_sleep"] == 13  # reaction 1 s + detach 12 s, to the second
    assert rec["uncertainty"]["same_value_share"] == 1.0
    assert rec["uncertainty"]["interval"] == [13, 13]
    assert "unstable" not in {w["code"] for w in rec["warnings"]}


def test_bootstrap_interval_covers_what_other_seeds_recommend(small: dict[str, Any]) -> None:
    """The interval is a claim about sampling noise: other seeds' answers should mostly fall in it."""
    from negsync.sim.decision import decide
    from negsync.sim.sweep import run_study

    small["sweep"] = {"drain.pre_stop_sleep": {"from": 0, "to": 60, "step": 10}}
    answers, intervals = [], []
    for seed in range(1, 13):
        study = load_study({**small, "seed": seed})
        decision = decide(study, run_study(study))
        answers.append(decision.values["drain.pre_stop_sleep"])
        intervals.append(decision.interval)
    assert len(set(answers)) > 3  # the answer does move with the seed: there is something to cover
    middle = float(np.median(answers))
    covered = sum(1 for lo, hi in intervals if lo <= middle and (hi is None or middle <= hi))
    assert covered >= 9, (answers, intervals)
