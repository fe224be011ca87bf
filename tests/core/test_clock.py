"""The clocks: a real one on :func:`time.monotonic`, and a virtual one that moves only when a test says so.

Threads block here for real (a sleeper or waiter parked on the virtual clock is a real thread),
but every wait is bounded: a thread that should have woken is joined with a timeout and the test
fails instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from negsync.core.clock import Clock, RealClock, VirtualClock
from tests.support.waiting import wait_for


class RecordingCondition(threading.Condition):
    """A condition that notes, in a shared list, when it is notified: the order the clock woke its waiters.

    It ignores the virtual clock's 1 s real-time fallback (waiting up to 30 s instead), so a waiter
    that returns did so because it was notified, however slow the machine is.
    """

    def __init__(self, name: str, woken: list[str]) -> None:
        super().__init__()
        self.name = name
        self._woken = woken

    def wait(self, timeout: float | None = None) -> bool:
        return super().wait(30.0)

    def notify_all(self) -> None:
        self._woken.append(self.name)
        super().notify_all()


def parked(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def park_waiter(clock: VirtualClock, condition: threading.Condition, timeout: float | None,
                woke: threading.Event | None = None) -> threading.Thread:
    """A thread in ``clock.wait(condition, timeout)``; returns once it is inside the wait (lock released)."""
    entered = threading.Event()

    def run() -> None:
        with condition:
            entered.set()
            clock.wait(condition, timeout)
        if woke is not None:
            woke.set()

    thread = parked(run)
    assert entered.wait(5)
    with condition:  # held by the thread from entered.set() until its wait released it
        pass
    return thread


def test_virtual_time_moves_only_when_advanced_and_never_backwards() -> None:
    clock = VirtualClock(start=100.0)
    assert clock.now() == 100.0
    time.sleep(0.01)
    assert clock.now() == 100.0  # real time passing moves nothing
    clock.advance(2.5)
    clock.advance(0.0)
    assert clock.now() == 102.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-0.1)
    assert clock.now() == 102.5


def test_a_sleep_ends_only_once_virtual_time_covers_all_of_it() -> None:
    clock = VirtualClock()
    woke_at: list[float] = []
    sleeper = parked(lambda: (clock.sleep(10.0), woke_at.append(clock.now())))
    wait_for(lambda: clock.next_deadline() == 10.0, what="sleeper parked")
    clock.advance(4.0)
    clock.advance(5.9)
    sleeper.join(timeout=0.2)
    assert sleeper.is_alive() and woke_at == []  # 9.9 of 10 s
    clock.advance(0.1)
    sleeper.join(timeout=5)
    assert not sleeper.is_alive() and woke_at == [10.0]
    assert clock.next_deadline() is None  # the deadline was consumed


def test_advancing_in_steps_that_add_up_to_a_sleep_ends_it() -> None:
    # Eight steps of 0.1 s add up to 0.7999999999999999 in floating point: a clock that summed
    # floats left a sleep(0.8) parked one step too long, and a test counting ticks off by one.
    clock = VirtualClock()
    sleeper = parked(lambda: clock.sleep(0.8))
    wait_for(lambda: clock.next_deadline() is not None, what="sleeper parked")
    for _ in range(8):
        clock.advance(0.1)
    sleeper.join(timeout=5)
    assert not sleeper.is_alive()
    assert clock.now() == 0.8 and clock.next_deadline() is None
    clock.advance(0.1)
    clock.advance(0.2)
    assert clock.now() == 1.1


@pytest.mark.parametrize("seconds", [0.0, -3.0])
def test_sleeping_no_time_returns_at_once_and_parks_nothing(seconds: float) -> None:
    clock = VirtualClock()
    clock.sleep(seconds)  # in this thread: a sleep that waited for an advance would never return
    assert clock.next_deadline() is None and clock.now() == 0.0


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_waiting_with_no_time_left_returns_at_once_and_parks_nothing(timeout: float) -> None:
    clock = VirtualClock()
    condition = RecordingCondition("w", [])  # would sit 30 s in a wait that had begun
    began = time.monotonic()
    with condition:
        clock.wait(condition, timeout)
    assert time.monotonic() - began < 5
    assert clock.next_deadline() is None


def test_advance_wakes_exactly_the_waiters_whose_deadline_passed_earliest_first() -> None:
    clock = VirtualClock()
    woken: list[str] = []
    # Parked out of order; "b" and "b2" share a deadline and are woken in the order they parked.
    threads = [park_waiter(clock, RecordingCondition(name, woken), timeout)
               for name, timeout in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0), ("d", 9.0))]
    assert clock.next_deadline() == 1.0
    clock.advance(2.0)  # a deadline equal to now has passed
    assert woken == ["a", "b", "b2"]
    assert clock.next_deadline() == 3.0
    clock.advance(1.0)
    assert woken == ["a", "b", "b2", "c"]
    clock.advance(5.9)
    assert woken == ["a", "b", "b2", "c"]  # d is due at 9, now is 8.9
    assert clock.next_deadline() == 9.0
    clock.advance(0.1)
    assert woken == ["a", "b", "b2", "c", "d"]
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_a_waiter_woken_by_advance_returns() -> None:
    clock = VirtualClock()
    woken: list[str] = []
    woke = threading.Event()
    park_waiter(clock, RecordingCondition("w", woken), 30.0, woke)
    clock.advance(29.0)
    assert woken == [] and not woke.wait(0.05)
    clock.advance(1.0)
    assert woken == ["w"]  # notified by advance itself, before it returned
    assert woke.wait(5)


def test_a_notified_waiter_returns_and_leaves_no_deadline_behind() -> None:
    # Tests use next_deadline() to know a thread is parked on the clock before they advance it; a
    # deadline left behind by a waiter that a real notify already woke would let them advance too
    # early and miss the waiter that matters.
    clock = VirtualClock()
    condition = threading.Condition()
    woke = threading.Event()
    park_waiter(clock, condition, 60.0, woke)
    assert clock.next_deadline() == 60.0
    with condition:
        condition.notify_all()
    assert woke.wait(5)  # a real notification, as on any condition, before any time passed
    assert clock.now() == 0.0
    assert clock.next_deadline() is None


def test_a_wait_without_timeout_parks_no_deadline() -> None:
    clock = VirtualClock()
    condition = threading.Condition()
    woke = threading.Event()
    park_waiter(clock, condition, None, woke)
    assert clock.next_deadline() is None
    with condition:
        condition.notify_all()
    assert woke.wait(5)


def test_the_real_clock_is_monotonic_time_not_wall_time() -> None:
    clock: Clock = RealClock()
    before = time.monotonic()
    now = clock.now()
    after = time.monotonic()
    assert before <= now <= after
    # Wall time (seconds since 1970) is far from monotonic time (since boot) on any real host.
    assert abs(time.time() - now) > 3600


def test_the_real_clock_does_not_block_on_no_time_left() -> None:
    clock: Clock = RealClock()
    condition = threading.Condition()
    began = time.monotonic()
    clock.sleep(0.0)
    clock.sleep(-5.0)
    with condition:
        clock.wait(condition, -1.0)  # a deadline already passed: a negative timeout is not an error
        clock.wait(condition, 0.01)
    assert time.monotonic() - began < 5
