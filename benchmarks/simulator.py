"""Benchmark 4 — simulator: the vectorized engine against the per-request SimPy reference model.

Method.  For each scenario, both models run the same scenario for the same number of runs: the
model (``negsync.sim.vectorized.simulate``) takes the median wall time of a few repetitions, the
reference (``tests/sim/reference.py``, one SimPy process per request) the median of
``ref_reps`` (default 1: it is slow).  The speed ratio is computed from the two medians.  Agreement
compares the reference's mean failed requests (with its standard error) against the engine's mean
over 20,000 runs (its own noise removed): they agree when within 4 standard errors (+0.5 request).
Also times the default scenario's whole decision (what ``make simulate`` does): the grid, the
refinement, the recommended pair's simulation and the bootstrap, in-process (engine and decision
only), and the command end to end (``python -m negsync simulate`` in a fresh interpreter: imports,
table and recommendation included; goal ≤ 10 s on 2 cores, issue 16).  The engine part runs
in-process: nothing here depends on RSS.

    python -m benchmarks --only simulator          (part of the suite)
    python benchmarks/simulator.py [--runs 3] [--reps 5] [--ref-reps 1]   (the table alone)
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import Row  # noqa: E402
from negsync.core.latency import Exponential  # noqa: E402
from negsync.sim.decision import decide  # noqa: E402
from negsync.sim.loader import load_path, load_study  # noqa: E402
from negsync.sim.scenario import CAUSES, Scenario  # noqa: E402
from negsync.sim.sweep import run_study  # noqa: E402
from negsync.sim.vectorized import simulate  # noqa: E402
from tests.sim.reference import mean_by_cause, run_reference  # noqa: E402
from tests.sim.test_reference_agreement import BASE  # noqa: E402


def _median_time(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def compare(s: Scenario, runs: int, reps: int, ref_reps: int, precise_runs: int = 20_000) -> dict[str, Any]:
    engine_s, _ = _median_time(lambda: simulate(s, runs=runs), reps)
    ref_s, ref = _median_time(lambda: run_reference(s, runs=runs, seed=s.seed + 1), ref_reps)
    stats = mean_by_cause(ref)
    ref_mean = sum(m for m, _ in stats.values())
    ref_se = math.sqrt(sum(se**2 for _, se in stats.values()))
    precise = simulate(s, runs=precise_runs)
    eng_mean = float(sum(precise.expected[c].mean() for c in CAUSES))
    return {"engine_s": engine_s, "ref_s": ref_s, "ratio": ref_s / engine_s, "eng_mean": eng_mean,
            "ref_mean": ref_mean, "ref_se": ref_se, "agree": abs(ref_mean - eng_mean) <= 4 * ref_se + 0.5}


def scenarios(*, quick: bool) -> list[tuple[str, Scenario, int]]:
    """(name, scenario, runs): the default study's base point and the three small test scenarios."""
    small_runs = 20 if quick else 200
    out: list[tuple[str, Scenario, int]] = []
    if not quick:
        out.append(("default (rolling-update, gcp-neg, preStop 15 s)", load_path(None).base, 3))
    for kind in ("rolling-update", "scale-down", "node-drain"):
        out.append((f"small {kind} (tests)", load_study({**BASE, "scenario": kind}).base, small_runs))
    return out


def _every_mechanism(default: Any) -> Any:
    """The default study with every mechanism of docs/simulation.md switched on."""
    from dataclasses import replace

    points = []
    for point in default.points:
        sc = point.scenario
        sc = sc.model_copy(update={
            "traffic": sc.traffic.model_copy(update={"connection_lifetime": Exponential(30.0), "client_retry_share": 0.3}),
            "workload": sc.workload.model_copy(update={"zones": 3, "pod_capacity": 60.0, "keepalive_timeout": 5.0}),
            "lb": sc.lb.model_copy(update={"retries": 1, "cross_zone": False, "routing": "connections",
                                           "idle_timeout": 60.0}),
            "drain": sc.drain.model_copy(update={"health_check_drain": 5.0}),
        })
        points.append(replace(point, scenario=sc))
    return replace(default, points=tuple(points))


def run(*, quick: bool = False, repeat: int = 3, ref_reps: int = 1) -> list[Row]:
    rows: list[Row] = []
    for name, scenario, runs in scenarios(quick=quick):
        c = compare(scenario, runs, max(repeat, 3), ref_reps, precise_runs=2_000 if quick else 20_000)
        rows.append(Row(f"{name}, {runs} runs each: speed ratio (engine {c['engine_s']:.4f} s, reference {c['ref_s']:.2f} s)",
                        f"{c['ratio']:,.0f}x"))
        rows.append(Row(f"{name}: mean failed requests, engine vs reference ± se",
                        f"{c['eng_mean']:.1f} vs {c['ref_mean']:.1f} ± {c['ref_se']:.1f}",
                        "agree within 4 se", bool(c["agree"])))
    if not quick:
        default = load_path(None)
        sweep_s, _ = _median_time(lambda: run_study(default), repeat)
        rows.append(Row(f"default scenario, whole sweep ({len(default.points)} points x {default.base.runs} runs), engine",
                        f"{sweep_s:.2f} s"))
        every = _every_mechanism(default)
        every_s, _ = _median_time(lambda: run_study(every), repeat)
        rows.append(Row("default sweep with every 502 mechanism on (3 zones, cross-zone off, LB + client retries, "
                        "capacity, keep-alive races, connection routing), engine", f"{every_s:.2f} s"))
    rows.extend(decision_rows(repeat))
    rows.extend(schema_rows(1 if quick else 5))
    return rows


_IMPORT_PROBE = """
import time
start = time.perf_counter()
import numpy, yaml, negsync.core.latency
middle = time.perf_counter()
import negsync.sim.scenario
print(time.perf_counter() - middle)
"""


def schema_rows(repeat: int) -> list[Row]:
    """What the pydantic scenario schema costs ``negsync simulate``: its import and the validation of every point."""
    imports = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=ROOT, check=True, timeout=60,
                              capture_output=True, text=True)
        imports.append(float(done.stdout))
    load_s, study = _median_time(lambda: load_path(None), repeat)
    # Reported, not a goal: the issue asks for a lazy import only above ~150 ms on `negsync simulate`.
    return [
        Row("scenario schema: importing it (pydantic + building the models; numpy and PyYAML already loaded), "
            f"fresh interpreter, median of {repeat}", f"{statistics.median(imports) * 1000:.0f} ms"),
        Row(f"scenario schema: reading, resolving and validating the default scenario and its {len(study.points)} "
            "sweep points, in-process", f"{load_s * 1000:.1f} ms"),
    ]


def _decide_default() -> tuple[float, float, int]:
    study = load_path(None)
    start = time.perf_counter()
    grid = run_study(study)
    middle = time.perf_counter()
    decision = decide(study, grid)
    return middle - start, time.perf_counter() - middle, len(decision.evaluated) - len(grid)


def _command_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "negsync", "simulate"], cwd=ROOT, check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def decision_rows(repeat: int) -> list[Row]:
    """The default scenario's recommendation, refinement included: in-process and end to end."""
    parts = [_decide_default() for _ in range(max(repeat, 3))]
    grid_s = statistics.median(p[0] for p in parts)
    decide_s = statistics.median(p[1] for p in parts)
    total_s = statistics.median(p[0] + p[1] for p in parts)
    command_s = statistics.median(_command_seconds() for _ in range(max(repeat, 3)))
    return [
        Row(f"default scenario, grid + refinement + simulated pair + bootstrap ({parts[0][2]} extra points), "
            f"in-process (grid {grid_s:.2f} s, decision {decide_s:.2f} s)", f"{total_s:.2f} s", "≤ 10 s", total_s <= 10),
        Row("default scenario, `python -m negsync simulate` end to end (fresh interpreter)", f"{command_s:.2f} s",
            "≤ 10 s", command_s <= 10),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per model for the default scenario (equal for both)")
    parser.add_argument("--small-runs", type=int, default=200, help="runs for the small scenarios")
    parser.add_argument("--reps", type=int, default=5, help="engine repetitions (median)")
    parser.add_argument("--ref-reps", type=int, default=1, help="reference repetitions (median)")
    args = parser.parse_args()

    default = load_path(None)
    print("| scenario | runs | engine s | reference s | ratio | mean failed (engine, 20k runs) "
          "| mean failed (reference ± se) | agree (4 se) |")
    print("|---|---|---|---|---|---|---|---|")
    cases = [("default (rolling-update, gcp-neg, preStop 15 s)", default.base, args.runs)]
    cases += [(f"small {k} (tests)", load_study({**BASE, "scenario": k}).base, args.small_runs)
              for k in ("rolling-update", "scale-down", "node-drain")]
    for name, scenario, runs in cases:
        c = compare(scenario, runs, args.reps, args.ref_reps)
        print(f"| {name} | {runs} | {c['engine_s']:.4f} | {c['ref_s']:.2f} | {c['ratio']:,.0f}x | {c['eng_mean']:.1f} | "
              f"{c['ref_mean']:.1f} ± {c['ref_se']:.1f} | {'yes' if c['agree'] else 'NO'} |")
    sweep_s, _ = _median_time(lambda: run_study(default), 3)
    print()
    print(f"default scenario, whole sweep ({len(default.points)} points x {default.base.runs} runs): "
          f"{sweep_s:.2f} s (median of 3, engine only, excluding interpreter start-up)")
    for row in decision_rows(3):
        print(f"{row.metric}: {row.figure} (goal {row.goal}: {row.verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
