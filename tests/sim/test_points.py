"""Points a decision is taken on (negsync.sim.points): simulated once each; the worst uncertain value; the grid rule."""

from __future__ import annotations

from typing import Any

import numpy as np

from negsync.sim.loader import load_study
from negsync.sim.points import Points, choose, params_key
from negsync.sim.sweep import run_study


def test_a_point_is_simulated_once(small: dict[str, Any]) -> None:
    study = load_study(small)
    points = Points(study, run_study(study))
    assert points.at({"drain.pre_stop_sleep": 10}) is points.at({"drain.pre_stop_sleep": 10.0})  # from the grid
    assert points.added == []
    first = points.at({"drain.pre_stop_sleep": 25})
    assert points.at({"drain.pre_stop_sleep": 25.0000000001}) is first  # the same point to 1e-9
    assert points.added == [first] and first.params == {"drain.pre_stop_sleep": 25}


def test_worst_takes_a_decision_at_its_worst_uncertain_value(small: dict[str, Any]) -> None:
    small["drain"]["termination_grace_period"] = 150
    small["sweep"] = {"drain.pre_stop_sleep": [0, 30], "lb.detach_delay.p99": [10, 60]}
    study = load_study(small)
    points = Points(study, run_study(study))
    assert points.combos == [(("lb.detach_delay.p99", 10.0),), (("lb.detach_delay.p99", 60.0),)]
    worst = points.worst({"drain.pre_stop_sleep": 0})
    both = [points.at({"drain.pre_stop_sleep": 0, "lb.detach_delay.p99": v}) for v in (10, 60)]
    assert worst is max(both, key=lambda s: (s.failed_at_objective, s.failed_mean))
    assert worst.params["lb.detach_delay.p99"] == 60  # a slower detach never fails fewer requests here


def test_the_grid_rule() -> None:
    passes = np.array([[True, False, True, True], [False, False, False, False], [True, True, True, True]])
    assert choose(passes, monotone=True).tolist() == [2, -1, 0]  # from where every later value passes
    assert choose(passes, monotone=False).tolist() == [0, -1, 0]  # the first that passes
    assert params_key({"b": 1, "a": 2.0}) == (("a", 2.0), ("b", 1.0))
