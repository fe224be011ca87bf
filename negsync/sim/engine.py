"""The vectorized latency engine: failed requests per cause for one scenario, all runs at once.

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
independent of the instant; the engine draws that directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from negsync.core.latency import Distribution, Empirical, Fixed
from negsync.sim.scenario import CAUSES, RETRY_PATHS, Scenario

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BIG = 1e9  # "forever" in seconds; finite so that interval arithmetic never makes NaN
_STREAMS = (
    "startup", "attach_reaction", "attach", "hc_new", "gate_reaction",
    "detach_reaction", "detach", "hc_old", "poisson", "absorbed",
)
_CHUNK_ELEMENTS = 4_000_000  # bound on runs x pods x segments held in memory at once
_POISSON_EXACT_MAX = 200.0  # above this mean, a Cornish-Fisher normal approximation is used


class Streams:
    """One independent generator per random input, all derived from the scenario seed."""

    def __init__(self, seed: int) -> None:
        children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
        self._rngs = {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children, strict=True)}

    def __getitem__(self, name: str) -> np.random.Generator:
        return self._rngs[name]

    def draw(self, name: str, dist: Distribution, shape: tuple[int, int]) -> FloatArray:
        size = shape[0] * shape[1]
        values = np.asarray(dist.sample(self._rngs[name], size), dtype=np.float64)
        return values.reshape(shape)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Membership instants of the changing pods; the first ``removed`` columns are removed pods."""

    a: FloatArray
    b: FloatArray
    e: FloatArray
    k: FloatArray
    removed: int
    base: int  # pods in rotation throughout
    duration: FloatArray  # (runs,) rollout / event duration in seconds
    zone: IntArray | None = None  # (pods,) zone of each changing pod (None: one zone)
    base_by_zone: tuple[int, ...] = ()  # pods in rotation throughout, per zone
    horizon: FloatArray | None = None  # (runs,) end of the event: every change has happened
    exit: FloatArray | None = None  # (runs, removed) when each removed pod's process exits


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


# --------------------------------------------------------------------------- timelines


def _new_pod_lags(s: Scenario, streams: Streams, shape: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
    """Creation -> routed, and creation -> available (what the rollout waits for)."""
    startup = streams.draw("startup", s.workload.startup, shape)
    react = streams.draw("attach_reaction", s.controller.reaction, shape)
    attach = streams.draw("attach", s.lb.attach_delay, shape)
    wait = streams["hc_new"].random(shape)
    gate = streams.draw("gate_reaction", s.controller.reaction, shape)
    routed = startup + react + attach
    hc = s.lb.health_check
    if hc is not None and not s.lb.attach_delay_includes_health_check:
        # first check after registration, then healthy_threshold - 1 more passing checks
        routed = routed + wait * hc.interval + (hc.healthy_threshold - 1) * hc.interval
    available = routed + gate if s.controller.readiness_gate else startup
    # minReadySeconds: Ready must hold this long before the Deployment counts the pod available
    return routed, available + s.workload.min_ready_seconds


def _drain_allowance(s: Scenario) -> float:
    """Time an app needs to finish in-flight requests once it stops accepting (their p99)."""
    return s.traffic.request_duration.quantile(0.99)


def _removed_pods(
    s: Scenario, streams: Streams, start: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """b, e, k and exit time of pods whose termination starts at ``start`` (runs, m)."""
    shape = (start.shape[0], start.shape[1])
    react = streams.draw("detach_reaction", s.controller.reaction, shape)
    detach = streams.draw("detach", s.lb.detach_delay, shape)
    wait = streams["hc_old"].random(shape)
    grace = s.drain.termination_grace_period
    sigterm = s.workload.shutdown == "on-sigterm"
    sigterm_at = start + (s.drain.pre_stop_sleep if sigterm else grace)
    # health-based drain: from SIGTERM the app fails its health check but keeps serving for
    # drain.health_check_drain seconds (never past SIGKILL); an on-sigkill app ignores SIGTERM
    serve = s.drain.health_check_drain if sigterm else 0.0
    e = np.minimum(start + grace, sigterm_at + serve)
    detached = start + react + detach
    b = detached
    hc = s.lb.health_check
    if hc is not None:
        # checks fail from SIGTERM; after the unhealthy threshold (+ a hanging check's timeout) the
        # LB still needs lb.unhealthy_propagation seconds to stop routing (NLB: containers-roadmap #470)
        unhealthy = sigterm_at + wait * hc.interval + (hc.unhealthy_threshold - 1) * hc.interval + hc.timeout
        b = np.minimum(b, unhealthy + s.lb.unhealthy_propagation)
    if s.lb.connection_termination:
        k = np.minimum(start + grace, detached + s.lb.deregistration_delay)
    else:  # NLB default: connections outlive the deregistration delay; only SIGKILL cuts them
        k = start + grace
    exit_ = np.minimum(start + grace, e + _drain_allowance(s)) if sigterm else start + grace
    return b, e, k, exit_


def build_timeline(s: Scenario, runs: int, streams: Streams) -> Timeline:
    """The membership instants of every changing pod, for ``runs`` runs."""
    w = s.workload
    if s.kind == "rolling-update":
        n = w.replicas
        routed_lag, avail_lag = _new_pod_lags(s, streams, (runs, n))
        first_new = min(n, w.max_surge + w.max_unavailable)
        first_deleted = min(n, w.max_unavailable)
        created = np.zeros((runs, n))
        avail = np.full((runs, n), np.inf)
        avail[:, :first_new] = avail_lag[:, :first_new]
        events = np.empty((runs, n))  # availability events in time order
        for j in range(n):
            events[:, j] = np.partition(avail, j, axis=1)[:, j]
            index = first_new + j
            if index < n:  # each availability frees room for one more new pod
                created[:, index] = events[:, j]
                avail[:, index] = events[:, j] + avail_lag[:, index]
        deleted = np.zeros((runs, n))  # old pod i starts terminating at deleted[:, i]
        deleted[:, first_deleted:] = events[:, : n - first_deleted]
        b_old, e_old, k_old, exit_ = _removed_pods(s, streams, deleted)
        a_new = created + routed_lag
        removed, base, duration = n, 0, events[:, -1]
    else:
        m = w.remove if s.kind == "scale-down" else w.pods_per_node
        b_old, e_old, k_old, exit_ = _removed_pods(s, streams, np.zeros((runs, m)))
        duration = np.maximum(b_old, exit_).max(axis=1)
        if s.kind == "node-drain":  # the ReplicaSet replaces evicted pods at once
            routed_lag, avail_lag = _new_pod_lags(s, streams, (runs, m))
            a_new = routed_lag
            duration = np.maximum(duration, avail_lag.max(axis=1))
        else:
            a_new = np.zeros((runs, 0))
        removed, base = m, w.replicas - m
    forever = np.full(a_new.shape, BIG)
    zone, base_by_zone = _zones(s, removed, a_new.shape[1], base)
    # every change has happened: the last pod out of rotation or stopped, the last one routed
    horizon = duration
    for changed in (b_old, e_old, a_new):
        if changed.shape[1]:
            horizon = np.maximum(horizon, changed.max(axis=1))
    return Timeline(
        a=np.concatenate([np.full(b_old.shape, -BIG), a_new], axis=1),
        b=np.concatenate([b_old, forever], axis=1),
        e=np.concatenate([e_old, forever], axis=1),
        k=np.concatenate([k_old, forever], axis=1),
        removed=removed,
        base=base,
        duration=duration,
        zone=zone,
        base_by_zone=base_by_zone,
        horizon=horizon,
        exit=exit_,
    )


def _zones(s: Scenario, removed: int, added: int, base: int) -> tuple[IntArray, tuple[int, ...]]:
    """Zone of each changing pod and the unchanging pods per zone (topology spread: round-robin).

    Old pods are numbered 0..replicas-1 and sit in zone ``i mod zones``; the first ``removed`` of
    them change, the rest are the base.  A drained node's pods are all in zone 0.  New pods are
    spread round-robin too, so a rolling update replaces a pod with one in the same zone.
    """
    z = s.workload.zones
    if s.kind == "node-drain":
        old_zone = np.zeros(removed, dtype=np.int64)
    else:
        old_zone = np.arange(removed, dtype=np.int64) % z
    new_zone = np.arange(added, dtype=np.int64) % z
    base_zone = np.arange(removed, removed + base, dtype=np.int64) % z
    counts = tuple(int(np.sum(base_zone == i)) for i in range(z))
    return np.concatenate([old_zone, new_zone]), counts


# --------------------------------------------------------------------------- failure means


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


def serving_minimum(tl: Timeline) -> FloatArray:
    """Fewest endpoints that are both routed to and accepting, over the whole event, per run."""
    end = np.minimum(tl.b, tl.e)
    times = np.concatenate([tl.a, end], axis=1)
    delta = np.concatenate([np.ones_like(tl.a), -np.ones_like(end)], axis=1)
    order = np.argsort(times, axis=1, kind="stable")
    ts = np.take_along_axis(times, order, axis=1)
    count = tl.base + np.cumsum(np.take_along_axis(delta, order, axis=1), axis=1)
    settled = np.ones(ts.shape, dtype=bool)  # ignore states inside a group of equal instants
    settled[:, :-1] = ts[:, 1:] > ts[:, :-1]
    settled &= ts < BIG / 2  # "leaving forever" is not part of the event
    if ts.shape[1] == 0:
        return np.full(tl.a.shape[0], float(tl.base))
    minimum: FloatArray = np.where(settled, count, np.inf).min(axis=1).astype(np.float64)
    return minimum


# --------------------------------------------------------------------------- Poisson draws


_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def normal_ppf(p: FloatArray) -> FloatArray:
    """Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9)."""
    p = np.clip(p, 1e-300, 1 - 1e-16)
    out = np.empty_like(p)
    low, high = p < 0.02425, p > 1 - 0.02425
    mid = ~(low | high)
    q = p[mid] - 0.5
    r = q * q
    num = ((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]
    den = ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1
    out[mid] = q * num / den
    for sel, sign, prob in ((low, 1.0, p[low]), (high, -1.0, 1 - p[high])):
        qq = np.sqrt(-2 * np.log(prob))
        num = ((((_C[0] * qq + _C[1]) * qq + _C[2]) * qq + _C[3]) * qq + _C[4]) * qq + _C[5]
        den = (((_D[0] * qq + _D[1]) * qq + _D[2]) * qq + _D[3]) * qq + 1
        out[sel] = sign * num / den
    return out


def poisson_from_uniform(u: FloatArray, lam: FloatArray) -> IntArray:
    """Inverse-CDF Poisson draws: exact up to a mean of 200, Cornish-Fisher above.

    Non-decreasing in ``lam`` for a fixed ``u`` (within each regime), which is what makes common
    random numbers work across sweep points.  A mean of exactly 0 always gives 0.
    """
    out = np.zeros(lam.shape, dtype=np.int64)
    small = lam <= _POISSON_EXACT_MAX
    if small.any():
        ls, us = lam[small], u[small]
        prob = np.exp(-ls)
        cdf = prob.copy()
        k = np.zeros(ls.shape, dtype=np.int64)
        active = us > cdf
        top = math.ceil(_POISSON_EXACT_MAX + 15 * math.sqrt(_POISSON_EXACT_MAX) + 30)
        step = 0
        while active.any() and step < top:
            step += 1
            prob = prob * ls / step
            cdf = cdf + prob
            k[active] = step
            active &= us > cdf
        out[small] = k
    large = ~small
    if large.any():
        ll = lam[large]
        z = normal_ppf(u[large])
        value = ll + np.sqrt(ll) * z + (z * z - 1) / 6 - 0.5
        out[large] = np.maximum(0, np.ceil(value)).astype(np.int64)
    return out


# --------------------------------------------------------------------------- entry point


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
