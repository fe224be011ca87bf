"""Synthetic rollouts with known delays: a negsync timeline and the LB request logs it implies.

Known truth per endpoint: ``detach_delay`` (detach issued → the LB's last routed request) and
``attach_delay`` (attach done → its first routed request).  Requests arrive at each endpoint in
rotation as a Poisson stream of ``rps`` per endpoint, so the logs see the truth only up to the gap
between requests (about ``1 / rps``): the tolerance of the round trip.  Formats follow the sources
cited in negsync/calibration/accesslogs.py (AWS ALB access log fields by position; Cloud Logging
LogEntry JSON with httpRequest.serverIp).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC).timestamp()
TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Rollout:
    detach_delay: np.ndarray
    attach_delay: np.ndarray
    timeline: list[str] = field(default_factory=list)
    requests: list[tuple[float, str]] = field(default_factory=list)  # (routed at, "ip:port")


def rollout(*, endpoints: int = 40, rps: float = 5.0, seed: int = 7, lead: float = 30.0) -> Rollout:
    rng = np.random.default_rng(seed)
    detach = rng.lognormal(np.log(8.0), 0.5, endpoints)
    attach = rng.lognormal(np.log(20.0), 0.4, endpoints)
    out = Rollout(detach, attach)
    out.timeline.append(json.dumps({"ts": iso(T0), "level": "info", "logger": "negsync.controller",
                                    "msg": "controller started", "provider": "aws"}))
    end = T0 + 60 + 3 * endpoints + 200.0

    def stream(ip: str, lo: float, hi: float) -> None:
        count = rng.poisson(rps * (hi - lo))
        out.requests.extend((float(t), ip) for t in rng.uniform(lo, hi, count))

    for i in range(endpoints):
        old, new = f"10.1.{i // 200}.{i % 200 + 1}:8080", f"10.2.{i // 200}.{i % 200 + 1}:8080"
        issued = T0 + 60 + 3 * i
        done = issued + float(rng.uniform(0.05, 0.3))
        stop = issued + max(detach[i], done - issued)
        detach[i] = stop - issued
        stream(old, issued - lead, stop)
        out.timeline.append(json.dumps({"ts": iso(done), "level": "info", "logger": "negsync.timeline",
                                        "msg": "endpoint timeline", "event": "detach", "target": f"aws:eu-west-1/{TG}",
                                        "endpoint": old, "detach_issued": iso(issued), "detach_done": iso(done)}))
        attached = issued + 1.0
        start = attached + attach[i]
        stream(new, start, start + lead)
        out.timeline.append(json.dumps({"ts": iso(start), "level": "info", "logger": "negsync.timeline",
                                        "msg": "endpoint timeline", "event": "attach", "target": f"aws:eu-west-1/{TG}",
                                        "endpoint": new, "attach_done": iso(attached), "first_healthy": iso(start - 1.5)}))
    stream("10.9.0.1:8080", T0, end)  # a pod that stays: the logs run on after the rollout
    out.requests.sort()
    return out


def alb_lines(requests: list[tuple[float, str]]) -> list[str]:
    """ALB access log entries (AWS's documented field order), one per request."""
    lines = []
    for routed, target in requests:
        received = routed - 0.001
        responded = routed + 0.05
        lines.append(
            f'https {iso(responded)} app/web/50dc6c495c0c9188 203.0.113.7:51234 {target} 0.001 0.048 0.001 200 200 '
            f'34 366 "GET https://web.example.com:443/ HTTP/1.1" "curl/8.5.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
            f'{TG} "Root=1-58337262-36d228ad5d99923122bbe354" "web.example.com" '
            f'"arn:aws:acm:eu-west-1:123456789012:certificate/12345678" 0 {iso(received)} "forward" "-" "-" '
            f'"{target}" "200" "-" "-" TID_1234')
    return lines


def gcp_entries(requests: list[tuple[float, str]], *, with_port: bool = False) -> list[dict[str, object]]:
    """Cloud Logging LogEntry objects of an external Application LB (httpRequest.serverIp = backend)."""
    entries: list[dict[str, object]] = []
    for routed, target in requests:
        server = target if with_port else target.rsplit(":", 1)[0]
        entries.append({
            "insertId": f"id{len(entries)}",
            "jsonPayload": {"@type": "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry",
                            "statusDetails": "response_sent_by_backend", "backendTargetProjectNumber": "projects/1"},
            "httpRequest": {"requestMethod": "GET", "requestUrl": "https://web.example.com/", "status": 200,
                            "remoteIp": "203.0.113.7", "serverIp": server, "latency": "0.048s"},
            "resource": {"type": "http_load_balancer", "labels": {"backend_service_name": "web"}},
            "timestamp": dt.datetime.fromtimestamp(routed, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
            "severity": "INFO",
            "logName": "projects/p/logs/requests",
        })
    return entries
