"""The points a decision is taken on: simulated once each, by their parameters, and the grid rule.

:class:`Points` simulates a point (the study's scenario with some dotted paths overwritten) the
first time it is asked for and keeps it, so the grid, the refinement, the recommended pair and the
bootstrap's extra points never simulate the same parameters twice; :meth:`Points.worst` takes a
decision value at its worst uncertain value.  :func:`choose` is the grid rule shared by the
decision and the bootstrap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from negsync.sim.study import Study, point_at
from negsync.sim.sweep import PointSummary, summarize
from negsync.sim.vectorized import simulate

Params = tuple[tuple[str, float], ...]


class Points:
    """Simulated points by their parameters, so that no point is simulated twice."""

    def __init__(self, study: Study, grid: Iterable[PointSummary]) -> None:
        self.study = study
        self.goal = study.base.objective.failed_requests
        self.cache: dict[Params, PointSummary] = {}
        self.added: list[PointSummary] = []
        for summary in grid:
            self.cache[params_key(summary.params)] = summary
        combos = {tuple((p, float(s.params[p])) for p in study.uncertain) for s in grid}
        self.combos: list[Params] = sorted(combos) or [()]

    def at(self, params: Mapping[str, float]) -> PointSummary:
        key = params_key(params)
        if key not in self.cache:
            point = point_at(self.study, dict(key))
            summary = summarize(point, simulate(point.scenario))
            self.cache[key] = summary
            self.added.append(summary)
        return self.cache[key]

    def worst(self, decision: Mapping[str, float]) -> PointSummary:
        """The uncertain combination at which ``decision`` does worst (objective value, then mean)."""
        points = [self.at({**decision, **dict(combo)}) for combo in self.combos]
        return max(points, key=lambda s: (s.failed_at_objective, s.failed_mean))

    def passes(self, summary: PointSummary) -> bool:
        return summary.failed_at_objective <= self.goal


def params_key(params: Mapping[str, float | int]) -> Params:
    return tuple(sorted((k, round(float(v), 9)) for k, v in params.items()))


def choose(passes: np.ndarray, *, monotone: bool) -> np.ndarray:
    """Index of the chosen group per row of ``passes`` (rows x groups, in order); -1 for none.

    Monotone: the first group from which every later group passes.  Otherwise the first passing.
    """
    ok = np.flip(np.logical_and.accumulate(np.flip(passes, -1), axis=-1), -1) if monotone else passes
    return np.where(ok.any(axis=-1), ok.argmax(axis=-1), -1)
