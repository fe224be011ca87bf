"""Properties: failed requests never grow with the preStop sleep; Poisson and stop-loss helpers."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from negsync.core.latency import LogNormal
from negsync.sim.failures import stop_loss
from negsync.sim.loader import load_path, load_study
from negsync.sim.poisson import normal_ppf, poisson_from_uniform
from negsync.sim.vectorized import simulate


def _scenario(kind: str, sleep: float, health: bool) -> Any:
    raw = {
        "scenario": kind, "runs": 300, "seed": 2,
        "traffic": {"rps": 400},
        "workload": {"replicas": 5, "remove": 2, "pods_per_node": 2,
                     "startup": {"dist": "uniform", "min": 1, "max": 5}},
        "lb": {"preset": "gcp-neg", "deregistration_delay": 300,
               **({} if health else {"health_check": None})},
        "drain": {"pre_stop_sleep": sleep, "termination_grace_period": 600},
    }
    return load_study(raw).base


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(["rolling-update", "scale-down", "node-drain"]),
    s1=st.floats(0, 120), s2=st.floats(0, 120),
)
def test_failed_requests_do_not_grow_with_pre_stop_sleep(kind: str, s1: float, s2: float) -> None:
    low, high = sorted((s1, s2))
    a, b = simulate(_scenario(kind, low, False)), simulate(_scenario(kind, high, False))
    # per run, with common random numbers: the Poisson mean never grows...
    total_a = sum(a.expected.values())
    total_b = sum(b.expected.values())
    assert np.all(total_b <= total_a + 1e-6)
    # ...so neither does the count drawn from it (inverse CDF; +1 where a cause crosses the
    # exact/approximate boundary at a mean of 200)
    assert np.all(b.failed <= a.failed + 1)
    assert b.failed.mean() <= a.failed.mean()


def test_default_sweep_is_monotone_with_health_checks() -> None:
    study = load_path(None, runs=300)
    means = [simulate(p.scenario).failed.mean() for p in study.points]
    assert all(later <= earlier for earlier, later in itertools.pairwise(means)), means


def test_poisson_from_uniform_has_poisson_moments_and_is_monotone() -> None:
    rng = np.random.default_rng(0)
    u = rng.random(200_000)
    for lam in (0.0, 0.3, 7.0, 150.0, 199.0, 201.0, 5000.0):
        k = poisson_from_uniform(u, np.full(u.shape, lam))
        assert abs(k.mean() - lam) <= 5 * np.sqrt(max(lam, 1e-9) / u.size) + 1e-9
        assert abs(k.var() - lam) <= 0.05 * lam + 1e-9
    lams = np.linspace(0, 400, 81)
    counts = np.array([poisson_from_uniform(u[:2000], np.full(2000, x)) for x in lams])
    assert np.all(np.diff(counts, axis=0) >= -1)


def test_stop_loss_and_normal_ppf() -> None:
    dist = LogNormal(0.05, 0.5)
    sample = dist.sample(np.random.default_rng(1), 400_000)
    for x in (0.0, 0.1, 0.5, 2.0):
        assert stop_loss(dist, np.array([x]))[0] == np_approx(np.maximum(sample - x, 0).mean())
    for p in (1e-6, 0.01, 0.3, 0.5, 0.9, 0.999):
        assert abs(normal_ppf(np.array([p]))[0] - statistics.NormalDist().inv_cdf(p)) < 1e-7


def np_approx(value: float) -> Any:
    import pytest

    return pytest.approx(value, rel=0.03, abs=1e-4)


def _with_mechanisms(kind: str, sleep: float) -> Any:
    raw = {
        "scenario": kind, "runs": 200, "seed": 4,
        "traffic": {"rps": 300, "retryable_share": 0.7, "client_retry_share": 0.4,
                    "connection_lifetime": {"dist": "exponential", "mean": 8}},
        "workload": {"replicas": 6, "remove": 2, "pods_per_node": 2, "zones": 3,
                     "startup": {"dist": "uniform", "min": 1, "max": 5}},
        "lb": {"preset": "aws-nlb", "retries": 1, "attach_delay": {"dist": "uniform", "min": 5, "max": 20},
               "detach_delay": {"dist": "uniform", "min": 10, "max": 30}},
        "drain": {"pre_stop_sleep": sleep, "termination_grace_period": 600, "health_check_drain": 5},
    }
    return load_study(raw).base


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["rolling-update", "scale-down", "node-drain"]),
    s1=st.floats(0, 90), s2=st.floats(0, 90),
)
def test_mechanisms_keep_failures_non_increasing_in_the_pre_stop_sleep(kind: str, s1: float, s2: float) -> None:
    """Retries, zones (cross-zone off), connection routing and the health drain all on."""
    low, high = sorted((s1, s2))
    a, b = simulate(_with_mechanisms(kind, low)), simulate(_with_mechanisms(kind, high))
    total_a, total_b = sum(a.expected.values()), sum(b.expected.values())
    # On the mean, not per run: with the health-based drain the LB stops at the first failing health
    # check after SIGTERM, a discrete instant.  A 1 s longer sleep can push SIGTERM past a check and
    # move that instant a whole interval later in one run (seen: sleep 13 vs 14 s), while on average
    # a longer sleep never hurts.
    assert total_b.mean() <= total_a.mean() + 1e-6
