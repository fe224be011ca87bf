"""The watcher's back-off between failed steps: negsync.core.backoff's rule and the server's Retry-After."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from negsync.core.clock import RealClock
from negsync.kube.caches import Store, decode_pod
from negsync.kube.watching import ResourceKind, Watcher


class SleepRecorder(RealClock):
    """Real time, but sleeps are recorded instead of slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def failing_watcher(error: Callable[[], Exception], clock: SleepRecorder) -> Watcher[Any]:
    def list_all(**_: Any) -> Any:
        raise error()

    kind = ResourceKind("pods", list_all, None, decode_pod)
    return Watcher(kind=kind, store=Store(), on_change=lambda old, new: None, clock=clock,
                   backoff_base=0.5, backoff_max=30.0)


def test_failures_back_off_between_half_and_all_of_a_doubling_step_capped_even_after_thousands() -> None:
    # A long API outage: every step fails at once.  2.0 ** 1100 used to overflow and kill the watcher thread.
    clock = SleepRecorder()
    watcher = failing_watcher(lambda: OSError("connection refused"), clock)
    stop = threading.Event()
    for _ in range(1100):
        watcher.step(stop)
    assert len(clock.sleeps) == 1100
    for n, slept in enumerate(clock.sleeps, start=1):
        step = min(30.0, 0.5 * 2.0 ** min(n - 1, 64))
        assert step / 2 <= slept <= step, (n, slept)
    assert watcher.step_deadline >= max(clock.sleeps)  # the liveness heartbeat's bound holds


def test_retry_after_as_an_http_date_is_honoured() -> None:
    def unavailable() -> ApiException:
        exc = ApiException(status=503, reason="Service Unavailable")
        exc.headers = {"Retry-After": email.utils.formatdate(time.time() + 20, usegmt=True)}
        return exc

    clock = SleepRecorder()
    failing_watcher(unavailable, clock).step(threading.Event())
    assert len(clock.sleeps) == 1 and 15 <= clock.sleeps[0] <= 20
