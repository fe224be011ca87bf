"""The vectorized latency model: failed requests per cause for one scenario, all runs at once.

Nothing here simulates a request.  Each Monte Carlo run is reduced to a *timeline*, the instants at
which each changing pod enters and leaves the LB's rotation, stops accepting and has its
connections cut (:mod:`negsync.sim.lifecycle`).  Between consecutive instants the set in rotation
is constant, so each cause's failed requests are Poisson with a mean integrated exactly over those
segments (:mod:`negsync.sim.failures`), drawn by inverse CDF from one uniform per run and cause
(:mod:`negsync.sim.poisson`).  :func:`simulate` composes the three for one sweep point; the
derivation is in docs/simulation.md, "How it is computed".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from negsync.sim.failures import expected_failures
from negsync.sim.lifecycle import Streams, build_timeline, serving_minimum
from negsync.sim.poisson import poisson_from_uniform
from negsync.sim.scenario import CAUSES, RETRY_PATHS, Scenario

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class PointResult:
    """One sweep point: per-run outcomes."""

    failed: IntArray  # (runs,) total failed requests
    by_cause: dict[str, IntArray]
    expected: dict[str, FloatArray]  # (runs,) conditional Poisson mean per cause
    duration: FloatArray
    min_capacity: FloatArray  # (runs,) fewest endpoints both routed and accepting
    # failed attempts that a retry turned into a success, per retry path (not in ``failed``)
    absorbed: IntArray | None = None  # (runs,) total
    absorbed_by: dict[str, IntArray] | None = None
    expected_absorbed: dict[str, FloatArray] | None = None



def simulate(s: Scenario, runs: int | None = None) -> PointResult:
    """Run one scenario (one sweep point) for ``runs`` Monte Carlo runs (default: its own)."""
    runs = s.runs if runs is None else runs
    streams = Streams(s.seed)
    tl = build_timeline(s, runs, streams)
    expected, expected_absorbed = expected_failures(tl, s)
    uniforms = streams["poisson"].random((len(CAUSES), runs))
    by_cause = {
        cause: poisson_from_uniform(uniforms[i], expected[cause]) for i, cause in enumerate(CAUSES)
    }
    failed = np.sum([by_cause[c] for c in CAUSES], axis=0).astype(np.int64)
    u_absorbed = streams["absorbed"].random((len(RETRY_PATHS), runs))
    absorbed_by = {
        path: poisson_from_uniform(u_absorbed[i], expected_absorbed[path])
        for i, path in enumerate(RETRY_PATHS)
    }
    return PointResult(
        failed=failed,
        by_cause=by_cause,
        expected=expected,
        duration=tl.duration,
        min_capacity=serving_minimum(tl),
        absorbed=np.sum([absorbed_by[p] for p in RETRY_PATHS], axis=0).astype(np.int64),
        absorbed_by=absorbed_by,
        expected_absorbed=expected_absorbed,
    )
