"""Join the timeline with the request logs: when did the LB really stop and start routing.

Per timeline event of an endpoint (events of one endpoint in time order):

* a **detach** (issued ``I``, done ``D``): the last request routed to the endpoint before its next
  attach (a reused pod IP; from :data:`ATTACH_LOOKBACK` before it) gives ``lb.detach_delay = last − I``
  and detach propagation ``last − D``.  Skipped, and counted, when the last request came before ``I`` (the endpoint
  stopped getting traffic before the detach: failed health checks, or too little traffic) or when
  the logs end within :data:`END_MARGIN` s of it (the LB may have routed more after the logs end);
* an **attach** (done ``A``): the first request routed to it at or after
  ``max(A − ATTACH_LOOKBACK, previous event)`` and before its next detach gives
  ``lb.attach_delay = max(0, first − A)``.  Skipped when the logs start after ``A``, or when no
  request reached it.

A pod IP reused by a new pod while the LB still routes to the old one cannot be split between
them: when less than :data:`REUSE_GAP` s of silence separates the two pods' traffic, both events
are skipped and counted.

Resolution: a request log only shows routing when a request arrives.  With ``r`` requests per
second to an endpoint, the last request comes on average ``1/r`` before the LB stops routing and
the first ``1/r`` after it starts, so every sample is biased by about the endpoint's mean gap
between requests.  That gap is measured (median over the endpoints that gave a sample) and a
warning is given when it exceeds :data:`MAX_RELATIVE_GAP` of the median sample.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from negsync.calibration.accesslogs import RequestLog
from negsync.calibration.observables import Measurement
from negsync.calibration.timeline import EndpointEvent

ATTACH_LOOKBACK = 5.0  # an LB may route before the attach call's response reaches the controller
END_MARGIN = 5.0
MAX_RELATIVE_GAP = 0.1
GAP_WINDOW = 60.0  # seconds of traffic around an event used to measure the endpoint's request gap
REUSE_GAP = 5.0  # a reused pod IP needs this quiet time between its two pods' traffic to tell them apart
REUSED = "pod IP reused while the LB still routed to its previous pod (ambiguous)"


@dataclass(slots=True)
class Propagation:
    """Per-event samples and the reasons events gave none."""

    detach_delay: list[float] = field(default_factory=list)  # last routed - detach issued
    detach_propagation: list[float] = field(default_factory=list)  # last routed - detach done
    detach_call: list[float] = field(default_factory=list)  # detach done - issued, same events
    attach_delay: list[float] = field(default_factory=list)  # first routed - attach done
    healthy_to_routed: list[float] = field(default_factory=list)  # first routed - first healthy read
    gaps: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _gap(times: np.ndarray, around: float) -> float | None:
    """Median gap between requests to one endpoint within GAP_WINDOW before ``around``."""
    lo, hi = np.searchsorted(times, [around - GAP_WINDOW, around], side="left")
    window = times[lo:hi]
    if window.size < 2:
        return None
    return float(np.median(np.diff(window)))


def join(events: list[EndpointEvent], requests: RequestLog) -> Propagation:
    """Match every timeline event with the requests routed to its endpoint."""
    out = Propagation()
    by_endpoint: dict[str, list[EndpointEvent]] = defaultdict(list)
    for event in events:
        by_endpoint[event.endpoint].append(event)
    for endpoint, series in by_endpoint.items():
        times = requests.lookup(endpoint)
        for index, event in enumerate(series):
            if times is None or times.size == 0:
                out.skip("endpoint absent from the request logs")
                continue
            if event.kind == "detach":
                _detach(out, event, series[index + 1:], times, requests)
            else:
                _attach(out, event, series[:index], series[index + 1:], times, requests)
    return out


def _detach(out: Propagation, event: EndpointEvent, later: list[EndpointEvent], times: np.ndarray,
            requests: RequestLog) -> None:
    reattached = next((e.start for e in later if e.kind == "attach"), np.inf)
    if event.start < requests.start:
        out.skip("detach before the request logs start")
        return
    upto = int(np.searchsorted(times, reattached - ATTACH_LOOKBACK, side="left"))
    if upto > 0 and reattached - ATTACH_LOOKBACK - times[upto - 1] < REUSE_GAP:
        out.skip(REUSED)
        return
    if upto == 0 or times[upto - 1] < event.start:
        out.skip("no request after the detach was issued (health check or too little traffic)")
        return
    last = float(times[upto - 1])
    if reattached == np.inf and requests.end - last < END_MARGIN:
        out.skip("request logs end too soon after the detach")
        return
    out.detach_delay.append(last - event.start)
    out.detach_propagation.append(last - event.end)
    out.detach_call.append(event.end - event.start)
    gap = _gap(times, event.start)
    if gap is not None:
        out.gaps.append(gap)


def _attach(out: Propagation, event: EndpointEvent, earlier: list[EndpointEvent], later: list[EndpointEvent],
            times: np.ndarray, requests: RequestLog) -> None:
    if event.start - ATTACH_LOOKBACK < requests.start:
        out.skip("attach before the request logs start")
        return
    previous = max((e.end for e in earlier), default=-np.inf)
    until = next((e.start for e in later if e.kind == "detach"), np.inf)
    lower = max(event.start - ATTACH_LOOKBACK, previous)
    lo = int(np.searchsorted(times, lower, side="left"))
    if any(e.kind == "detach" for e in earlier) and lo > 0 and lower - times[lo - 1] < REUSE_GAP:
        out.skip(REUSED)
        return
    if lo >= times.size or times[lo] >= until:
        out.skip("no request after the attach")
        return
    first = float(times[lo])
    out.attach_delay.append(max(0.0, first - event.start))
    out.healthy_to_routed.append(first - event.end)
    gap = _gap(times, first + GAP_WINDOW)
    if gap is not None:
        out.gaps.append(gap)


def measurements(result: Propagation, *, source: str) -> list[Measurement]:
    """The measured parameters, with their diagnostics as notes."""
    gap = float(np.median(result.gaps)) if result.gaps else None
    found: list[Measurement] = []
    for parameter, values, details in (
        ("lb.detach_delay", result.detach_delay, _detach_details(result)),
        ("lb.attach_delay", result.attach_delay, _attach_details(result)),
    ):
        if not values:
            continue
        cautions = []
        median = float(np.median(values))
        if gap is not None and gap > MAX_RELATIVE_GAP * max(median, 1e-9):
            cautions.append(f"requests reach an endpoint every {gap:.3g} s (median), more than "
                         f"{MAX_RELATIVE_GAP:.0%} of the median value {median:.3g} s: each sample is off by about "
                         "that much; measure during more traffic")
        found.append(Measurement(parameter, tuple(values), source, tuple(cautions), tuple(details)))
    return found


def _detach_details(result: Propagation) -> list[str]:
    if not result.detach_delay:
        return []
    call = float(np.median(result.detach_call))
    after = float(np.median(result.detach_propagation))
    return [f"of which the detach call took p50 {call:.3g} s and the LB kept routing p50 {after:.3g} s "
            "after it returned (detach propagation)"]


def _attach_details(result: Propagation) -> list[str]:
    if not result.healthy_to_routed:
        return []
    late = float(np.median(result.healthy_to_routed))
    return [f"first request p50 {late:+.3g} s after negsync first read the endpoint healthy; "
            "the value includes the health-check wait (lb.attach_delay_includes_health_check: true)"]
