"""Failed-request means (negsync.sim.failures): each 502 mechanism against a closed form (fixed delays,
one removed pod, no health checks), and the stop-loss transform they are integrated with.

The engine's conditional Poisson mean must equal the closed form to rounding; the sampled counts
must agree within 5 standard errors.  Mechanisms without a closed form in a full rollout are
checked against the SimPy reference in test_reference_agreement.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from negsync.core.latency import LogNormal
from negsync.sim.failures import keepalive_race_probability, stop_loss
from negsync.sim.loader import load_study
from negsync.sim.scenario import Scenario
from negsync.sim.vectorized import simulate

RUNS = 4000


def _scale_down(*, kind: str = "scale-down", replicas: int = 6, rps: float = 600, sleep: float = 0,
                detach: float = 10, reaction: float = 1, grace: float = 120, lb: dict[str, Any] | None = None,
                workload: dict[str, Any] | None = None, traffic: dict[str, Any] | None = None,
                drain: dict[str, Any] | None = None) -> Scenario:
    raw = {
        "scenario": kind, "runs": RUNS, "seed": 7,
        "traffic": {"rps": rps, **(traffic or {})},
        "workload": {"replicas": replicas, "remove": 1, "pods_per_node": 1, **(workload or {})},
        "lb": {"attach_delay": 5, "detach_delay": detach, "health_check": None, "deregistration_delay": 30,
               **(lb or {})},
        "controller": {"reaction": reaction},
        "drain": {"pre_stop_sleep": sleep, "termination_grace_period": grace, **(drain or {})},
    }
    return load_study(raw).base


def _agrees(result: Any, cause: str, expected: float) -> None:
    assert result.expected[cause] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    tolerance = 5 * math.sqrt(max(expected, 1e-9) / RUNS) + 1e-9
    assert abs(result.by_cause[cause].mean() - expected) <= tolerance


# ---------------------------------------------------------------- keep-alive races


def test_keepalive_race_probability_matches_a_simulated_connection() -> None:
    """exp(-l T)(1 - exp(-l w)) against a direct simulation of one connection's request gaps."""
    lam, timeout, window = 0.2, 5.0, 0.5
    gaps = np.random.default_rng(4).exponential(1 / lam, 2_000_000)
    observed = float(np.mean((gaps >= timeout) & (gaps < timeout + window)))
    assert observed == pytest.approx(keepalive_race_probability(lam, timeout, window), rel=0.02)


def test_keepalive_race_only_when_the_app_closes_idle_connections_first() -> None:
    """ALB docs: an app idle timeout shorter than the LB's (60 s) gives 502s; longer gives none."""
    rps, replicas, connections = 600, 6, 50
    race = _scale_down(rps=rps, replicas=replicas, workload={"keepalive_timeout": 5},
                       lb={"idle_timeout": 60, "connections_per_endpoint": connections,
                           "keepalive_race_window": 0.002})
    result = simulate(race)
    p = keepalive_race_probability(rps / (replicas * connections), 5, 0.002)
    horizon = 11.0  # scale-down: out of rotation at reaction 1 + detach 10, after exit at 0.5
    _agrees(result, "keepalive_race", rps * p * horizon)
    assert result.expected["keepalive_race"].min() > 0
    safe = _scale_down(rps=rps, replicas=replicas, workload={"keepalive_timeout": 75},
                       lb={"idle_timeout": 60, "connections_per_endpoint": connections})
    assert simulate(safe).expected["keepalive_race"].max() == 0


# ---------------------------------------------------------------- connection routing (NLB)


@pytest.mark.parametrize("termination", [False, True])
def test_pinned_connections_fail_after_the_pod_stops(termination: bool) -> None:
    """Fixed lifetime L: a connection open at b is still open x later with chance max(0, 1 - x/L).

    The pod stops accepting at e = 20 (preStop), the LB stops routing new connections at
    b = 11; requests on its connections fail from e until they close: cut at k (SIGKILL at the
    grace period, or the end of the deregistration delay when connection termination is on), or
    when the process exits (e + p99 request duration = 50 s).
    """
    rps, n, life, grace = 600.0, 6, 30.0, 60.0
    s = _scale_down(rps=rps, replicas=n, sleep=20, grace=grace,
                    lb={"routing": "connections", "connection_termination": termination,
                        "deregistration_delay": 15},
                    traffic={"connection_lifetime": life,
                             "request_duration": {"dist": "lognormal", "p50": 1, "p99": 30}})
    b, e = 11.0, 20.0
    k = min(b + 15 if termination else grace, e + 30)

    def still_open_integral(x1: float, x2: float) -> float:  # integral of max(0, 1 - x/L)
        def f(x: float) -> float:
            x = min(x, life)
            return x - x * x / (2 * life)
        return f(x2) - f(x1)

    expected = rps / n * still_open_integral(e - b, k - b)
    _agrees(simulate(s), "routed_after_stop", expected)


def test_per_request_routing_ignores_connection_lifetime() -> None:
    s = _scale_down(sleep=20, traffic={"connection_lifetime": 30})
    assert simulate(s).expected["routed_after_stop"].max() == 0


# ---------------------------------------------------------------- health-based drain


def test_health_based_drain_stops_routing_after_detection_and_propagation() -> None:
    """SIGTERM at 0: health checks fail from 0, the app serves until 30.

    The LB stops at U*I + (thr-1)*I + timeout + propagation = 10U + 20 + 10 + 40 (detach is
    slower, 200 s), so requests fail over (30, 70 + 10U): mean rps/n * 45.
    """
    rps, n = 600.0, 6
    s = _scale_down(rps=rps, replicas=n, sleep=0, detach=200, grace=300,
                    lb={"health_check": {"interval": 10, "timeout": 10, "healthy_threshold": 3,
                                         "unhealthy_threshold": 3},
                        "unhealthy_propagation": 40},
                    drain={"health_check_drain": 30})
    result = simulate(s)
    assert float(result.expected["routed_after_stop"].mean()) == pytest.approx(rps / n * 45, rel=0.02)
    # each run's mean is within the uniform phase's range
    assert result.expected["routed_after_stop"].min() >= rps / n * 40 - 1e-6
    assert result.expected["routed_after_stop"].max() <= rps / n * 50 + 1e-6


def test_health_based_drain_beats_the_same_sleep_in_a_pre_stop_hook() -> None:
    """Failing the health check at SIGTERM starts detection 30 s earlier than a 30 s preStop."""
    hc = {"interval": 10, "timeout": 10, "healthy_threshold": 3, "unhealthy_threshold": 3}
    common = {"detach": 200, "grace": 300}
    drained = simulate(_scale_down(**common, lb={"health_check": hc}, drain={"health_check_drain": 30}))
    slept = simulate(_scale_down(**common, sleep=30, lb={"health_check": hc}))
    assert drained.failed.mean() < slept.failed.mean()


# ---------------------------------------------------------------- zones


@pytest.mark.parametrize("cross_zone", [True, False])
def test_zones_with_cross_zone_off_concentrate_a_zone_share(cross_zone: bool) -> None:
    """6 pods over 3 zones; pod 0 (zone 0, which keeps one other pod) leaves for 11 s."""
    rps, n = 600.0, 6
    s = _scale_down(rps=rps, replicas=n, workload={"zones": 3}, lb={"cross_zone": cross_zone})
    per_pod = rps / n if cross_zone else rps / 3 / 2
    _agrees(simulate(s), "routed_after_stop", per_pod * 11)


def test_an_emptied_zone_has_no_capacity_with_cross_zone_off() -> None:
    """Node drain of the only pod in zone 0 (3 pods, 3 zones): zone 0 has no endpoint from
    b = reaction 1 + detach 10 until its replacement is routed at reaction 1 + attach 35."""
    rps = 300.0
    s = _scale_down(kind="node-drain", rps=rps, replicas=3, workload={"zones": 3},
                    lb={"cross_zone": False, "attach_delay": 35})
    _agrees(simulate(s), "no_capacity", rps / 3 * (1 + 35 - 11))
    spread = _scale_down(kind="node-drain", rps=rps, replicas=3, workload={"zones": 3},
                         lb={"cross_zone": True, "attach_delay": 35})
    assert simulate(spread).expected["no_capacity"].max() == 0


def test_a_zone_emptied_for_good_counts_until_the_event_ends() -> None:
    """Scale-down of zone 0's only pod: no endpoint there from b = 11 to the end of the event,
    here the pod's exit after a 30 s preStop (+ 0.5 s of in-flight requests)."""
    rps = 300.0
    s = _scale_down(rps=rps, replicas=3, sleep=30, workload={"zones": 3}, lb={"cross_zone": False})
    _agrees(simulate(s), "no_capacity", rps / 3 * (30 + 0.5 - 11))


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize(("retries", "retryable", "client"), [(0, 1.0, 0.0), (1, 1.0, 0.0), (2, 0.5, 0.0),
                                                              (0, 1.0, 0.6), (1, 0.8, 0.5)])
def test_retries_absorb_refused_requests(retries: int, retryable: float, client: float) -> None:
    """One of n stopped for 11 s: q = 1/n; an LB retry fails with chance q, a client retry too."""
    rps, n = 600.0, 6
    s = _scale_down(rps=rps, replicas=n, lb={"retries": retries},
                    traffic={"retryable_share": retryable, "client_retry_share": client})
    q = 1 / n
    first = rps * q * 11
    after_lb = first * (retryable * q**retries + 1 - retryable)
    final = after_lb * (1 - client * (1 - q))
    result = simulate(s)
    _agrees(result, "routed_after_stop", final)
    assert result.expected_absorbed is not None and result.absorbed_by is not None
    assert result.expected_absorbed["lb_retry"] == pytest.approx(first - after_lb, rel=1e-6, abs=1e-6)
    assert result.expected_absorbed["client_retry"] == pytest.approx(after_lb - final, rel=1e-6, abs=1e-6)
    absorbed = first - final
    assert result.absorbed is not None
    assert abs(result.absorbed.mean() - absorbed) <= 5 * math.sqrt(max(absorbed, 1e-9) / RUNS) + 1e-9


# ---------------------------------------------------------------- per-pod capacity


def test_remaining_pods_overload_until_the_replacement_arrives() -> None:
    """Node drain, 4 pods of 100 rps capacity at 360 rps: over [b, a) = [11, 36) three pods get
    120 rps each, 20 rps too many: 3 * 20 * 25 = 1500 overloaded requests."""
    s = _scale_down(kind="node-drain", rps=360, replicas=4, workload={"pod_capacity": 100},
                    lb={"attach_delay": 35})
    _agrees(simulate(s), "overload", 3 * 20 * 25)
    roomy = _scale_down(kind="node-drain", rps=360, replicas=4, workload={"pod_capacity": 120},
                        lb={"attach_delay": 35})
    assert simulate(roomy).expected["overload"].max() == 0


def test_capacity_and_defaults_leave_existing_causes_alone() -> None:
    base = simulate(_scale_down(sleep=4))
    roomy = simulate(_scale_down(sleep=4, workload={"pod_capacity": 10_000}))
    for cause in ("routed_after_stop", "killed_in_flight", "no_capacity"):
        assert np.allclose(base.expected[cause], roomy.expected[cause])


# ---------------------------------------------------------------- the stop-loss transform


def test_stop_loss_is_the_expected_overrun() -> None:
    """G(x) = E[(D - x)+], against a large sample of D."""
    dist = LogNormal(0.05, 0.5)
    sample = dist.sample(np.random.default_rng(1), 400_000)
    for x in (0.0, 0.1, 0.5, 2.0):
        expected = np.maximum(sample - x, 0).mean()
        assert stop_loss(dist, np.array([x]))[0] == pytest.approx(expected, rel=0.03, abs=1e-4)
