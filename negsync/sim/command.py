"""``negsync simulate``: argument wiring, output selection and the one-line error contract.

``negsync.cli`` calls :func:`add_arguments` on the ``simulate`` sub-parser and returns
:func:`run`'s exit code.  Bad input (any :class:`~negsync.errors.ConfigError`) becomes one line
``negsync simulate: error: <field>: <message>`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TextIO

from negsync.errors import ConfigError
from negsync.sim import report
from negsync.sim.decision import decide
from negsync.sim.loader import load_path, resolved_path
from negsync.sim.sweep import run_study

PROG = "negsync simulate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario", nargs="?", type=Path, default=None,
        help="scenario file (YAML or JSON); default: the packaged rolling update on gcp-neg",
    )
    parser.add_argument("--json", action="store_true", help="print the sweep as JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE", type=Path, default=None,
                        help="also write a plot; the format follows the suffix: .png, .svg or .pdf")
    parser.add_argument("--runs", metavar="N", type=int, default=None, help="override the scenario's runs")
    parser.add_argument("--seed", metavar="S", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--resolution", metavar="R", type=float, default=None,
                        help="refine the recommendation to this step (default: the sweep entry's "
                             "resolution, else 1 s)")
    parser.add_argument("--show", action="store_true",
                        help="print the resolved scenario (defaults and preset values filled in) and exit")


class _Progress:
    """A progress bar on stderr, shown only on a terminal and only once a second has passed."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._start = time.monotonic()
        self._shown = False
        self._tty = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self._tty or (not self._shown and time.monotonic() - self._start < 1.0):
            return
        width = 30
        filled = round(width * done / total)
        self._stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} sweep points")
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._stream.write("\r" + " " * 60 + "\r")
            self._stream.flush()


def _show(args: argparse.Namespace) -> int:
    try:
        resolved = resolved_path(getattr(args, "scenario", None), runs=getattr(args, "runs", None),
                                 seed=getattr(args, "seed", None))
    except ConfigError as exc:
        return _error(exc)
    if getattr(args, "json", False):
        print(json.dumps(resolved, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None, width=100).rstrip())
    return 0


def _error(exc: ConfigError) -> int:
    message = " ".join(str(exc.message).split())
    print(f"{PROG}: error: {exc.field}: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if getattr(args, "show", False):
        return _show(args)
    plot_path: Path | None = getattr(args, "plot", None)
    resolution: float | None = getattr(args, "resolution", None)
    try:
        if plot_path is not None:
            report.plot_format(plot_path)
        if resolution is not None and not (math.isfinite(resolution) and resolution > 0):
            raise ConfigError("--resolution", f"must be a number > 0, got {resolution:g}")
        study = load_path(getattr(args, "scenario", None), runs=getattr(args, "runs", None),
                          seed=getattr(args, "seed", None))
        progress = _Progress(sys.stderr)
        try:
            summaries = run_study(study, progress)
        finally:
            progress.close()
        decision = decide(study, summaries, resolution=resolution)
        recommendation = report.recommendation(study, decision)
        if plot_path is not None:
            try:
                report.plot(study, summaries, plot_path, decision)
            except ModuleNotFoundError as exc:
                # matplotlib is the optional `sim` extra (not in the controller image).
                raise ConfigError("--plot", f"needs {exc.name}: pip install 'negsync[sim]' (make simulate does)") from None
            except OSError as exc:
                raise ConfigError("--plot", f"cannot write {plot_path}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        return _error(exc)
    if getattr(args, "json", False):
        print(json.dumps(report.to_json(study, summaries, recommendation), indent=2))
    else:
        print(report.table(study, summaries, decision))
        for line in report.details(study, decision):
            print(line)
        print(report.recommendation_line(recommendation))
        if plot_path is not None:
            print(f"plot: {plot_path}")
    return 0
