"""negsync benchmarks: ``python -m benchmarks`` (or ``make bench``) runs them all.

One module per benchmark — :mod:`benchmarks.churn`, :mod:`benchmarks.reaction`, :mod:`benchmarks.coldmem`,
:mod:`benchmarks.cold`, :mod:`benchmarks.simulator` — each exposing ``run(quick=..., repeat=...)``
that returns the rows of one markdown table.  The measured part of every repetition runs in a fresh
child interpreter (``python -m benchmarks.<module> --child PARAMS``, one JSON line on stdout), so
peak RSS, garbage and threads of one run never pollute the next; figures are medians over the
repetitions, and every ratio is computed inside one run before the median is taken.

This module holds what they share: the row type and table printer, medians, the child runner and
RSS readers.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a benchmark table: a figure and, when the issue sets one, its goal."""

    metric: str
    figure: str
    goal: str = ""
    met: bool | None = None  # None: reported, no goal

    @property
    def verdict(self) -> str:
        return "—" if self.met is None else ("met" if self.met else "**not met**")


def table(title: str, rows: Iterable[Row]) -> str:
    lines = [f"### {title}", "", "| metric | figure | goal | verdict |", "|---|---|---|---|"]
    lines += [f"| {r.metric} | {r.figure} | {r.goal or '—'} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {cpus} CPUs available ({os.cpu_count()} online){', ' + model if model else ''}; "
            f"Python {platform.python_version()} ({platform.python_implementation()}); {platform.system()} {platform.release()}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def proc_status_bytes(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` style field of /proc/self/status, in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_child(module: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --child JSON`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--child", json.dumps(params)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks.{module} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"benchmarks.{module} child printed nothing:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_main(measure: Any) -> int:
    """Entry point of a child: ``--child JSON`` → ``measure(params)`` → one JSON line."""
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        print(f"usage: python -m {measure.__module__} --child PARAMS_JSON (run `python -m benchmarks` instead)",
              file=sys.stderr)
        return 2
    result = measure(json.loads(sys.argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0
