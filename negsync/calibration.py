"""``negsync calibrate``: turn latencies a cluster measured into the simulator's distributions.

The controller exports three histograms per provider (see :mod:`negsync.telemetry`):

======================================  ===========================  =====================
metric                                  scenario field               meaning
======================================  ===========================  =====================
negsync_attach_healthy_latency_seconds  ``lb.attach_delay``          attach done → healthy
negsync_detach_latency_seconds          ``lb.detach_delay``          detach issued → done
negsync_reaction_latency_seconds        ``controller.reaction``      change seen → call
======================================  ===========================  =====================

``--from`` takes a Prometheus text exposition (a file, or an ``http(s)://`` URL such as a
controller's ``/metrics``) or a CSV of raw samples with a ``field,seconds`` header, where ``field``
is one of the scenario fields above.  Each measured field becomes an ``empirical`` distribution in
a copy of the base scenario, written as YAML.  Fields with no data keep the base scenario's value
and are named on stderr, so a user sees what was *not* calibrated.  The written scenario is
validated by the simulator's own loader before it is written.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from negsync.core.latency import read_samples
from negsync.errors import ConfigError

METRICS = {
    "negsync_attach_healthy_latency_seconds": "lb.attach_delay",
    "negsync_detach_latency_seconds": "lb.detach_delay",
    "negsync_reaction_latency_seconds": "controller.reaction",
}
FIELDS = tuple(METRICS.values())
MAX_SAMPLES = 1000
FETCH_TIMEOUT = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True,
                        help="Prometheus text exposition (file or http(s) URL) or CSV with a field,seconds header")
    parser.add_argument("--scenario", type=Path, default=None,
                        help="base scenario file (default: the packaged default scenario)")
    parser.add_argument("--out", type=Path, default=None, help="write the calibrated scenario here (default: stdout)")
    parser.add_argument("--provider", default=None, help="only use series with this provider label (gcp, aws, memory)")


def read_source(source: str) -> str:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT) as response:
                return str(response.read().decode("utf-8", "replace"))
        except OSError as exc:
            raise ConfigError("--from", f"cannot fetch {source}: {exc}") from None
    try:
        return Path(source).read_text()
    except OSError as exc:
        raise ConfigError("--from", f"cannot read {source}: {exc.strerror or exc}") from None


def _label_ok(line: str, provider: str | None) -> bool:
    if provider is None:
        return True
    match = re.search(r'provider="([^"]*)"', line)
    return match is not None and match.group(1) == provider


def samples_from_text(text: str, *, provider: str | None = None) -> dict[str, list[float]]:
    """Samples per scenario field from a Prometheus exposition or a field,seconds CSV."""
    stripped = text.lstrip()
    if stripped.lower().startswith("field,"):
        return _from_csv(text)
    found: dict[str, list[float]] = {}
    for metric, field in METRICS.items():
        lines = [line for line in text.splitlines()
                 if line.startswith(f"{metric}_bucket{{") and _label_ok(line, provider)]
        if not lines:
            continue
        # Several label sets (e.g. operation) of one metric: merge their buckets.
        samples = read_samples("\n".join(lines), field=f"--from {metric}", max_samples=MAX_SAMPLES)
        if samples:
            found[field] = samples
    if not found and "_bucket{" not in text:
        raise ConfigError("--from", "holds neither negsync histograms nor a field,seconds CSV")
    return found


def _from_csv(text: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or {"field", "seconds"} - set(reader.fieldnames):
        raise ConfigError("--from", "a CSV needs the header field,seconds")
    for number, row in enumerate(reader, start=2):
        field = (row.get("field") or "").strip()
        if field not in FIELDS:
            raise ConfigError("--from", f"line {number}: field must be one of {', '.join(FIELDS)}, got {field!r}")
        try:
            value = float(row.get("seconds") or "")
        except ValueError:
            raise ConfigError("--from", f"line {number}: seconds is not a number: {row.get('seconds')!r}") from None
        if not np.isfinite(value) or value < 0:
            raise ConfigError("--from", f"line {number}: seconds must be >= 0")
        found.setdefault(field, []).append(value)
    return found


def _thin(values: list[float]) -> list[float]:
    """At most MAX_SAMPLES values that keep the distribution's shape (evenly spaced quantiles)."""
    if len(values) <= MAX_SAMPLES:
        return [round(v, 4) for v in values]
    quantiles = (np.arange(MAX_SAMPLES) + 0.5) / MAX_SAMPLES
    return [round(float(v), 4) for v in np.quantile(np.asarray(values), quantiles)]


def calibrate(base: dict[str, Any], samples: dict[str, list[float]]) -> dict[str, Any]:
    scenario = dict(base)
    for field, values in samples.items():
        section, key = field.split(".")
        part = dict(scenario.get(section) or {})
        part[key] = {"dist": "empirical", "samples": _thin(values)}
        scenario[section] = part
    return scenario


def run(args: argparse.Namespace) -> int:
    from negsync.sim.scenario import default_scenario_text, load_study, parse_text, read_file

    base = read_file(args.scenario) if args.scenario else parse_text(default_scenario_text(), "default.yaml")
    if not isinstance(base, dict):
        raise ConfigError("--scenario", "must hold a mapping")
    samples = samples_from_text(read_source(args.source), provider=args.provider)
    if not samples:
        raise ConfigError("--from", "no negsync latency histogram has observations"
                                    + (f" for provider {args.provider!r}" if args.provider else ""))
    scenario = calibrate(base, samples)
    load_study(scenario, base_dir=args.scenario.resolve().parent if args.scenario else None)
    text = "# calibrated by negsync calibrate from " + args.source + "\n" + yaml.safe_dump(scenario, sort_keys=False)
    for field in FIELDS:
        if field in samples:
            print(f"calibrated {field}: {len(samples[field])} samples", file=sys.stderr)
        else:
            print(f"not calibrated {field}: no data, kept the base scenario's value", file=sys.stderr)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
