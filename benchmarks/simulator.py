"""Benchmark: the vectorized engine against the per-request SimPy reference model.

Runs the same scenario for the same number of runs through both, takes the median wall time of
a few repetitions, and prints a markdown table: engine seconds, reference seconds, speed ratio,
mean failed requests from each (with the reference's standard error) and whether they agree
within 4 standard errors.  Also times the default scenario's whole sweep (what ``make simulate``
does).  Figures are reported, not asserted.

    python benchmarks/simulator.py [--runs 3] [--reps 3] [--ref-reps 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from negsync.sim.engine import simulate  # noqa: E402
from negsync.sim.scenario import CAUSES, Scenario, load_path, load_study  # noqa: E402
from negsync.sim.sweep import run_study  # noqa: E402
from tests.sim.reference import mean_by_cause, run_reference  # noqa: E402
from tests.sim.test_reference_agreement import BASE  # noqa: E402


def _median_time(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _row(name: str, s: Scenario, runs: int, reps: int, ref_reps: int) -> str:
    engine_s, _ = _median_time(lambda: simulate(s, runs=runs), reps)
    ref_s, ref = _median_time(lambda: run_reference(s, runs=runs, seed=s.seed + 1), ref_reps)
    stats = mean_by_cause(ref)
    ref_mean = sum(m for m, _ in stats.values())
    ref_se = math.sqrt(sum(se**2 for _, se in stats.values()))
    # agreement is judged against the engine's mean over many runs (its own noise removed)
    precise = simulate(s, runs=20_000)
    eng_mean = float(sum(precise.expected[c].mean() for c in CAUSES))
    agree = "yes" if abs(ref_mean - eng_mean) <= 4 * ref_se + 0.5 else "NO"
    return (f"| {name} | {runs} | {engine_s:.4f} | {ref_s:.2f} | {ref_s / engine_s:,.0f}x | "
            f"{eng_mean:.1f} | {ref_mean:.1f} ± {ref_se:.1f} | {agree} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per model (equal for both)")
    parser.add_argument("--small-runs", type=int, default=200, help="runs for the small scenarios")
    parser.add_argument("--reps", type=int, default=5, help="engine repetitions (median)")
    parser.add_argument("--ref-reps", type=int, default=1, help="reference repetitions (median)")
    args = parser.parse_args()

    default = load_path(None)
    print("| scenario | runs | engine s | reference s | ratio | mean failed (engine, 20k runs) "
          "| mean failed (reference ± se) | agree (4 se) |")
    print("|---|---|---|---|---|---|---|---|")
    print(_row("default (rolling-update, gcp-neg, preStop 15 s)", default.base, args.runs, args.reps,
               args.ref_reps))
    for kind in ("rolling-update", "scale-down", "node-drain"):
        small = load_study({**BASE, "scenario": kind}).base
        print(_row(f"small {kind} (tests)", small, args.small_runs, args.reps, args.ref_reps))
    sweep_s, _ = _median_time(lambda: run_study(default), 3)
    print()
    print(f"default scenario, whole sweep ({len(default.points)} points x {default.base.runs} runs): "
          f"{sweep_s:.2f} s (median of 3, engine only, excluding interpreter start-up)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
