"""Scale-down of 1 of N pods, no health checking, fixed delays: a closed form exists."""

from __future__ import annotations

import math

import pytest

from negsync.sim.loader import load_study
from negsync.sim.vectorized import simulate


def _scale_down(replicas: int, reaction: float, detach: float, sleep: float, rps: float, runs: int):
    raw = {
        "scenario": "scale-down", "runs": runs, "seed": 11,
        "traffic": {"rps": rps},
        "workload": {"replicas": replicas, "remove": 1},
        "lb": {"attach_delay": 5, "detach_delay": {"dist": "fixed", "value": detach},
               "health_check": None, "deregistration_delay": 30},
        "controller": {"reaction": {"dist": "fixed", "value": reaction}},
        "drain": {"pre_stop_sleep": sleep, "termination_grace_period": 90},
    }
    return load_study(raw).base


@pytest.mark.parametrize(
    ("replicas", "reaction", "detach", "sleep", "rps"),
    [
        (10, 1, 10, 0, 1000), (10, 1, 10, 4, 1000), (3, 0.5, 20, 5, 50), (20, 2, 3, 10, 1000),
        (2, 1, 30, 30, 7),
    ],
)
def test_mean_failed_matches_closed_form(replicas: int, reaction: float, detach: float, sleep: float,
                                         rps: float) -> None:
    runs = 4000
    result = simulate(_scale_down(replicas, reaction, detach, sleep, rps, runs))
    expected = rps / replicas * max(0.0, reaction + detach - sleep)
    # the engine's conditional mean is exact here...
    assert result.expected["routed_after_stop"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert result.expected["no_capacity"].max() == 0
    assert result.expected["killed_in_flight"].max() < 1e-9
    # ...and the sampled counts agree within 5 standard errors of a Poisson mean
    tolerance = 5 * math.sqrt(expected / runs) + 1e-9
    assert abs(result.failed.mean() - expected) <= tolerance
    if expected == 0:
        assert result.failed.max() == 0
