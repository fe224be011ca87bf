"""Inverse-CDF Poisson draws (negsync.sim.poisson): Poisson moments, monotone in the mean, an exact normal quantile."""

from __future__ import annotations

import statistics

import numpy as np

from negsync.sim.poisson import normal_ppf, poisson_from_uniform


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


def test_normal_ppf_matches_the_standard_library() -> None:
    for p in (1e-6, 0.01, 0.3, 0.5, 0.9, 0.999):
        assert abs(normal_ppf(np.array([p]))[0] - statistics.NormalDist().inv_cdf(p)) < 1e-7
