"""Smoke tests of the soak and scale benchmarks at toy sizes: they run end to end, the controller
keeps up and converges, and the rows are produced.  No figure is asserted (docs/performance.md
has the measured ones, from full-size runs)."""

from __future__ import annotations

import pytest

from benchmarks import scale, soak, table

pytestmark = pytest.mark.timeout(120)


def test_soak_runs_the_cli_through_the_changes_and_converges() -> None:
    result = soak.measure({**soak.QUICK, "services": 6, "endpoints": 10, "replace": 2, "changes": 1_200,
                           "rate": 200.0, "sample": 0.2, "max_seconds": 30.0})
    assert result["changes"] >= 1_200
    assert result["converged"] and result["exit_code"] == 0
    assert result["after_warmup"]["n"] >= 2 and result["after_warmup"]["min"] > 0


def test_scale_rows_at_a_toy_size() -> None:
    rows = scale.run(repeat=1, services=40, endpoints=5, rounds=1, replace=1, rate=200.0, duration=0.5)
    text = table("t", rows)
    assert "| every target converged | yes |" in text
    assert sum(1 for r in rows if "all detached and converged: yes" in r.figure) == 2
