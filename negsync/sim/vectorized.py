"""The vectorized latency model: failed requests per cause for one scenario, all runs at once.

Nothing here simulates a request.  Each Monte Carlo run is reduced to a *timeline*: for every
pod whose LB membership changes, four instants (arrays shaped ``(runs, pods)``):

``a``  the LB starts routing new requests to it (``-BIG`` for pods present at t=0),
``b``  the LB stops routing new requests to it (detach propagated, or health checks failed),
``e``  the pod stops accepting new requests (SIGTERM after preStop, or SIGKILL),
``k``  its connections are cut (SIGKILL at the grace period, or the LB's deregistration delay
       running out after the detach), killing requests still in flight.

Pods whose membership never changes only add a constant to the number of endpoints in
rotation.  Between consecutive ``a``/``b`` instants the routing set is constant, so with
Poisson arrivals at ``rps`` spread evenly over the ``n`` endpoints in rotation:

* ``routed_after_stop`` of a pod has mean ``rps * integral over [max(a, e), b) of 1/n(t) dt``;
* ``killed_in_flight`` has mean ``rps * integral over [a, min(b, e)) of S(k - t)/n(t) dt`` where
  ``S`` is the request-duration survival function; on a constant-``n`` segment ``[s1, s2)``
  that integral is ``(G(k - s2) - G(k - s1)) / n`` with ``G(x) = E[(D - x)+]`` (the stop-loss
  transform, tabulated once per distribution);
* ``no_capacity`` has mean ``rps * (time with n = 0)``.

Splitting a Poisson process by disjoint criteria gives independent Poisson counts, so each cause
is one Poisson draw per run from its exact conditional mean.  The draws use inverse-CDF sampling
from one uniform per run and cause, so a smaller mean never yields a larger count for the same
uniform: with common random numbers (same seed at every sweep point) the sweep curve is as
smooth as the timelines allow.

Random inputs come from named, independent streams (:class:`Streams`) so that changing one
parameter never shifts the random numbers another quantity sees.  A health check's phase is
uniform, so the wait from an instant to the next check is ``U * interval`` with ``U`` uniform,
independent of the instant; it is drawn directly.

One module per step: :mod:`negsync.sim.lifecycle` builds the timeline, :mod:`negsync.sim.failures`
integrates the means, :mod:`negsync.sim.poisson` draws the counts; :func:`simulate` composes them.
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
