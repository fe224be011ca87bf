"""Running a study: every sweep point with common random numbers, summarized.

Every sweep point is simulated with the scenario's own seed, so all points see the same random
inputs (the same startup times, delays, health-check phases and Poisson uniforms, each from its
own stream; see :class:`negsync.sim.lifecycle.Streams`).  Differences between points are then due to
the swept parameter, not to sampling noise, and monotone effects (a longer preStop sleep) show
as monotone curves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from negsync.sim.scenario import CAUSES, RETRY_PATHS
from negsync.sim.study import Study, SweepPoint
from negsync.sim.vectorized import PointResult, simulate


@dataclass(frozen=True, slots=True)
class PointSummary:
    params: dict[str, float | int]
    failed_mean: float
    failed_p50: int
    failed_p99: int
    failed_at_objective: int  # failed requests at objective.quantile
    expected_mean: float  # mean of the per-run Poisson means (no sampling noise from counts)
    by_cause: dict[str, float]
    duration_mean: float
    duration_p99: float
    min_capacity_mean: float
    min_capacity_min: float
    p_any: float = 0.0  # share of runs with at least one failed request
    failed_max: int = 0  # the worst run
    quantile: float = 0.99  # objective.quantile, at which failed_at_objective is taken
    # per-run totals, in run order: with common random numbers run i sees the same random inputs
    # at every point, which is what the bootstrap in negsync.sim.decision resamples
    failed: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64),
                                          repr=False, compare=False)
    absorbed_mean: float = 0.0  # failed attempts a retry turned into a success (not in failed_*)
    absorbed_by: dict[str, float] = field(default_factory=dict)


def plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _count_quantile(values: np.ndarray, q: float) -> int:
    return int(np.quantile(values, q, method="inverted_cdf"))


def summarize(point: SweepPoint, result: PointResult) -> PointSummary:
    q = point.scenario.objective.quantile
    return PointSummary(
        params={path: plain(value) for path, value in point.params},
        failed_mean=float(result.failed.mean()),
        failed_p50=_count_quantile(result.failed, 0.5),
        failed_p99=_count_quantile(result.failed, 0.99),
        failed_at_objective=_count_quantile(result.failed, q),
        expected_mean=float(sum(result.expected[c].mean() for c in CAUSES)),
        by_cause={c: float(result.by_cause[c].mean()) for c in CAUSES},
        duration_mean=float(result.duration.mean()),
        duration_p99=float(np.quantile(result.duration, 0.99)),
        min_capacity_mean=float(result.min_capacity.mean()),
        min_capacity_min=float(result.min_capacity.min()),
        p_any=float(np.mean(result.failed > 0)),
        failed_max=int(result.failed.max()),
        quantile=q,
        failed=result.failed,
        absorbed_mean=float(result.absorbed.mean()) if result.absorbed is not None else 0.0,
        absorbed_by={
            p: float(result.absorbed_by[p].mean()) for p in RETRY_PATHS
        } if result.absorbed_by is not None else {},
    )


def run_study(
    study: Study, progress: Callable[[int, int], None] | None = None
) -> list[PointSummary]:
    """Simulate every sweep point in order; ``progress(done, total)`` after each."""
    summaries = []
    for i, point in enumerate(study.points):
        summaries.append(summarize(point, simulate(point.scenario)))
        if progress is not None:
            progress(i + 1, len(study.points))
    return summaries
