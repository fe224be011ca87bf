"""Pod lifecycles as membership instants: every changing pod's ``a``, ``b``, ``e``, ``k``, all runs at once.

For every pod whose LB membership changes, four instants (arrays shaped ``(runs, pods)``):

``a``  the LB starts routing new requests to it (``-BIG`` for pods present at t=0),
``b``  the LB stops routing new requests to it (detach propagated, or health checks failed),
``e``  the pod stops accepting new requests (SIGTERM after preStop, or SIGKILL),
``k``  its connections are cut (SIGKILL at the grace period, or the LB's deregistration delay
       running out after the detach), killing requests still in flight.

Random inputs come from named, independent streams (:class:`Streams`) so that changing one
parameter never shifts the random numbers another quantity sees.  A health check's phase is
uniform, so the wait from an instant to the next check is ``U * interval`` with ``U`` uniform,
independent of the instant; it is drawn directly.  :mod:`negsync.sim.failures` turns a
:class:`Timeline` into failed-request means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from negsync.core.latency import Distribution
from negsync.sim.scenario import Scenario

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


@dataclass(frozen=True, slots=True)
class _Leaving:
    """Instants of pods whose termination starts at given times, each (runs, m)."""

    b: FloatArray
    e: FloatArray
    k: FloatArray
    exit: FloatArray  # the process exits (only used for durations)


def _removed_pods(s: Scenario, streams: Streams, start: FloatArray) -> _Leaving:
    """The instants of pods whose termination starts at ``start`` (runs, m)."""
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
    return _Leaving(b=b, e=e, k=k, exit=exit_)


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
        old = _removed_pods(s, streams, deleted)
        a_new = created + routed_lag
        removed, base, duration = n, 0, events[:, -1]
    else:
        m = w.remove if s.kind == "scale-down" else w.pods_per_node
        old = _removed_pods(s, streams, np.zeros((runs, m)))
        duration = np.maximum(old.b, old.exit).max(axis=1)
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
    for changed in (old.b, old.e, a_new):
        if changed.shape[1]:
            horizon = np.maximum(horizon, changed.max(axis=1))
    return Timeline(
        a=np.concatenate([np.full(old.b.shape, -BIG), a_new], axis=1),
        b=np.concatenate([old.b, forever], axis=1),
        e=np.concatenate([old.e, forever], axis=1),
        k=np.concatenate([old.k, forever], axis=1),
        removed=removed,
        base=base,
        duration=duration,
        zone=zone,
        base_by_zone=base_by_zone,
        horizon=horizon,
        exit=old.exit,
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
