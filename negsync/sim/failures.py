"""Failed-request means per cause from a :class:`~negsync.sim.lifecycle.Timeline`, exactly integrated.

Pods whose membership never changes only add a constant to the number of endpoints in
rotation.  Between consecutive ``a``/``b`` instants the routing set is constant, so with
Poisson arrivals at ``rps`` spread evenly over the ``n`` endpoints in rotation:

* ``routed_after_stop`` of a pod has mean ``rps * integral over [max(a, e), b) of 1/n(t) dt``;
* ``killed_in_flight`` has mean ``rps * integral over [a, min(b, e)) of S(k - t)/n(t) dt`` where
  ``S`` is the request-duration survival function; on a constant-``n`` segment ``[s1, s2)``
  that integral is ``(G(k - s2) - G(k - s1)) / n`` with ``G(x) = E[(D - x)+]`` (the stop-loss
  transform, tabulated once per distribution);
* ``no_capacity`` has mean ``rps * (time with n = 0)``.

Retries, connection routing (pinned connections), overload and keep-alive races are added on the
same segments; each function's docstring gives its formula.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from negsync.core.latency import Distribution, Empirical, Fixed
from negsync.sim.lifecycle import BIG, Timeline
from negsync.sim.scenario import CAUSES, RETRY_PATHS, Scenario

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_CHUNK_ELEMENTS = 4_000_000  # bound on runs x pods x segments held in memory at once



_TABLES: dict[Any, tuple[FloatArray, FloatArray, FloatArray]] = {}


def _stop_loss_table(dist: Distribution) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sorted support points of ``dist`` and the suffix sums of the points and of their squares."""
    try:
        return _TABLES[dist]
    except (KeyError, TypeError):
        pass
    if isinstance(dist, Fixed):
        points = np.array([dist.value])
    elif isinstance(dist, Empirical):
        points = np.sort(np.asarray(dist.samples, dtype=np.float64))
    else:
        m = 4096
        points = np.array([dist.quantile((i + 0.5) / m) for i in range(m)], dtype=np.float64)
        points.sort()
    suffix = np.concatenate([np.cumsum(points[::-1])[::-1], [0.0]])
    suffix2 = np.concatenate([np.cumsum((points * points)[::-1])[::-1], [0.0]])
    try:
        if len(_TABLES) < 64:
            _TABLES[dist] = (points, suffix, suffix2)
    except TypeError:  # an unhashable distribution: just recompute next time
        pass
    return points, suffix, suffix2


def stop_loss(dist: Distribution, x: FloatArray) -> FloatArray:
    """``G(x) = E[(D - x)+]``: expected time a request of duration ``D`` runs past ``x``."""
    points, suffix, _ = _stop_loss_table(dist)
    idx = np.searchsorted(points, x, side="right")
    return (suffix[idx] - (points.size - idx) * x) / points.size


def stop_loss_integral(dist: Distribution, x: FloatArray) -> FloatArray:
    """``H(x) = E[((L - x)+)^2] / 2``, the integral of ``G`` from ``x`` to infinity."""
    points, suffix, suffix2 = _stop_loss_table(dist)
    idx = np.searchsorted(points, x, side="right")
    count = points.size - idx
    return (suffix2[idx] - 2 * x * suffix[idx] + count * x * x) / (2 * points.size)


def keepalive_race_probability(per_connection_rps: float, app_timeout: float, window: float) -> float:
    """Chance that a request is sent on a connection the app is closing for idleness.

    Requests on one LB-to-pod connection are Poisson at ``per_connection_rps``; the app closes the
    connection when it has been idle ``app_timeout`` seconds, and the LB learns of it ``window``
    seconds later.  A request fails when the gap before it falls in
    ``[app_timeout, app_timeout + window)``: ``exp(-l T) (1 - exp(-l w))``.
    """
    lam = per_connection_rps
    return math.exp(-lam * app_timeout) * -math.expm1(-lam * window)


def expected_failures(
    tl: Timeline, s: Scenario
) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """The conditional Poisson mean of each cause's failed requests, and of absorbed ones, per run."""
    runs, pods = tl.a.shape
    out = {cause: np.zeros(runs) for cause in CAUSES}
    absorbed = {path: np.zeros(runs) for path in RETRY_PATHS}
    horizon = tl.duration if tl.horizon is None else tl.horizon
    zonal = s.workload.zones > 1 and not s.lb.cross_zone and tl.zone is not None
    groups = s.workload.zones if zonal else 1
    for z in range(groups):
        if zonal:
            assert tl.zone is not None
            cols = np.flatnonzero(tl.zone == z)
            base = tl.base_by_zone[z]
        else:
            cols = np.arange(pods)
            base = tl.base
        # with cross-zone load balancing off, each zone's LB nodes get an equal share of the
        # traffic and send it only to that zone's endpoints (ELB docs, "cross-zone load balancing")
        rate = s.traffic.rps / groups
        removed = int(np.sum(cols < tl.removed))
        _accumulate(tl, cols, removed, base, rate, s, horizon, out, absorbed)
    ka = s.workload.keepalive_timeout
    if ka is not None and (s.lb.idle_timeout is None or ka < s.lb.idle_timeout):
        per_connection = s.traffic.rps / (s.workload.replicas * s.lb.connections_per_endpoint)
        p = keepalive_race_probability(per_connection, ka, s.lb.keepalive_race_window)
        out["keepalive_race"] = s.traffic.rps * p * horizon
    return out, absorbed


def _steps(
    times: list[FloatArray], deltas: list[list[FloatArray]], base: float
) -> tuple[FloatArray, FloatArray, list[FloatArray]]:
    """Segments between sorted instants, and each counter (``base`` + deltas) on every segment."""
    t = np.concatenate(times, axis=1)
    order = np.argsort(t, axis=1, kind="stable")
    ts = np.take_along_axis(t, order, axis=1)
    counts = []
    for i, parts in enumerate(deltas):
        d = np.take_along_axis(np.concatenate(parts, axis=1), order, axis=1)
        counts.append((base if i == 0 else 0.0) + np.cumsum(d, axis=1)[:, :-1])
    return ts[:, :-1], ts[:, 1:], counts


def _accumulate(
    tl: Timeline, cols: IntArray, m: int, base: int, rate: float, s: Scenario, horizon: FloatArray,
    out: dict[str, FloatArray], absorbed: dict[str, FloatArray],
) -> None:
    """Add one zone's means to ``out``/``absorbed``; ``cols`` lists its pods, removed ones first.

    Two segmentations: a fine one (every ``a``, ``b`` and stop instant ``max(a, e)``) on which
    both the endpoints in rotation ``n`` and the stopped ones among them ``s`` are constant, so
    refused requests, retries and overload are exact 2-D sums; and the ``a``/``b`` one, on which
    the per-pod killed-in-flight integral (3-D) needs only ``n``.
    """
    runs = tl.a.shape[0]
    pods = cols.size
    retries = s.lb.retries > 0 or s.traffic.client_retry_share > 0
    capacity = s.workload.pod_capacity
    duration = s.traffic.request_duration
    lifetime = s.traffic.connection_lifetime
    pinned = s.lb.routing == "connections" and lifetime.mean > 0
    chunk = max(1, _CHUNK_ELEMENTS // max(1, max(m, 1) * 2 * pods))
    for lo_run in range(0, runs, chunk):
        sl = slice(lo_run, min(runs, lo_run + chunk))
        a, b, e, k = (x[sl][:, cols] for x in (tl.a, tl.b, tl.e, tl.k))
        ones, zeros = np.ones_like(a), np.zeros_like(a)
        # a closing "forever" instant, so that the state after the last change is a segment too
        tail = np.full((a.shape[0], 1), BIG)
        tail0 = np.zeros_like(tail)
        stop = np.maximum(a, e)
        stops = (stop < b).astype(np.float64)  # stopped accepting while still in rotation
        lo, hi, (n, stopped) = _steps(
            [a, b, np.where(stops > 0, stop, BIG), tail],
            [[ones, -ones, zeros, tail0], [zeros, -stops, stops, tail0]],
            base,
        )
        seg_len = hi - lo
        inv = np.where(n > 0, 1.0 / np.maximum(n, 1), 0.0)
        # counted until the event ends: with cross-zone off a scale-down can leave a zone empty
        # for good, which is an outage of that zone's share, not a transient of the event
        end = horizon[sl][:, None]
        empty = np.clip(np.minimum(hi, end) - lo, 0.0, None)
        out["no_capacity"][sl] += rate * np.sum(empty * (n <= 0), axis=1)
        if m > 0:
            q = stopped * inv  # share of the endpoints in rotation that refuse
            if retries:
                _retried(rate, seg_len, q, s, sl, out, absorbed)
            else:
                out["routed_after_stop"][sl] += rate * np.sum(seg_len * q, axis=1)
            clo, chi, (cn,) = _steps([a, b, tail], [[ones, -ones, tail0]], base)
            seg_lo, seg_hi = clo[:, None, :], chi[:, None, :]
            seg_inv = np.where(cn > 0, 1.0 / np.maximum(cn, 1), 0.0)[:, None, :]
            pa, pb, pe, pk = (x[:, :m, None] for x in (a, b, e, k))
            s1 = np.maximum(seg_lo, pa)
            s2 = np.minimum(seg_hi, np.minimum(pb, pe))
            mask = s2 > s1
            killed = np.zeros(s1.shape)
            due = np.broadcast_to(pk, s1.shape)[mask]
            killed[mask] = stop_loss(duration, due - s2[mask]) - stop_loss(duration, due - s1[mask])
            out["killed_in_flight"][sl] += rate * np.sum(killed * seg_inv, axis=(1, 2))
            if pinned:
                assert tl.exit is not None
                exit_ = tl.exit[sl][:, cols[:m]]
                closed = np.minimum(k[:, :m], exit_)
                share = _pinned_share(a[:, :m], b[:, :m], lo, hi, inv, rate, lifetime)
                _pinned(share, b[:, :m], e[:, :m], closed, k[:, :m], s, sl, out)
                _pinned_through_outages(share, b[:, :m], closed, lo, np.minimum(hi, end), n, s, sl, out)
        if capacity is not None:
            # a pod gets rate/n; what it cannot serve fails (counted only during the event)
            span = np.clip(hi, 0.0, end) - np.clip(lo, 0.0, end)
            excess = np.maximum(0.0, rate * inv - capacity) * np.maximum(n - stopped, 0.0)
            out["overload"][sl] += np.sum(excess * span, axis=1)


def _pinned_share(
    pa: FloatArray, pb: FloatArray, lo: FloatArray, hi: FloatArray, inv: FloatArray, rate: float,
    lifetime: Distribution,
) -> FloatArray:
    """Each removed pod's share of the traffic at ``pb``, when the LB routes connections.

    A connection carrying traffic at ``t`` was opened ``x`` earlier with the stationary age density
    ``S_L(x)/E[L]``, and routed to the pod with chance ``1/n`` if the pod was in rotation then; so
    the share is the sum over the segments ``[lo, hi)`` the pod spent in rotation of
    ``(G_L(pb - hi) - G_L(pb - lo)) / (n E[L])``.  It lags the per-request share ``1/n(pb-)``.
    """
    mine = (lo[:, None, :] >= pa[:, :, None]) & (hi[:, None, :] <= pb[:, :, None])
    x_hi = np.where(mine, pb[:, :, None] - hi[:, None, :], 0.0)
    x_lo = np.where(mine, pb[:, :, None] - lo[:, None, :], 0.0)
    age = (stop_loss(lifetime, x_hi) - stop_loss(lifetime, x_lo)) / lifetime.mean
    share: FloatArray = rate * np.sum(np.where(mine, age * inv[:, None, :], 0.0), axis=2)
    return share


def _pinned_through_outages(
    share: FloatArray, pb: FloatArray, closed: FloatArray, lo: FloatArray, hi: FloatArray,
    n: FloatArray, s: Scenario, sl: slice, out: dict[str, FloatArray],
) -> None:
    """With no endpoint in rotation, requests on still-open pinned connections do not need one.

    They reach their pod (and succeed or fail there, counted by :func:`_pinned`), so they are
    taken out of ``no_capacity``: per segment with ``n <= 0`` and removed pod, its pinned traffic
    over the overlap with ``[b, closed)``.
    """
    lifetime = s.traffic.connection_lifetime
    outage = (n <= 0)[:, None, :]
    u1 = np.maximum(lo[:, None, :], pb[:, :, None])
    u2 = np.minimum(hi[:, None, :], closed[:, :, None])
    hit = outage & (u2 > u1) & (pb[:, :, None] < BIG / 2)
    x1 = np.where(hit, u1 - pb[:, :, None], 0.0)
    x2 = np.where(hit, u2 - pb[:, :, None], 0.0)
    mass = (stop_loss_integral(lifetime, x1) - stop_loss_integral(lifetime, x2)) / lifetime.mean
    taken = np.sum(np.where(hit, share[:, :, None] * mass, 0.0), axis=(1, 2))
    out["no_capacity"][sl] = np.maximum(0.0, out["no_capacity"][sl] - taken)


def _retried(
    rate: float, seg_len: FloatArray, q: FloatArray, s: Scenario, sl: slice,
    out: dict[str, FloatArray], absorbed: dict[str, FloatArray],
) -> None:
    """Requests routed to a stopped pod, after LB and client retries.

    ``q`` is the share of endpoints in rotation that no longer accept, per segment.  A refused
    connection never reached the app, so an LB may retry it (on an endpoint drawn afresh: it fails
    again with chance ``q``) if the request is retryable; a client retries a share of what still
    fails, once, with the same odds.  Splitting a Poisson process keeps each part Poisson.
    """
    first = rate * seg_len * q
    rho, c = s.traffic.retryable_share, s.traffic.client_retry_share
    after_lb = first * (rho * q ** s.lb.retries + (1.0 - rho))
    final = after_lb * (1.0 - c * (1.0 - q))
    out["routed_after_stop"][sl] += np.sum(final, axis=1)
    absorbed["lb_retry"][sl] += np.sum(first - after_lb, axis=1)
    absorbed["client_retry"][sl] += np.sum(after_lb - final, axis=1)


def _pinned(
    share: FloatArray, pb: FloatArray, pe: FloatArray, closed: FloatArray, pk: FloatArray,
    s: Scenario, sl: slice, out: dict[str, FloatArray],
) -> None:
    """Requests on client connections opened before the LB stopped routing to a removed pod.

    An L4 LB (NLB) routes connections: after ``b`` a removed pod still gets the requests of the
    connections it already holds, at its connection share at ``b`` (:func:`_pinned_share`) times
    the chance that a connection open at ``b`` is still open (stationary residual lifetime,
    ``G_L(x)/E[L]``; exact for exponential lifetimes, an approximation otherwise).  Requests arriving
    after the pod stopped accepting (``e``) fail until its connections close (``closed``: cut by
    the LB or SIGKILL at ``k``, or closed by the kernel when the process exits; clients then
    reconnect through the LB) — pessimistic for a server that closes idle keep-alive connections
    at SIGTERM.  Those accepted but still running at ``k`` are killed (bounded above by the pod's
    full pre-``b`` share, so the approximation errs on the pessimistic side).
    """
    lifetime = s.traffic.connection_lifetime
    mean_life = lifetime.mean
    live = pb < BIG / 2
    start = np.maximum(pb, pe)
    failing = live & (closed > start)
    x1 = np.where(failing, start - pb, 0.0)
    x2 = np.where(failing, closed - pb, 0.0)
    integral = (stop_loss_integral(lifetime, x1) - stop_loss_integral(lifetime, x2)) / mean_life
    out["routed_after_stop"][sl] += np.sum(np.where(failing, share * integral, 0.0), axis=1)
    served_until = np.minimum(pe, pk)
    serving = live & (served_until > pb)
    duration = s.traffic.request_duration
    g1 = stop_loss(duration, np.where(serving, pk - served_until, 0.0))
    g0 = stop_loss(duration, np.where(serving, pk - pb, 0.0))
    out["killed_in_flight"][sl] += np.sum(np.where(serving, share * (g1 - g0), 0.0), axis=1)
