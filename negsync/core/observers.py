"""Where the reconciler reports what it did: the :class:`Observer` protocol and a fan-out.

Telemetry (call metrics, change → call latency), drain tracking (when a detach completed) and the
calibration timeline listen.  Observers are called on the reconciler's threads, some while it
holds its lock (``submitted``), so they must return quickly and never call back into it; every
method is a no-op by default so an observer overrides only what it needs.  :func:`observed_call`
is the one way a cloud call is timed and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from negsync.core.clock import Clock
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.errors import ProviderError

_T = TypeVar("_T")


class Observer(Protocol):
    """Where the reconciler reports what it did; telemetry, drain tracking and the timeline log listen.

    Every method is a no-op here, so an observer subclasses this and overrides only what it needs
    (a class that matches the shape without subclassing still type-checks: it is a Protocol).
    """

    def call_finished(self, *, ref: TargetRef, operation: str, size: int, seconds: float, outcome: str) -> None:
        """A cloud call ended (``outcome``: ok, error, rejected or conflict), ``seconds`` after it started."""
        return None

    def submitted(self, *, key: BindingKey, ref: TargetRef, detach: int, attach: int, at: float) -> None:
        """A transaction left for the cloud: the end of "endpoint change → call issued"."""
        return None

    def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float, done_at: float) -> None:
        """A detach of ``endpoints`` issued at ``issued_at`` completed at ``done_at``."""
        return None

    def became_healthy(self, *, ref: TargetRef, endpoint: TargetEndpoint, seconds: float) -> None:
        """First healthy report for a member, ``seconds`` after its attach call completed."""
        return None


class NullObserver(Observer):
    """Hears everything, does nothing: the reconciler's default."""


class Observers:
    """Fan one observer slot out to several (telemetry and drain tracking both listen)."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def call_finished(self, *, ref: TargetRef, operation: str, size: int, seconds: float, outcome: str) -> None:
        for observer in self._observers:
            observer.call_finished(ref=ref, operation=operation, size=size, seconds=seconds, outcome=outcome)

    def submitted(self, *, key: BindingKey, ref: TargetRef, detach: int, attach: int, at: float) -> None:
        for observer in self._observers:
            observer.submitted(key=key, ref=ref, detach=detach, attach=attach, at=at)

    def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float, done_at: float) -> None:
        for observer in self._observers:
            observer.detached(ref=ref, endpoints=endpoints, issued_at=issued_at, done_at=done_at)

    def became_healthy(self, *, ref: TargetRef, endpoint: TargetEndpoint, seconds: float) -> None:
        for observer in self._observers:
            observer.became_healthy(ref=ref, endpoint=endpoint, seconds=seconds)


def observed_call(
    observer: Observer,
    clock: Clock,
    call: Callable[[], _T],
    *,
    ref: TargetRef,
    operation: str,
    size: int = 0,
    outcome_of: Callable[[ProviderError], str] = lambda exc: "error",
) -> _T:
    """Run one cloud call and report it with its duration; ``outcome_of`` names a failure's outcome.

    Only a :class:`~negsync.errors.ProviderError` is an outcome; anything else is a bug and is not
    counted as a call.
    """
    started = clock.now()
    try:
        value = call()
    except ProviderError as exc:
        observer.call_finished(ref=ref, operation=operation, size=size, seconds=clock.now() - started,
                               outcome=outcome_of(exc))
        raise
    observer.call_finished(ref=ref, operation=operation, size=size, seconds=clock.now() - started, outcome="ok")
    return value
