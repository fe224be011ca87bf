"""A per-request SimPy reference model of the simulator, for validation only.

It implements the lifecycle of docs/simulation.md the obvious way, independently of
:mod:`negsync.sim.vectorized`: every pod, controller action, health checker and request is a SimPy
process; every arrival picks an endpoint uniformly among those in rotation at that instant.  It
is slow by design (one process per request) and is used by the agreement tests (small runs) and
by ``benchmarks/simulator.py`` (speed ratio).  Only the parsed :class:`Scenario` is shared with
the engine.

Lifecycle events start at ``t = W`` (a warm-up long enough for requests already in flight at the
start to be represented); reported times are relative to ``W``.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from negsync.sim.scenario import CAUSES, RETRY_PATHS, Scenario

CONNECTIONS = 64  # client connections of the connection-routing model


class _Buffered:
    """Draws from a distribution in blocks (values are still used one per request)."""

    def __init__(self, sampler: Any, rng: np.random.Generator, block: int = 8192) -> None:
        self._sampler, self._rng, self._block = sampler, rng, block
        self._values: list[float] = []

    def __call__(self) -> float:
        if not self._values:
            self._values = list(np.asarray(self._sampler(self._rng, self._block), dtype=float))[::-1]
        return self._values.pop()


@dataclass(eq=False)
class Pod:
    new: bool
    accepting: bool = False
    in_rotation: bool = False
    registered: bool = False
    cut_at: float = math.inf
    left_rotation_at: float = math.inf
    exit_at: float = 0.0
    exiting_at: float = math.inf  # the process exits (its connections close) at this instant
    passes: int = 0
    fails: int = 0
    health_ok: bool = True  # False once the app fails its health check on purpose (health drain)
    zone: int = 0


@dataclass
class RunResult:
    counts: dict[str, int]
    duration: float
    min_capacity: float
    absorbed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETRY_PATHS, 0))


@dataclass(eq=False)
class _Run:
    s: Scenario
    rng: np.random.Generator
    env: simpy.Environment = field(default_factory=simpy.Environment)
    rotation: list[Pod] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    absorbed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETRY_PATHS, 0))
    created: int = 0
    pending: int = 0
    done_at: float = math.inf
    serving_min: float = math.inf
    warmup: float = 0.0

    def draw(self, dist: Any) -> float:
        return float(dist.sample(self.rng))

    # ---------------------------------------------------------------- capacity bookkeeping
    def serving_changed(self) -> None:
        if self.env.now >= self.warmup:
            serving = sum(1 for p in self.rotation if p.accepting)
            self.serving_min = min(self.serving_min, serving)

    def finish_one(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.done_at = self.env.now

    def enter_rotation(self, pod: Pod, available: simpy.Store | None) -> None:
        pod.in_rotation = True
        self.rotation.append(pod)
        self.finish_one()
        self.serving_changed()
        if available is not None and self.s.controller.readiness_gate:
            self.env.process(self._gate(pod, available))

    def leave_rotation(self, pod: Pod) -> None:
        if pod.in_rotation:
            pod.in_rotation = False
            pod.left_rotation_at = self.env.now
            self.rotation.remove(pod)
            self.finish_one()
            self.serving_changed()

    def _gate(self, pod: Pod, available: simpy.Store) -> Generator[Any, Any, None]:
        yield self.env.timeout(self.draw(self.s.controller.reaction))
        yield self.env.timeout(self.s.workload.min_ready_seconds)
        yield available.put(pod)

    def _ready(self, pod: Pod, available: simpy.Store) -> Generator[Any, Any, None]:
        yield self.env.timeout(self.s.workload.min_ready_seconds)  # minReadySeconds after Ready
        yield available.put(pod)

    # ---------------------------------------------------------------- pods
    def health_checker(self, pod: Pod, available: simpy.Store | None) -> Generator[Any, Any, None]:
        hc = self.s.lb.health_check
        assert hc is not None
        yield self.env.timeout(self.rng.uniform(0, hc.interval))
        while self.env.now < self.done_at:
            if pod.new and pod.in_rotation:
                return
            if not pod.new and not pod.in_rotation:
                return
            if pod.registered:
                if pod.accepting and pod.health_ok:
                    pod.fails, pod.passes = 0, pod.passes + 1
                    if pod.new and pod.passes >= hc.healthy_threshold:
                        self.enter_rotation(pod, available)
                        return
                else:
                    pod.passes, pod.fails = 0, pod.fails + 1
                    if pod.fails == hc.unhealthy_threshold:
                        self.env.process(self._fail_after_timeout(pod, hc.timeout))
            yield self.env.timeout(hc.interval)

    def _fail_after_timeout(self, pod: Pod, timeout: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(timeout)
        yield self.env.timeout(self.s.lb.unhealthy_propagation)
        self.leave_rotation(pod)

    def create(self, available: simpy.Store | None) -> Generator[Any, Any, None]:
        """A new pod: start, listen (Ready), get registered, get routed."""
        pod = Pod(new=True, zone=self.created % self.s.workload.zones)
        self.created += 1
        self.pods.append(pod)
        self.pending += 1  # until routed
        if self.s.lb.health_check is not None:
            self.env.process(self.health_checker(pod, available))
        yield self.env.timeout(self.draw(self.s.workload.startup))
        pod.accepting = True
        if available is not None and not self.s.controller.readiness_gate:
            self.env.process(self._ready(pod, available))
        yield self.env.timeout(self.draw(self.s.controller.reaction))
        yield self.env.timeout(self.draw(self.s.lb.attach_delay))
        pod.registered = True
        if self.s.lb.health_check is None:
            self.enter_rotation(pod, available)

    def terminate(self, pod: Pod) -> None:
        """Delete a pod: endpoint terminating + preStop now; controller detaches in parallel."""
        self.env.process(self._detach(pod))
        self.env.process(self._kubelet(pod))

    def _detach(self, pod: Pod) -> Generator[Any, Any, None]:
        yield self.env.timeout(self.draw(self.s.controller.reaction))
        yield self.env.timeout(self.draw(self.s.lb.detach_delay))
        self.leave_rotation(pod)
        yield self.env.timeout(self.s.lb.deregistration_delay)
        if self.s.lb.connection_termination:
            pod.cut_at = min(pod.cut_at, self.env.now)

    def _kubelet(self, pod: Pod) -> Generator[Any, Any, None]:
        start = self.env.now
        grace = self.s.drain.termination_grace_period
        if self.s.workload.shutdown == "on-sigterm":
            yield self.env.timeout(self.s.drain.pre_stop_sleep)
            pod.health_ok = False  # SIGTERM: fail the health check, keep serving a while
            serve = min(self.s.drain.health_check_drain, start + grace - self.env.now)
            if serve > 0:
                yield self.env.timeout(serve)
            pod.accepting = False
            self.serving_changed()
            drain = self.s.traffic.request_duration.quantile(0.99)
            pod.exit_at = pod.exiting_at = min(start + grace, self.env.now + drain)
            yield self.env.timeout(start + grace - self.env.now)
        else:
            yield self.env.timeout(grace)
            pod.accepting = pod.health_ok = False
            self.serving_changed()
            pod.exit_at = pod.exiting_at = self.env.now
        pod.cut_at = min(pod.cut_at, self.env.now)

    # ---------------------------------------------------------------- traffic
    def choose(self, pick: Any) -> Pod | None:
        """An endpoint for a new request or connection: the receiving LB node's zone, then uniform."""
        candidates = self.rotation
        zones = self.s.workload.zones
        if zones > 1 and not self.s.lb.cross_zone:
            zone = int(pick() * zones)
            candidates = [p for p in self.rotation if p.zone == zone]
        return candidates[int(pick() * len(candidates))] if candidates else None

    def connection(self) -> Generator[Any, Any, None]:
        """One client connection through an L4 LB: routed when opened, reopened at its lifetime's end.

        Requests on it (Poisson, ``rps / CONNECTIONS``) go to its pod whatever the LB does since;
        once the pod's connections are closed (LB cut, SIGKILL or process exit), the client
        reconnects through the LB at its next request.
        """
        pick = _Buffered(lambda rng, n: rng.random(n), self.rng, block=256)
        life = _Buffered(self.s.traffic.connection_lifetime.sample, self.rng, block=256)
        state: dict[str, Any] = {"pod": None}
        self.env.process(self._connection_requests(state, pick))
        while self.env.now < self.done_at:
            state["pod"] = self.choose(pick)
            yield self.env.timeout(life())

    def _connection_requests(self, state: dict[str, Any], pick: Any) -> Generator[Any, Any, None]:
        gap = _Buffered(lambda rng, n: rng.exponential(CONNECTIONS / self.s.traffic.rps, n), self.rng, block=256)
        length = _Buffered(self.s.traffic.request_duration.sample, self.rng, block=256)
        while self.env.now < self.done_at:
            yield self.env.timeout(gap())
            if self.env.now >= self.done_at:
                return
            pod = state["pod"]
            if pod is None or min(pod.cut_at, pod.exiting_at) <= self.env.now:
                pod = state["pod"] = self.choose(pick)
            if pod is None:
                self.counts["no_capacity"] += 1
            elif not pod.accepting:
                self.counts["routed_after_stop"] += 1  # an L4 LB retries nothing
            else:
                self.env.process(self.request(pod, length()))

    def arrivals(self) -> Generator[Any, Any, None]:
        gap = _Buffered(lambda rng, n: rng.exponential(1 / self.s.traffic.rps, n), self.rng)
        pick = _Buffered(lambda rng, n: rng.random(n), self.rng)
        length = _Buffered(self.s.traffic.request_duration.sample, self.rng)
        while self.env.now < self.done_at:
            yield self.env.timeout(gap())
            if self.env.now >= self.done_at:
                return
            if not self.rotation:
                self.counts["no_capacity"] += 1
                continue
            candidates = self.rotation
            zones = self.s.workload.zones
            if zones > 1 and not self.s.lb.cross_zone:  # the receiving LB node's zone only
                zone = int(pick() * zones)
                candidates = [p for p in self.rotation if p.zone == zone]
                if not candidates:
                    self.counts["no_capacity"] += 1
                    continue
            pod = candidates[int(pick() * len(candidates))]
            if pod.accepting:
                self.env.process(self.request(pod, length()))
                continue
            served = self.retry(candidates, pick, length)
            if served is None:
                self.counts["routed_after_stop"] += 1
            else:
                self.absorbed[served] += 1

    def retry(self, candidates: list[Pod], pick: Any, length: Any) -> str | None:
        """A refused request: LB retries if retryable, then maybe the client once; who saved it."""
        t = self.s.traffic
        if pick() < t.retryable_share:
            for _ in range(self.s.lb.retries):
                again = candidates[int(pick() * len(candidates))]
                if again.accepting:
                    self.env.process(self.request(again, length()))
                    return "lb_retry"
        if pick() < t.client_retry_share:
            again = candidates[int(pick() * len(candidates))]
            if again.accepting:
                self.env.process(self.request(again, length()))
                return "client_retry"
        return None

    def request(self, pod: Pod, duration: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(duration)
        if pod.cut_at <= self.env.now:
            self.counts["killed_in_flight"] += 1

    # ---------------------------------------------------------------- scenarios
    def start(self) -> Generator[Any, Any, float]:
        """Run the scenario's event from t = warmup; returns its duration."""
        s, w = self.s, self.s.workload
        n = w.replicas
        m_drained = w.pods_per_node if s.kind == "node-drain" else 0
        old = [Pod(new=False, accepting=True, in_rotation=True, registered=True,
                   zone=0 if i < m_drained else i % w.zones) for i in range(n)]
        self.rotation.extend(old)
        self.pods.extend(old)
        if s.lb.health_check is not None:
            for pod in old:
                self.env.process(self.health_checker(pod, None))
        yield self.env.timeout(self.warmup)
        self.serving_min = float(n)
        if s.kind == "rolling-update":
            available = simpy.Store(self.env)
            self.pending += n + 1  # old pods leaving rotation, and the rollout itself
            created = 0
            doomed = list(old)
            for _ in range(min(n, w.max_unavailable)):
                self.terminate(doomed.pop(0))
            for _ in range(min(n, w.max_surge + w.max_unavailable)):
                self.env.process(self.create(available))
                created += 1
            for _ in range(n):
                yield available.get()
                if doomed:
                    self.terminate(doomed.pop(0))
                if created < n:
                    self.env.process(self.create(available))
                    created += 1
            duration = self.env.now - self.warmup
            self.finish_one()
            return duration
        m = w.remove if s.kind == "scale-down" else w.pods_per_node
        victims = old[:m]
        self.pending += m + 1
        for pod in victims:
            self.terminate(pod)
        replacements: list[simpy.Event] = []
        if s.kind == "node-drain":
            done = simpy.Store(self.env)
            for _ in range(m):
                self.env.process(self.create(done))
            for _ in range(m):
                replacements.append(done.get())
            yield simpy.AllOf(self.env, replacements)
        ready_at = self.env.now
        self.finish_one()
        while any(p.in_rotation for p in victims):
            yield self.env.timeout(1.0)
        return max([ready_at - self.warmup]
                   + [max(p.left_rotation_at, p.exit_at) - self.warmup for p in victims])


def run_reference(s: Scenario, runs: int, seed: int) -> list[RunResult]:
    """``runs`` independent per-request runs of scenario ``s``."""
    results = []
    seeds = np.random.SeedSequence(seed).spawn(runs)
    warmup = max(1.0, 3 * s.traffic.request_duration.quantile(0.999),
                 3 * s.traffic.connection_lifetime.quantile(0.999))
    for child in seeds:
        run = _Run(s, np.random.default_rng(child), warmup=warmup)
        main = run.env.process(run.start())
        if s.lb.routing == "connections" and s.traffic.connection_lifetime.mean > 0:
            for _ in range(CONNECTIONS):
                run.env.process(run.connection())
        else:
            run.env.process(run.arrivals())
        run.env.run()
        results.append(RunResult(dict(run.counts), float(main.value), run.serving_min, dict(run.absorbed)))
    return results


def mean_by_cause(results: list[RunResult]) -> dict[str, tuple[float, float]]:
    """Per cause: (mean, standard error of the mean) over runs."""
    out = {}
    for cause in CAUSES:
        values = np.array([r.counts[cause] for r in results], dtype=float)
        se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.inf
        out[cause] = (float(values.mean()), se)
    return out


def mean_absorbed(results: list[RunResult]) -> dict[str, tuple[float, float]]:
    """Per retry path: (mean, standard error of the mean) of absorbed failures over runs."""
    out = {}
    for path in RETRY_PATHS:
        values = np.array([r.absorbed[path] for r in results], dtype=float)
        se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.inf
        out[path] = (float(values.mean()), se)
    return out
