"""The ``negsync calibrate`` command: measurements in, a calibrated scenario (YAML) out.

Two kinds of input, combinable:

* ``--access-log FILE... --timeline FILE...``: what the LB did (request logs) joined with what
  negsync did (its timeline log lines): calibrates ``lb.detach_delay`` and ``lb.attach_delay``
  from their observables (see :mod:`negsync.calibration.observables`).
* ``--from SOURCE``: the controller's histograms (a ``/metrics`` URL or a saved exposition) or a
  ``field,seconds`` CSV: calibrates ``controller.reaction`` and, more coarsely,
  ``lb.attach_delay``; it refuses to calibrate ``lb.detach_delay`` from the detach call's duration.

When both measure a parameter, the access logs win (they measure the observable itself).  Every
calibrated parameter is printed on stderr with its sample count, p50/p99 and warnings; every
parameter not calibrated is named, so nobody mistakes a preset value for a measurement.  The
scenario is validated by the simulator's loader before it is written.  Bad input of any kind,
including an ``--out`` that cannot be written, is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from negsync.calibration import accesslogs, prometheus, propagation, samplecsv, timeline
from negsync.calibration.observables import INCLUDES_HEALTH_CHECK, OBSERVABLES, PARAMETERS, Measurement, thin
from negsync.errors import ConfigError

FETCH_TIMEOUT = 10.0
PROVIDER_LOG_FORMATS = {"aws": "aws-alb", "gcp": "gcp-json"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", default=None,
                        help="Prometheus text exposition (file or http(s) URL, e.g. the controller's /metrics) "
                             "or a CSV with a field,seconds header")
    parser.add_argument("--access-log", dest="access_logs", type=Path, action="extend", nargs="+", default=[],
                        metavar="FILE",
                        help="LB request logs: AWS ALB access logs (plain or .gz) or GCP LB request log entries "
                             "exported from Cloud Logging as JSON; one or more files (needs --timeline)")
    parser.add_argument("--timeline", dest="timelines", action="extend", nargs="+", default=[], metavar="FILE",
                        help="the controller's logs holding its 'endpoint timeline' lines ('-' for stdin); "
                             "one or more files (needs --access-log)")
    parser.add_argument("--provider", default=None,
                        help="gcp or aws: the access-log format (default: detected per file); with --from, only "
                             "series with this provider label (gcp, aws, memory)")
    parser.add_argument("--endpoint-field", default=accesslogs.DEFAULT_GCP_ENDPOINT_FIELD,
                        help="dotted path of the backend endpoint in a GCP log entry")
    parser.add_argument("--scenario", type=Path, default=None,
                        help="base scenario file (default: the packaged default scenario)")
    parser.add_argument("--out", type=Path, default=None, help="write the calibrated scenario here (default: stdout)")


def read_source(source: str) -> str:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT) as response:
                return str(response.read().decode("utf-8", "replace"))
        except (OSError, ValueError) as exc:
            raise ConfigError("--from", f"cannot fetch {source}: {exc}") from None
    try:
        return Path(source).read_text(errors="replace")
    except OSError as exc:
        raise ConfigError("--from", f"cannot read {source}: {exc.strerror or exc}") from None


def from_source(source: str, *, provider: str | None) -> tuple[list[Measurement], list[str]]:
    text = read_source(source)
    if samplecsv.is_csv(text):
        return samplecsv.measurements(text, source=source), []
    return prometheus.measurements(text, provider=provider, source=source)


def _timeline_lines(names: list[str]) -> Iterable[tuple[str, Iterable[str]]]:
    for name in names:
        if name == "-":
            yield "stdin", sys.stdin
            continue
        try:
            text = Path(name).read_text(errors="replace")
        except OSError as exc:
            raise ConfigError("--timeline", f"cannot read {name}: {exc.strerror or exc}") from None
        yield name, text.splitlines()


def from_logs(args: argparse.Namespace) -> tuple[list[Measurement], list[str]]:
    log_format = None
    if args.provider is not None:
        if args.provider not in PROVIDER_LOG_FORMATS:
            raise ConfigError("--provider", f"access logs come from gcp or aws, got {args.provider!r}")
        log_format = PROVIDER_LOG_FORMATS[args.provider]
    events: list[timeline.EndpointEvent] = []
    for name, lines in _timeline_lines(args.timelines):
        events.extend(timeline.read_events(lines, name=name))
    requests = accesslogs.read_logs(args.access_logs, log_format=log_format, endpoint_field=args.endpoint_field)
    first, last = min(e.start for e in events), max(e.end for e in events)
    if last < requests.start or first > requests.end:
        raise ConfigError("--access-log", f"the request logs ({timeline.rfc3339(requests.start)} to "
                                          f"{timeline.rfc3339(requests.end)}) do not overlap the timeline "
                                          f"({timeline.rfc3339(first)} to {timeline.rfc3339(last)})")
    joined = propagation.join(events, requests)
    found = propagation.measurements(joined, source="access logs + timeline")
    messages = [f"note: {n} timeline events gave no sample: {why}" for why, n in sorted(joined.skipped.items())]
    messages += [f"note: {n} request log entries {why} were skipped" for why, n in sorted(requests.skipped.items())]
    if not found:
        raise ConfigError("--access-log", "no timeline event could be matched with routed requests ("
                          + "; ".join(f"{n} {why}" for why, n in sorted(joined.skipped.items())) + ")")
    return found, messages


def calibrated(base: dict[str, Any], found: dict[str, Measurement]) -> dict[str, Any]:
    """A copy of the base scenario with each measured parameter an empirical distribution."""
    scenario = dict(base)
    for parameter, measurement in found.items():
        section, key = parameter.split(".")
        part = dict(scenario.get(section) or {})
        part[key] = {"dist": "empirical", "samples": thin(measurement.samples)}
        if parameter == "lb.attach_delay":  # every attach observable here contains the health-check wait
            part[INCLUDES_HEALTH_CHECK] = True
        scenario[section] = part
    return scenario


def run(args: argparse.Namespace) -> int:
    from negsync.sim.loader import default_scenario_text, load_study, parse_text, read_file

    if bool(args.access_logs) != bool(args.timelines):
        missing = "--timeline" if args.access_logs else "--access-log"
        raise ConfigError(missing, "required with " + ("--access-log" if args.access_logs else "--timeline")
                          + ": propagation is the LB's request times minus negsync's timeline")
    if args.source is None and not args.access_logs:
        raise ConfigError("--from", "required (or --access-log with --timeline)")
    base = read_file(args.scenario) if args.scenario else parse_text(default_scenario_text(), "default.yaml")
    if not isinstance(base, dict):
        raise ConfigError("--scenario", "must hold a mapping")
    found: dict[str, Measurement] = {}
    messages: list[str] = []
    sources = []
    if args.source is not None:
        measured, notes = from_source(args.source, provider=args.provider)
        found.update((m.parameter, m) for m in measured)
        messages += notes
        sources.append(args.source)
    if args.access_logs:
        measured, notes = from_logs(args)
        for m in measured:
            if m.parameter in found:
                messages.append(f"note: {m.parameter}: the access logs' value replaces the one from {args.source}")
            found[m.parameter] = m
        messages += notes
        sources.append("access logs " + ", ".join(str(p) for p in args.access_logs))
    if not found:
        raise ConfigError("--from", "has no data any parameter can be calibrated from"
                          + (f" for provider {args.provider!r}" if args.provider else "")
                          + "".join(f"; {m.removeprefix('warning: ')}" for m in messages if m.startswith("warning:")))
    scenario = calibrated(base, found)
    load_study(scenario, base_dir=args.scenario.resolve().parent if args.scenario else None)
    header = [f"# calibrated by negsync calibrate from {'; '.join(sources)}"]
    header += [f"# {p}: {OBSERVABLES[p]}" for p in PARAMETERS if p in found]
    text = "\n".join(header) + "\n" + yaml.safe_dump(scenario, sort_keys=False)
    if args.out:
        try:
            args.out.write_text(text)
        except OSError as exc:
            raise ConfigError("--out", f"cannot write {args.out}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
    for parameter in PARAMETERS:
        if parameter in found:
            print(found[parameter].summary(), file=sys.stderr)
            for warning in found[parameter].warnings():
                print(warning, file=sys.stderr)
        else:
            print(f"not calibrated {parameter}: no data, kept the base scenario's value", file=sys.stderr)
    for message in messages:
        print(message, file=sys.stderr)
    return 0
