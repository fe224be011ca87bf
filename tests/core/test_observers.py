"""Observers: no-op defaults, the fan-out, and how one cloud call is timed and reported."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from negsync.core.clock import VirtualClock
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.core.observers import NullObserver, Observer, Observers, observed_call
from negsync.errors import OwnershipConflict, RejectedError

REF = TargetRef("memory", "local", "web")
KEY = BindingKey("shop", "web")
A = TargetEndpoint("10.0.0.1", 8080)


class Calls(Observer):
    """Overrides one method only; the rest stay the protocol's no-ops."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, int, float, str]] = []

    def call_finished(self, *, ref: TargetRef, operation: str, size: int, seconds: float, outcome: str) -> None:
        self.finished.append((operation, size, seconds, outcome))


class Detaches(Observer):
    def __init__(self) -> None:
        self.detached_members: list[TargetEndpoint] = []

    def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float, done_at: float) -> None:
        self.detached_members.extend(endpoints)


def test_the_fan_out_reaches_every_observer_and_partial_observers_ignore_the_rest() -> None:
    calls, detaches = Calls(), Detaches()
    fan = Observers(calls, detaches, NullObserver())
    fan.submitted(key=KEY, ref=REF, detach=1, attach=0, at=0.0)
    fan.call_finished(ref=REF, operation="detach", size=1, seconds=0.5, outcome="ok")
    fan.detached(ref=REF, endpoints=[A], issued_at=0.0, done_at=0.5)
    fan.became_healthy(ref=REF, endpoint=A, seconds=1.0)
    assert calls.finished == [("detach", 1, 0.5, "ok")]
    assert detaches.detached_members == [A]


def test_an_observed_call_reports_its_duration_and_outcome() -> None:
    clock = VirtualClock()
    calls = Calls()

    def slow() -> str:
        clock.advance(2.0)
        return "listed"

    assert observed_call(calls, clock, slow, ref=REF, operation="list") == "listed"

    def rejected() -> None:
        clock.advance(1.0)
        raise RejectedError("HTTP 400")

    with pytest.raises(RejectedError):
        observed_call(calls, clock, rejected, ref=REF, operation="attach", size=3,
                      outcome_of=lambda exc: "rejected" if isinstance(exc, RejectedError) else "error")

    def conflict() -> None:
        raise OwnershipConflict("not ours")

    with pytest.raises(OwnershipConflict):
        observed_call(calls, clock, conflict, ref=REF, operation="ensure")
    assert calls.finished == [("list", 0, 2.0, "ok"), ("attach", 3, 1.0, "rejected"), ("ensure", 0, 0.0, "error")]


def test_a_bug_is_not_counted_as_a_call() -> None:
    calls = Calls()

    def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        observed_call(calls, VirtualClock(), broken, ref=REF, operation="attach")
    assert calls.finished == []
