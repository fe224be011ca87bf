"""The join of the timeline with the request logs (:mod:`negsync.calibration.propagation`), event by event.

Every case builds its own request instants and timeline events, so the expected sample is
known exactly: the last request after a detach was issued, the first after an attach was done.
"""

from __future__ import annotations

import numpy as np
import pytest

from negsync.calibration.accesslogs import RequestLog
from negsync.calibration.propagation import END_MARGIN, REUSED, join, measurements
from negsync.calibration.timeline import EndpointEvent

ENDPOINT = "10.0.0.7:8080"


def requests(*spans: tuple[float, float], step: float = 0.1, start: float = 0.0, end: float = 1000.0) -> RequestLog:
    """Requests every ``step`` s to ENDPOINT over each [from, to] span; the logs cover [start, end]."""
    times = np.concatenate([np.arange(lo, hi + step / 2, step) for lo, hi in spans])
    return RequestLog(routed={ENDPOINT: np.sort(times)}, start=start, end=end, entries=int(times.size))


def detach(issued: float, done: float) -> EndpointEvent:
    return EndpointEvent("detach", "tg", ENDPOINT, issued, done)


def attach(done: float, healthy: float) -> EndpointEvent:
    return EndpointEvent("attach", "tg", ENDPOINT, done, healthy)


def test_a_detach_measures_the_last_routed_request_from_the_issue_and_from_the_return() -> None:
    result = join([detach(100.0, 100.25)], requests((50.0, 104.5)))
    assert result.detach_delay == [pytest.approx(4.5)]
    assert result.detach_propagation == [pytest.approx(4.25)]
    assert result.detach_call == [pytest.approx(0.25)]
    assert result.gaps == [pytest.approx(0.1)]
    assert result.skipped == {}


def test_an_attach_measures_the_first_routed_request_after_the_call_returned() -> None:
    result = join([attach(100.0, 101.0)], requests((103.0, 200.0)))
    assert result.attach_delay == [pytest.approx(3.0)]
    assert result.healthy_to_routed == [pytest.approx(2.0)]


def test_a_request_routed_before_the_attach_returned_counts_as_zero_delay_not_negative() -> None:
    """An LB may route before the attach response reaches the controller (ATTACH_LOOKBACK)."""
    result = join([attach(100.0, 101.0)], requests((98.0, 150.0)))
    assert result.attach_delay == [0.0]
    assert result.healthy_to_routed == [pytest.approx(-3.0)]


@pytest.mark.parametrize(
    ("log", "reason"),
    [(requests((50.0, 99.0)), "no request after the detach was issued"),
     (requests((50.0, 100.5 + END_MARGIN / 2), end=100.5 + END_MARGIN / 2 + 0.1), "request logs end too soon"),
     (requests((150.0, 200.0), start=150.0), "detach before the request logs start")],
)
def test_a_detach_the_logs_cannot_time_is_skipped_and_counted(log: RequestLog, reason: str) -> None:
    result = join([detach(100.0, 100.2)], log)
    assert result.detach_delay == []
    assert [why for why in result.skipped if why.startswith(reason)] and sum(result.skipped.values()) == 1


def test_an_endpoint_missing_from_the_logs_skips_each_of_its_events() -> None:
    log = RequestLog(routed={"10.9.9.9:80": np.array([1.0, 2.0])}, start=0.0, end=1000.0, entries=2)
    result = join([detach(100.0, 100.2), attach(200.0, 201.0)], log)
    assert result.skipped == {"endpoint absent from the request logs": 2}


def test_a_log_without_ports_is_matched_by_the_bare_ip() -> None:
    times = np.arange(103.0, 200.0, 0.1)
    log = RequestLog(routed={ENDPOINT.split(":")[0]: times}, start=0.0, end=1000.0, entries=int(times.size))
    assert join([attach(100.0, 101.0)], log).attach_delay == [pytest.approx(3.0)]


def test_a_reused_ip_with_continuous_traffic_is_ambiguous_for_both_pods() -> None:
    """The old pod's last request and the new pod's first cannot be told apart: both skipped."""
    result = join([detach(100.0, 100.2), attach(110.0, 111.0)], requests((50.0, 200.0)))
    assert result.detach_delay == [] and result.attach_delay == []
    assert result.skipped == {REUSED: 2}


def test_a_reused_ip_with_a_quiet_gap_gives_both_samples() -> None:
    result = join([detach(100.0, 100.2), attach(130.0, 131.0)], requests((50.0, 103.0), (132.0, 200.0)))
    assert result.detach_delay == [pytest.approx(3.0)]
    assert result.attach_delay == [pytest.approx(2.0)]


def test_measurements_warn_when_requests_are_too_sparse_to_resolve_the_delay() -> None:
    dense = measurements(join([detach(100.0, 100.2)], requests((50.0, 104.0))), source="logs")
    sparse = measurements(join([detach(100.0, 100.2)], requests((50.0, 104.0), step=2.0)), source="logs")
    assert [m.parameter for m in dense] == ["lb.detach_delay"] and dense[0].cautions == ()
    assert len(sparse[0].cautions) == 1 and "requests reach an endpoint every 2 s" in sparse[0].cautions[0]
    assert "detach propagation" in dense[0].details[0]


def test_measurements_leave_out_a_parameter_without_samples() -> None:
    assert measurements(join([], requests((0.0, 1.0))), source="logs") == []
