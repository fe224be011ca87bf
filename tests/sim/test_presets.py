"""Golden tests: each LB preset, run on a publicly measured case, lands within a stated tolerance.

Each case is written as the source describes it; where the source is silent the assumption is
named (and documented in docs/simulation.md "Fits").  These tests fail on the presets before the
2026-12 refit (numbers in the docstrings).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from negsync.sim.lifecycle import Streams, build_timeline
from negsync.sim.loader import load_study
from negsync.sim.scenario import Scenario
from negsync.sim.vectorized import simulate


def _scenario(raw: dict[str, Any]) -> Scenario:
    return load_study(raw).base


def gke_769_case(*, max_surge: int = 3, max_unavailable: int = 2, runs: int = 2000) -> Scenario:
    """ingress-gce #769: an 11-pod rollout at 100 rps, minReadySeconds 180, grace 180, no preStop.

    Assumed (not stated in the issue): the Deployment's default strategy (25 % / 25 % of 11 pods:
    surge 3, unavailable 2), no readiness gate (2019: minReadySeconds was the documented
    mitigation), an app that stops accepting at SIGTERM, startup 5-15 s.
    """
    return _scenario({
        "scenario": "rolling-update", "runs": runs, "seed": 1,
        "traffic": {"rps": 100},
        "workload": {"replicas": 11, "max_surge": max_surge, "max_unavailable": max_unavailable,
                     "startup": {"dist": "uniform", "min": 5, "max": 15}, "min_ready_seconds": 180},
        "lb": {"preset": "gcp-neg"},
        "controller": {"readiness_gate": False},
        "drain": {"pre_stop_sleep": 0, "termination_grace_period": 180},
    })


GKE_769_OBSERVED = 96
GKE_769_TOLERANCE = 0.25  # relative, on the mean over runs


def test_gke_preset_matches_ingress_gce_769() -> None:
    """Before the refit: 1,073 (11x too many).  After: ~96."""
    result = simulate(gke_769_case())
    mean = float(result.failed.mean())
    assert abs(mean - GKE_769_OBSERVED) <= GKE_769_TOLERANCE * GKE_769_OBSERVED, mean
    # the fit rests on GFE's retry: most first attempts are absorbed, and counted apart
    assert result.absorbed is not None and float(result.absorbed.mean()) > mean


def alb_case(sleep: float, *, runs: int = 1000) -> Scenario:
    """LBC #1064: rolling update behind an ALB (IP targets, readiness gate), grace 60 s.

    Assumed: 20 replicas at 1000 rps (the shipped aws-alb scenario; #1064 used siege, load not
    stated — a higher rate only makes zero errors harder), surge 1, startup 5-15 s.
    """
    return _scenario({
        "scenario": "rolling-update", "runs": runs, "seed": 1,
        "traffic": {"rps": 1000},
        "workload": {"replicas": 20, "max_surge": 1, "max_unavailable": 0,
                     "startup": {"dist": "uniform", "min": 5, "max": 15}},
        "lb": {"preset": "aws-alb"},
        "drain": {"pre_stop_sleep": sleep, "termination_grace_period": max(60.0, sleep + 35)},
    })


def _p_any(sleep: float) -> float:
    return float((simulate(alb_case(sleep)).failed > 0).mean())


def test_alb_preset_matches_lbc_1064_and_the_public_zero_error_range() -> None:
    """Before the refit: P(any failure) at 25 s = 7.7 %, first zero-error value 39 s."""
    assert _p_any(5) >= 0.5  # "I had this as 5s previously and it wasn't enough"
    assert _p_any(25) <= 0.02  # 25 s + grace 60 s: "100% availability"
    # smallest whole-second preStop with P(any failure) <= 1 %: within 15-60 s (#1064, #2106);
    # P(any) does not grow with the sleep (common random numbers), so bisect
    low, high = 0, 60
    assert _p_any(high) <= 0.01
    while high - low > 1:
        mid = (low + high) // 2
        if _p_any(mid) <= 0.01:
            high = mid
        else:
            low = mid
    assert 15 <= high <= 60, high


def _nlb_scale_down(**drain: float) -> Scenario:
    return _scenario({
        "scenario": "scale-down", "runs": 4000, "seed": 3,
        "traffic": {"rps": 100},
        "workload": {"replicas": 4, "remove": 1},
        "lb": {"preset": "aws-nlb"},
        "drain": {"termination_grace_period": 400, **drain},
    })


def _routed_until(s: Scenario) -> np.ndarray:
    tl = build_timeline(s, s.runs, Streams(s.seed))
    return tl.b[:, 0]


def test_nlb_preset_keeps_routing_two_minutes_after_deregistration() -> None:
    """#2366 / #3270 / containers-roadmap #470 (2022-2023): ~2 min.  Before: median 151 s."""
    # the app keeps passing health checks (long preStop): only deregistration removes it
    b = _routed_until(_nlb_scale_down(pre_stop_sleep=300))
    assert 115 <= float(np.median(b)) <= 135, np.median(b)
    assert float(b.min()) >= 115


def test_nlb_preset_stops_new_connections_30_to_40_s_after_unhealthy() -> None:
    """containers-roadmap #470 (2023-08): 30-40 s after the target is marked unhealthy.  Before: 0 s."""
    s = _nlb_scale_down(pre_stop_sleep=0, health_check_drain=300)
    hc = s.lb.health_check
    assert hc is not None
    # marked unhealthy at the unhealthy_threshold-th failing check (+ the hanging check's timeout)
    marked = (0.5 * hc.interval) + (hc.unhealthy_threshold - 1) * hc.interval + hc.timeout
    lag = float(np.median(_routed_until(s))) - marked
    assert 30 <= lag <= 41, lag  # 1 s for the sampled median of the check phase
