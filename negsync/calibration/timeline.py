"""negsync's per-endpoint timeline: what the controller did to each endpoint, and when (wall time).

The controller logs one JSON line per endpoint per membership change, through its ordinary JSON
logger (:mod:`negsync.logs`), logger ``negsync.timeline``, message ``endpoint timeline``::

    {"ts": "...", "level": "info", "logger": "negsync.timeline", "msg": "endpoint timeline",
     "event": "detach", "target": "aws:eu-west-1/arn:...", "endpoint": "10.0.3.7:8080",
     "detach_issued": "2026-12-01T10:00:00.120000Z", "detach_done": "2026-12-01T10:00:00.231000Z"}
    {..., "event": "attach", "target": "...", "endpoint": "10.0.4.2:8080",
     "attach_done": "2026-12-01T10:00:05.010000Z", "first_healthy": "2026-12-01T10:00:21.400000Z"}

``detach_issued``/``detach_done``: the detach call (DetachNetworkEndpoints, DeregisterTargets)
was sent / returned.  ``attach_done``: the attach call returned; ``first_healthy``: the first
health read that showed the endpoint healthy (so it lags the LB by up to
``--health-poll-interval``).  An attach is logged when the endpoint first reads healthy, since
that is when the reconciler learns both instants; an endpoint that never turns healthy gets no
traffic and has no attach line.  Times are RFC 3339 UTC; the reader also takes epoch seconds.

``kubectl logs deploy/negsync-controller > timeline.jsonl`` is a valid timeline file: the reader
keeps the ``endpoint timeline`` lines and skips every other line.  A file holding none is an
error, as is an ``endpoint timeline`` line missing a field (named, with its line number).

The writer, :class:`TimelineLog`, is an observer of the reconciler
(:class:`negsync.core.observers.Observer`); observers get instants on the controller's
monotonic clock, which it converts to wall time when the event happens (access logs are in
wall time).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from negsync.core.clock import Clock
from negsync.core.observers import Observer
from negsync.errors import ConfigError

LOGGER = "negsync.timeline"
MESSAGE = "endpoint timeline"
FIELDS = {"detach": ("detach_issued", "detach_done"), "attach": ("attach_done", "first_healthy")}

log = logging.getLogger(LOGGER)


class TimelineLine(TypedDict, total=False):
    """The fields of one timeline log line that the reader uses."""

    msg: str
    event: Literal["detach", "attach"]
    target: str
    endpoint: str
    detach_issued: str | float
    detach_done: str | float
    attach_done: str | float
    first_healthy: str | float


@dataclass(frozen=True, slots=True)
class EndpointEvent:
    """One membership change of one endpoint, in epoch seconds.

    For a detach, ``start``/``end`` are detach issued/done; for an attach, attach done/first healthy.
    """

    kind: Literal["detach", "attach"]
    target: str
    endpoint: str  # "ip:port"
    start: float
    end: float


def rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(value: Any, *, field: str) -> float:
    """Epoch seconds from an RFC 3339 string (any fraction digits, Z or offset) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(field, f"is not a finite time: {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(field, f"must be an RFC 3339 time or epoch seconds, got {value!r}")
    try:  # the common case, fast: what AWS, Cloud Logging and the timeline itself write
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed.timestamp()
    except ValueError:
        pass
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:  # fromisoformat takes at most 6 fraction digits; Cloud Logging writes 9
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(field, f"is not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:  # every source here writes UTC; a bare time is taken as UTC
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


# --------------------------------------------------------------------------- writing


class TimelineLog(Observer):
    """Reconciler observer that logs the timeline lines described in the module docstring."""

    def __init__(self, *, clock: Clock, logger: logging.Logger | None = None) -> None:
        self._clock = clock
        self._log = logger or log

    def _wall(self, instant: float) -> float:
        return time.time() - (self._clock.now() - instant)

    def detached(self, *, ref: Any, endpoints: Sequence[Any], issued_at: float, done_at: float) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        issued, done = rfc3339(self._wall(issued_at)), rfc3339(self._wall(done_at))
        for endpoint in endpoints:
            self._log.info(MESSAGE, extra={"event": "detach", "target": str(ref),
                                           "endpoint": f"{endpoint.ip}:{endpoint.port}",
                                           "detach_issued": issued, "detach_done": done})

    def became_healthy(self, *, ref: Any, endpoint: Any, seconds: float) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        now = self._wall(self._clock.now())
        self._log.info(MESSAGE, extra={"event": "attach", "target": str(ref),
                                       "endpoint": f"{endpoint.ip}:{endpoint.port}",
                                       "attach_done": rfc3339(now - max(0.0, seconds)),
                                       "first_healthy": rfc3339(now)})


# --------------------------------------------------------------------------- reading


def read_events(lines: Iterable[str], *, name: str, flag: str = "--timeline") -> list[EndpointEvent]:
    """The timeline events in a log stream, in time order; other log lines are skipped."""
    events: list[EndpointEvent] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except ValueError:
            continue  # another component's log line; the timeline's own lines are always JSON
        if not isinstance(record, dict) or record.get("msg") != MESSAGE:
            continue
        events.append(_event(record, where=f"{name} line {number}", flag=flag))
    if not events:
        raise ConfigError(flag, f"{name} holds no '{MESSAGE}' lines (is it the controller's log, "
                                "written at --log-level info or debug?)")
    events.sort(key=lambda e: e.start)
    return events


def _event(record: dict[str, Any], *, where: str, flag: str) -> EndpointEvent:
    kind = record.get("event")
    if kind not in FIELDS:
        raise ConfigError(flag, f"{where}: event must be detach or attach, got {kind!r}")
    endpoint = record.get("endpoint")
    if not isinstance(endpoint, str) or ":" not in endpoint:
        raise ConfigError(flag, f"{where}: endpoint must be 'ip:port', got {endpoint!r}")
    first, second = FIELDS[kind]
    for key in (first, second):
        if key not in record:
            raise ConfigError(flag, f"{where}: {kind} line without {key}")
    start = parse_instant(record[first], field=f"{flag} {where}: {first}")
    end = parse_instant(record[second], field=f"{flag} {where}: {second}")
    if end < start:
        raise ConfigError(flag, f"{where}: {second} is before {first}")
    return EndpointEvent(kind=kind, target=str(record.get("target", "")), endpoint=endpoint, start=start, end=end)
