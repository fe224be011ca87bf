"""Running a study (:mod:`negsync.sim.sweep`): per-run outcomes summarized, every point on common random numbers.

What the summaries are used for (the recommendation) is tests/sim/test_decision.py; here the
summary of known per-run arrays, and that the sweep runs every point with the same random inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from negsync.sim.loader import load_study
from negsync.sim.scenario import CAUSES, RETRY_PATHS
from negsync.sim.sweep import plain, run_study, summarize
from negsync.sim.vectorized import PointResult


def result(failed: list[int], *, absorbed: bool = False) -> PointResult:
    runs = len(failed)
    counts = np.asarray(failed, dtype=np.int64)
    by_cause = {cause: np.zeros(runs, dtype=np.int64) for cause in CAUSES}
    by_cause["routed_after_stop"] = counts
    expected = {cause: np.full(runs, 0.5) for cause in CAUSES}
    return PointResult(
        failed=counts, by_cause=by_cause, expected=expected,
        duration=np.linspace(10.0, 20.0, runs), min_capacity=np.asarray([3.0] * (runs - 1) + [1.0]),
        absorbed=np.full(runs, 2, dtype=np.int64) if absorbed else None,
        absorbed_by={path: np.full(runs, 1, dtype=np.int64) for path in RETRY_PATHS} if absorbed else None)


def test_plain_keeps_whole_numbers_as_ints_for_json_and_tables() -> None:
    assert plain(30.0) == 30 and isinstance(plain(30.0), int)
    assert plain(2.5) == 2.5 and isinstance(plain(np.float64(2.5)), float)


def test_failed_request_quantiles_are_counts_that_some_run_had(small: dict[str, Any]) -> None:
    """inverted_cdf: the p99 of 100 runs is the 99th smallest run, never an interpolated fraction."""
    point = load_study(small).points[1]
    summary = summarize(point, result([0] * 97 + [4, 5, 50]))
    assert (summary.failed_p50, summary.failed_p99, summary.failed_max) == (0, 5, 50)
    assert summary.failed_at_objective == 5 and summary.quantile == 0.99
    assert summary.failed_mean == pytest.approx(0.59) and summary.p_any == pytest.approx(0.03)
    assert summary.params == {"drain.pre_stop_sleep": 10}


def test_the_objective_quantile_is_the_scenarios(small: dict[str, Any]) -> None:
    small["objective"] = {"quantile": 0.5}
    point = load_study(small).points[0]
    assert summarize(point, result([0, 0, 3, 9])).failed_at_objective == 0
    small["objective"] = {"quantile": 0.9}
    assert summarize(load_study(small).points[0], result([0, 0, 3, 9])).failed_at_objective == 9


def test_causes_expected_counts_capacity_and_duration_are_averaged_over_runs(small: dict[str, Any]) -> None:
    summary = summarize(load_study(small).points[0], result([2, 4, 0, 6]))
    assert summary.by_cause["routed_after_stop"] == 3.0
    assert set(summary.by_cause) == set(CAUSES) and sum(summary.by_cause.values()) == 3.0
    assert summary.expected_mean == pytest.approx(0.5 * len(CAUSES))
    assert summary.duration_mean == pytest.approx(15.0) and summary.min_capacity_min == 1.0
    assert summary.min_capacity_mean == pytest.approx(2.5)
    assert summary.absorbed_mean == 0.0 and summary.absorbed_by == {}
    retried = summarize(load_study(small).points[0], result([2, 4, 0, 6], absorbed=True))
    assert retried.absorbed_mean == 2.0 and retried.absorbed_by == dict.fromkeys(RETRY_PATHS, 1.0)


def test_every_point_sees_the_same_random_inputs(small: dict[str, Any]) -> None:
    """Common random numbers: two points that differ in nothing that matters give identical runs."""
    small["runs"] = 50
    small["sweep"] = {"drain.termination_grace_period": [90, 91]}  # both far above any request's length
    progress: list[tuple[int, int]] = []
    first, second = run_study(load_study(small), progress=lambda done, total: progress.append((done, total)))
    assert progress == [(1, 2), (2, 2)]
    assert np.array_equal(first.failed, second.failed) and first.failed.size == 50
    assert first.params == {"drain.termination_grace_period": 90}
