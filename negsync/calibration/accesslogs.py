"""Load-balancer request logs: when the LB routed a request, and to which endpoint.

Two formats, each reduced to the same thing: per endpoint, the sorted instants (epoch seconds)
at which the LB sent it a request.

**AWS Application Load Balancer access logs** (one entry per line, space-separated, quoted
fields in double quotes; gzip files are read as they are delivered to S3).  Source: "Access
logs for your Application Load Balancer", docs.aws.amazon.com/elasticloadbalancing/latest/
application/load-balancer-access-logs.html.  Fields by position: ``type time elb client:port
target:port request_processing_time target_processing_time response_processing_time
elb_status_code target_status_code received_bytes sent_bytes "request" "user_agent" ssl_cipher
ssl_protocol target_group_arn "trace_id" "domain_name" "chosen_cert_arn" matched_rule_priority
request_creation_time ...``; AWS adds fields at the end over time and says to ignore the ones a
parser does not know.  ``time`` is when the LB *responded*; ``request_creation_time`` when it
received the request; ``request_processing_time`` the time from receiving it to sending it to
the target (-1 when it could not dispatch).  So the routing instant is ``request_creation_time
+ request_processing_time``, or, in entries without ``request_creation_time``, ``time`` minus
the three processing times.  ``target:port`` is ``-`` when no target got the request (e.g. a
fixed response, a WAF block, a client that left): such entries are skipped.  A request that
reached the target and failed (a 502 from a closing pod) still names the target: it counts as
routed, which is exactly what detach propagation is about.

**GCP external Application LB request logs** exported from Cloud Logging as JSON: the array
``gcloud logging read ... --format=json`` prints, or JSON lines (a Cloud Storage or Pub/Sub
sink).  The endpoint is read from ``httpRequest.serverIp`` by default (``--endpoint-field``
changes the dotted path).  *Verified*: Cloud Logging's ``HttpRequest`` type defines
``serverIp`` as "the IP address (IPv4 or IPv6) of the origin server that the request was sent
to", which "can include port information" (logging/v2 LogEntry reference).  *Belief, not
verified against the load-balancing docs*: that the LB fills it with the backend endpoint (the
NEG's pod IP), and that the entry's ``timestamp`` is when the LB received the request (at worst
it is off by ``httpRequest.latency``, sub-second for typical requests).  Entries without the
field (redirects, cache hits, requests no backend got) are skipped and counted.  When the logged
value has no port, endpoints are matched on IP alone.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from negsync.calibration.timeline import parse_instant
from negsync.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
FORMATS = ("aws-alb", "gcp-json")
DEFAULT_GCP_ENDPOINT_FIELD = "httpRequest.serverIp"
FLAG = "--access-log"

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
_QUOTED = r'"(?:[^"\\]|\\.)*"'
# The current format up to request_creation_time in one match (fast path); other entries are tokenized.
_ALB_ENTRY = re.compile(
    r'(\S+) (\S+) \S+ \S+ (\S+) (\S+) (\S+) (\S+) \S+ \S+ \S+ \S+ '
    + " ".join([_QUOTED] * 2) + r' \S+ \S+ \S+ ' + " ".join([_QUOTED] * 3) + r' \S+ (\S+)(?: |$)')
_ALB_TYPES = {"http", "https", "h2", "grpcs", "ws", "wss"}
_ALB_MIN_FIELDS = 12  # type .. sent_bytes: older entries end soon after


@dataclass(slots=True)
class RequestLog:
    """Routing instants per endpoint (``ip:port``, or ``ip`` when the log has no port)."""

    routed: dict[str, FloatArray]
    start: float  # first and last instant in the logs: what the logs can see at all
    end: float
    entries: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> entries skipped

    def lookup(self, endpoint: str) -> FloatArray | None:
        """The instants for ``ip:port``, falling back to the bare IP for logs without ports."""
        found = self.routed.get(endpoint)
        if found is None:
            found = self.routed.get(endpoint.rsplit(":", 1)[0])
        return found


def _open_lines(path: Path) -> Iterator[str]:
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if gzipped else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            yield from handle
    except OSError as exc:
        raise ConfigError(FLAG, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except EOFError:
        raise ConfigError(FLAG, f"{path}: truncated gzip file") from None


def detect_format(path: Path) -> str:
    """``gcp-json`` when the first non-blank character is ``[`` or ``{``, else ``aws-alb``."""
    for line in _open_lines(path):
        stripped = line.lstrip()
        if stripped:
            return "gcp-json" if stripped[0] in "[{" else "aws-alb"
    raise ConfigError(FLAG, f"{path} is empty")


def read_logs(paths: list[Path], *, log_format: str | None = None,
              endpoint_field: str = DEFAULT_GCP_ENDPOINT_FIELD) -> RequestLog:
    """Read every file (format given, or detected per file) into one :class:`RequestLog`."""
    per_endpoint: dict[str, list[float]] = {}
    skipped: dict[str, int] = {}
    entries = 0
    for path in paths:
        kind = log_format or detect_format(path)
        reader = _alb_instants(path) if kind == "aws-alb" else _gcp_instants(path, endpoint_field)
        for item in reader:
            entries += 1
            if isinstance(item, str):
                skipped[item] = skipped.get(item, 0) + 1
                continue
            endpoint, instant = item
            per_endpoint.setdefault(endpoint, []).append(instant)
    routed = {k: np.sort(np.asarray(v, dtype=np.float64)) for k, v in per_endpoint.items()}
    if not routed:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items()) or "no entries"
        raise ConfigError(FLAG, f"no entry names a backend endpoint ({reasons})")
    start = min(float(v[0]) for v in routed.values())
    end = max(float(v[-1]) for v in routed.values())
    return RequestLog(routed=routed, start=start, end=end, entries=entries, skipped=skipped)


# A reader yields (endpoint, instant) per routed request, or the reason it skipped an entry.
Routed = tuple[str, float] | str
NO_TARGET = "without a target"
NO_ENDPOINT_FIELD = "without the endpoint field"


# --------------------------------------------------------------------------- AWS ALB


def _alb_fields(line: str) -> tuple[str, str, str, str, str, str, str | None] | None:
    """type, time, target:port, the three processing times, request_creation_time (None if absent)."""
    match = _ALB_ENTRY.match(line)
    if match:
        kind, responded, target, request, target_time, response, created = match.groups()
        return kind, responded, target, request, target_time, response, created
    tokens = [bare or quoted for quoted, bare in _TOKEN.findall(line)]
    if len(tokens) < _ALB_MIN_FIELDS:
        return None
    created = tokens[21] if len(tokens) > 21 else None
    return tokens[0], tokens[1], tokens[4], tokens[5], tokens[6], tokens[7], created


def _alb_instants(path: Path) -> Iterator[Routed]:
    for number, line in enumerate(_open_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        fields = _alb_fields(line)
        if fields is None or fields[0] not in _ALB_TYPES:
            raise ConfigError(FLAG, f"{where}: not an ALB access log entry (expected 'type time elb "
                                    "client:port target:port ...', type one of http, https, h2, grpcs, ws, wss)")
        _, responded, target, *processing, created = fields
        if target == "-":
            yield NO_TARGET
            continue
        if ":" not in target:
            raise ConfigError(FLAG, f"{where}: target:port must be 'ip:port' or '-', got {target!r}")
        request, target_time, response = (
            _seconds(token, where=where, name=name) for token, name in zip(
                processing, ("request_processing_time", "target_processing_time", "response_processing_time"),
                strict=True))
        if created is not None and created != "-":
            routed = parse_instant(created, field=f"{FLAG} {where}: request_creation_time") + max(0.0, request)
        else:
            routed = (parse_instant(responded, field=f"{FLAG} {where}: time")
                      - max(0.0, target_time) - max(0.0, response))
        yield _normal_endpoint(target), routed


def _seconds(token: str, *, where: str, name: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ConfigError(FLAG, f"{where}: {name} is not a number: {token!r}") from None
    if value != value or value < -1:  # -1 is AWS's "could not dispatch / no response"
        raise ConfigError(FLAG, f"{where}: {name} must be >= 0 or -1, got {token!r}")
    return value


def _normal_endpoint(value: str) -> str:
    """``ip:port`` or ``ip``; an IPv6 address loses its brackets (``[v6]:port`` → ``v6:port``)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return f"{host}{rest}" if rest.startswith(":") else host
    return value


# --------------------------------------------------------------------------- GCP


def _gcp_entries(path: Path) -> Iterator[tuple[str, Any]]:
    lines = _open_lines(path)
    first = ""
    buffered: list[str] = []
    for line in lines:
        buffered.append(line)
        if line.strip():
            first = line.lstrip()
            break
    if first.startswith("["):  # one JSON array (gcloud logging read --format=json)
        text = "".join(buffered) + "".join(lines)
        try:
            array = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(FLAG, f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(array, list):
            raise ConfigError(FLAG, f"{path}: expected a JSON array of log entries")
        for index, entry in enumerate(array):
            yield f"{path} entry {index}", entry
        return
    number = 0
    for line in [*buffered, *lines]:
        number += 1
        if not line.strip():
            continue
        try:
            yield f"{path} line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(FLAG, f"{path} line {number}: not a JSON log entry ({exc.msg})") from None


def _dig(entry: Any, dotted: str) -> Any:
    node = entry
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _gcp_instants(path: Path, endpoint_field: str) -> Iterator[Routed]:
    for where, entry in _gcp_entries(path):
        if not isinstance(entry, dict):
            raise ConfigError(FLAG, f"{where}: a log entry must be a JSON object")
        if "timestamp" not in entry:
            raise ConfigError(FLAG, f"{where}: log entry without timestamp")
        endpoint = _dig(entry, endpoint_field)
        if endpoint in (None, ""):
            yield NO_ENDPOINT_FIELD
            continue
        if not isinstance(endpoint, str):
            raise ConfigError(FLAG, f"{where}: {endpoint_field} must be a string, got {endpoint!r}")
        yield _normal_endpoint(endpoint), parse_instant(entry["timestamp"], field=f"{FLAG} {where}: timestamp")
