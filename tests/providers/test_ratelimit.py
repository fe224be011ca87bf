"""The token bucket and throttle groups (negsync/providers/ratelimit.py), in virtual time."""

from __future__ import annotations

import threading

import pytest

from negsync.core.clock import RealClock, VirtualClock
from negsync.errors import (
    ConfigError,
)
from negsync.providers.ratelimit import RateLimits, TokenBucket, parse_rate_limits
from tests.support.waiting import wait_for


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # one token at 2/s
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.advance(100)  # an idle bucket saves at most one burst
    assert sum(bucket.try_acquire() for _ in range(10)) == 3
    assert bucket.granted == 7


def test_bucket_acquire_blocks_until_virtual_time_passes() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(1.0, 1, clock=clock)
    assert bucket.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(bucket.acquire()), daemon=True)
    waiter.start()
    wait_for(lambda: clock.next_deadline() is not None)  # the waiter is parked on the clock
    assert got == []
    clock.advance(1.0)
    waiter.join(timeout=5)
    assert got == [True]
    assert bucket.granted == 2


def test_bucket_acquire_gives_up_at_once_when_the_deadline_is_too_close() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(0.5, 1, clock=clock)
    assert bucket.acquire(timeout=0)
    assert bucket.acquire(timeout=1.0) is False  # the next token is 2 s away
    assert clock.now() == 0.0


def test_bucket_is_thread_safe() -> None:
    bucket = TokenBucket(0.001, 100, clock=VirtualClock())
    results: list[bool] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(50):
            ok = bucket.try_acquire()
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sum(results) == 100 == bucket.granted
    assert len(results) == 400


def test_bucket_with_the_real_clock_waits_for_a_refill() -> None:
    bucket = TokenBucket(200.0, 1, clock=RealClock())
    assert all(bucket.acquire(timeout=5) for _ in range(5))  # 4 of them waited ~5 ms each
    assert bucket.granted == 5


def test_bucket_rejects_nonsense() -> None:
    for rate, burst in ((0, 1), (-1, 1), (float("inf"), 1), (1, 0)):
        with pytest.raises(ValueError):
            TokenBucket(rate, burst)


def test_a_throttle_group_is_one_bucket_shared_by_every_operation_it_matches() -> None:
    # AWS counts Describe* together and Register/Deregister together, per account and region; the
    # old code gave each operation a bucket of its own, so two Describe calls paid twice the budget.
    clock = VirtualClock()
    limits = RateLimits({"RegisterTargets|DeregisterTargets": (4, 2), "Describe*": (10, 3), "*": (10, 4)}, clock=clock)
    assert limits.groups_for("DescribeTargetHealth") == ["Describe*", "*"]
    assert limits.groups_for("DeregisterTargets") == ["RegisterTargets|DeregisterTargets", "*"]
    assert limits.groups_for("ModifyListener") == ["*"]
    assert limits.limit_for("DescribeTargetHealth") == (10, 3)
    assert RateLimits({"Describe*": (1, 1)}).limit_for("RegisterTargets") is None
    assert RateLimits({"Describe*": (1, 1)}).acquire("RegisterTargets", timeout=0)
    # The Describe group's burst of 3 is shared: a DescribeTargetGroups after two health reads is the last.
    assert limits.acquire("DescribeTargetHealth", timeout=0)
    assert limits.acquire("DescribeTargetHealth", timeout=0)
    assert limits.acquire("DescribeTargetGroups", timeout=0)
    assert not limits.acquire("DescribeVpcs", timeout=0)
    # Registration has its own group, but the account-wide one (burst 4) is shared by all actions.
    assert limits.acquire("RegisterTargets", timeout=0)
    assert not limits.acquire("DeregisterTargets", timeout=0)
    assert limits["*"].granted == 4 and limits["Describe*"].granted == 3
    assert sorted(limits) == ["*", "Describe*", "RegisterTargets|DeregisterTargets"]
    with pytest.raises(ValueError):
        RateLimits({"A||B": (1, 1)})


def test_parse_rate_limits() -> None:
    assert parse_rate_limits("RegisterTargets=4:20, Describe*=50:200,") == {
        "RegisterTargets": (4.0, 20),
        "Describe*": (50.0, 200),
    }
    for bad in ("RegisterTargets=4", "=1:1", "X=0:1", "X=1:0", "X=a:b"):
        with pytest.raises(ConfigError) as info:
            parse_rate_limits(bad, field="--aws-rate-limits")
        assert info.value.field == "--aws-rate-limits"
