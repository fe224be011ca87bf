"""How sure a recommendation is: the runs resampled with replacement, the grid rule re-applied.

Resampling is joint across points (the same run indices at every point), so common random numbers
are kept.  A resample's choice ``v_j`` only says the answer is in ``(v_{j-1}, v_j]``; where such a
gap is wider than the resolution its midpoint is simulated (through :class:`~negsync.sim.points.Points`)
and the bootstrap repeated, so the interval's ends are known to the resolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from negsync.sim.points import Params, Points, choose
from negsync.sim.study import Study
from negsync.sim.sweep import plain

BOOTSTRAP_RESAMPLES = 200
INTERVAL_LEVEL = 0.9
_SHARPEN_STEPS = 12  # extra simulations allowed to pin the interval's ends to the resolution


def bootstrap(
    study: Study, pts: Points, decisions: tuple[str, ...], chosen: Mapping[str, float], resolution: float | None
) -> tuple[float | None, tuple[float | int | None, float | int | None] | None, int]:
    """Share of resamples choosing ``chosen`` and the 90% interval of the choices (one axis).

    A resample's choice ``v_j`` (the first passing value simulated) means "somewhere in
    ``(v_{j-1}, v_j]``", so the interval's low end is taken from ``v_{j-1}`` + one resolution
    step, its high end from ``v_j``.  Where such a gap is wider than the resolution, its midpoint
    is simulated and the bootstrap repeated (up to ``_SHARPEN_STEPS`` times), so the interval's
    ends are known to the resolution rather than to the grid's spacing.
    """
    if not decisions:
        return None, None, 0
    runs = study.base.runs
    rng = np.random.default_rng([study.base.seed, 0xB007])
    idx = rng.integers(0, runs, size=(BOOTSTRAP_RESAMPLES, runs))
    target = tuple((p, float(chosen[p])) for p in decisions)
    for _ in range(_SHARPEN_STEPS + 1):
        keys, picks = _resampled_choices(study, pts, decisions, idx)
        if not keys:
            return None, None, 0
        same = float(np.mean([p >= 0 and keys[p] == target for p in picks]))
        if len(decisions) != 1 or resolution is None:
            return same, None, BOOTSTRAP_RESAMPLES
        axis = decisions[0]
        values = [k[0][1] for k in keys]
        low_ends = np.array([values[0] if p == 0 else (np.inf if p < 0 else values[p - 1] + resolution)
                             for p in picks])
        high_ends = np.array([np.inf if p < 0 else values[p] for p in picks])
        tail = (1 - INTERVAL_LEVEL) / 2
        lo = float(np.quantile(low_ends, tail, method="inverted_cdf"))
        hi = float(np.quantile(high_ends, 1 - tail, method="inverted_cdf"))
        close = resolution * 1e-6
        wide = [k for k in range(1, len(values)) if values[k] - values[k - 1] > resolution + close]
        gaps = {k for k in wide if abs(values[k - 1] + resolution - lo) < close or abs(values[k] - hi) < close}
        if not gaps:
            break
        for k in gaps:
            steps = math.floor((values[k] - values[k - 1]) / resolution + 1e-9)
            pts.worst({axis: round(values[k - 1] + (steps // 2) * resolution, 9)})
    interval = (None if math.isinf(lo) else plain(lo), None if math.isinf(hi) else plain(hi))
    return same, interval, BOOTSTRAP_RESAMPLES


def _resampled_choices(
    study: Study, pts: Points, decisions: tuple[str, ...], idx: np.ndarray
) -> tuple[list[Params], np.ndarray]:
    """The decision groups simulated at every uncertain value, and each resample's choice among them."""
    runs = study.base.runs
    q = study.base.objective.quantile
    swept = set(study.swept)
    on_grid = [s for s in pts.cache.values() if set(s.params) == swept and s.failed.size == runs]
    groups = sorted({tuple((p, float(s.params[p])) for p in decisions) for s in on_grid})
    complete = []
    for g in groups:
        members = [s for s in on_grid if all(float(s.params[p]) == v for p, v in g)]
        if len(members) == len(pts.combos):
            complete.append((g, members))
    if not complete:
        return [], np.zeros(0, dtype=np.int64)
    rank = max(0, math.ceil(q * runs) - 1)  # inverted-CDF quantile: the ceil(q n)-th smallest
    goal = study.base.objective.failed_requests
    passes = np.ones((idx.shape[0], len(complete)), dtype=bool)
    for j, (_, members) in enumerate(complete):
        for s in members:
            at_q = np.partition(s.failed[idx], rank, axis=1)[:, rank]
            passes[:, j] &= at_q <= goal
    return [g for g, _ in complete], choose(passes, monotone=len(decisions) == 1)


def interval_text(interval: tuple[float | int | None, float | int | None] | None) -> str:
    if interval is None:
        return ""
    lo, hi = interval
    return f" ({INTERVAL_LEVEL:.0%} interval {lo if lo is not None else 'beyond the sweep'}–" \
           f"{hi if hi is not None else 'beyond the sweep'})"
