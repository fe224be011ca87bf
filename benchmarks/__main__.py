"""``python -m benchmarks [--quick] [--only churn,reaction,cold,simulator,coldmem] [--repeat N]``.

Runs each selected benchmark (see the module docstrings for the method), prints the machine line
and one markdown table per benchmark (metric, figure, goal, verdict).  Figures are medians of
``--repeat`` runs (default 3); ratios are taken inside one run.  ``--quick`` shrinks every size
so the whole suite runs in about a minute — its figures are not the ones in docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import time
from collections.abc import Callable

from benchmarks import Row, machine, table

TITLES = {
    "churn": "1. Churn — EndpointSlice watch stream replayed at full speed",
    "reaction": "2. Reaction — terminating update → detach call, under 1,000 changes/s",
    "cold": "3. Cold start — process start → every target in sync (Kubernetes API emulator)",
    "simulator": "4. Simulator — vectorized engine vs per-request SimPy reference",
    "coldmem": "5. Cold-start memory — realistic pods listed into the caches, peak RSS vs the Deployment's limit",
    "calls": "6. Cloud calls — every call by method, the real CLI against the fake Compute API and moto",
    "soak": "7. Soak — a million endpoint changes through the real CLI; RSS after warm-up",
    "scale": "8. Kubernetes' scale limits — 150,000 endpoints in 10,000 Services",
}


def _runner(name: str) -> Callable[..., list[Row]]:
    # Imported on demand: each benchmark module pulls in what it measures (emulators, moto, SimPy).
    module = importlib.import_module(f"benchmarks.{name}")
    run: Callable[..., list[Row]] = module.run
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check (not the documented figures)")
    parser.add_argument("--only", default=",".join(TITLES), help=f"comma-separated subset of {','.join(TITLES)}")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure; medians are reported (default 3)")
    args = parser.parse_args(argv)
    selected = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in selected if n not in TITLES]
    if unknown or args.repeat < 1:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(TITLES)}" if unknown else "--repeat must be >= 1")
    print(f"# negsync benchmarks — {datetime.date.today().isoformat()}{' (--quick)' if args.quick else ''}")
    print()
    print(machine())
    print(f"command: python -m benchmarks {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    failures = 0
    for name in selected:
        started = time.perf_counter()
        rows = _runner(name)(quick=args.quick, repeat=args.repeat)
        print()
        print(table(TITLES[name], rows))
        print(f"\n_{name}: {time.perf_counter() - started:.0f} s of benchmarking_", flush=True)
        failures += sum(1 for r in rows if r.met is False)
    print()
    print(f"{failures} goal(s) not met." if failures else "all goals met.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
