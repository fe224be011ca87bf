"""Smoke test of the call accounting in ``benchmarks/calls.py`` (issue 18): the real CLI against the
fake Compute API and moto, at a toy size.  It fails if a churn round reads more than the stated
share (10 % of the write lower bound) or spends more calls than the goal allows — the figures in
docs/performance.md come from the full-size run; no timing is asserted here.
"""

from __future__ import annotations

import pytest

from benchmarks import calls

pytestmark = pytest.mark.timeout(120)


def _churn(result: dict) -> list[dict]:
    churn = [p for p in result["phases"] if p["phase"] == "churn"]
    assert churn and all(p["bound"] > 0 for p in churn)
    return churn


def test_gcp_churn_spends_the_quota_on_writes() -> None:
    result = calls.measure("gcp", {"services": 2, "endpoints": 12, "replace": 3, "rounds": 1, "rate": 50.0,
                                   "op_delay": 0.02}, timeout=60)
    cold = result["phases"][0]
    assert cold["writes"] == cold["bound"] == 6  # 2 bindings × 3 zones, one attach each
    for phase in _churn(result):
        assert phase["writes"] == phase["bound"] == 12, phase["calls"]  # a detach and an attach per NEG
        assert phase["waits"] <= phase["writes"] + 1, phase["calls"]
        assert phase["reads"] <= 0.10 * phase["bound"], phase["calls"]
        assert phase["total"] <= 2.2 * phase["bound"], phase["calls"]


def test_aws_churn_spends_the_quota_on_writes() -> None:
    result = calls.measure("aws", {"services": 3, "endpoints": 10, "replace": 2, "rounds": 1}, timeout=60)
    for phase in _churn(result):
        assert phase["writes"] == phase["bound"] == 6, phase["calls"]
        assert phase["reads"] <= 0.10 * phase["bound"], phase["calls"]
        assert phase["total"] <= 1.2 * phase["bound"], phase["calls"]


def test_write_bound_counts_each_direction_per_target() -> None:
    before = {("a", "z"): {1, 2, 3}, ("b", "z"): {4}}
    after = {("a", "z"): {1, 5}, ("b", "z"): {4}, ("c", "z"): set(range(10, 13))}
    assert calls.write_bound(before, after, limit=2) == 1 + 1 + 2  # a: +1 -2(1 call); c: +3 (2 calls)
