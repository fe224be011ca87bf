"""Work-queue semantics under real threads (client-go's guarantees plus the priority lane)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from negsync.core.clock import VirtualClock
from negsync.core.queueing import ShutDown, WorkQueue


def test_a_key_added_many_times_while_waiting_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(100):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert queue.get(timeout=1) == "a"
    assert queue.get(timeout=1) == "b"
    assert queue.get(timeout=0.05) is None


def test_a_key_re_added_while_processing_comes_back_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=1) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(timeout=0.05) is None  # not handed out while in processing
    queue.done("a")
    assert queue.get(timeout=1) == "a"
    queue.done("a")
    assert queue.get(timeout=0.05) is None


def test_priority_lane_overtakes_and_promotes() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ["n1", "n2", "n3"]:
        queue.add(key)
    queue.add("p1", priority=True)
    queue.add("n3", priority=True)  # promotion of a waiting key
    assert [queue.get(timeout=1) for _ in range(4)] == ["p1", "n3", "n1", "n2"]


def test_never_processed_by_two_workers_at_once_and_nothing_lost() -> None:
    queue: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlap: list[int] = []
    processed: Counter[int] = Counter()
    lock = threading.Lock()
    last_add: dict[int, int] = {}
    seen_version: dict[int, int] = {}
    version = Counter[int]()

    def worker() -> None:
        while True:
            try:
                key = queue.get()
            except ShutDown:
                return
            assert key is not None
            with lock:
                if key in active:
                    overlap.append(key)
                active.add(key)
                seen_version[key] = version[key]
            time.sleep(0.0005)
            with lock:
                active.discard(key)
                processed[key] += 1
            queue.done(key)

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for i in range(3000):
        key = i % 10
        with lock:
            version[key] += 1
            last_add[key] = version[key]
        queue.add(key)
    assert queue.drained(timeout=10)
    queue.shutdown()
    for w in workers:
        w.join(timeout=5)
    assert overlap == []
    # Level-triggered: every key was processed after its last add.
    assert all(seen_version[k] == last_add[k] for k in last_add)
    # De-duplication did real work: far fewer runs than adds.
    assert sum(processed.values()) < 3000


def test_add_after_and_rate_limited_back_off_in_virtual_time() -> None:
    clock = VirtualClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock, base_delay=1.0, max_delay=8.0)
    delays = [queue.add_rate_limited("k") for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert queue.get(timeout=0) is None
    clock.advance(0.99)
    assert queue.get(timeout=0) is None
    clock.advance(0.02)
    assert queue.get(timeout=0) == "k"  # the earliest schedule wins
    queue.done("k")
    queue.forget("k")
    assert queue.failures("k") == 0


def test_a_sleeping_get_wakes_when_virtual_time_reaches_the_delay() -> None:
    clock = VirtualClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("later", 30)
    got: list[str | None] = []
    thread = threading.Thread(target=lambda: got.append(queue.get(timeout=60)))
    thread.start()
    time.sleep(0.05)
    clock.advance(30)
    thread.join(timeout=5)
    assert got == ["later"]


def test_shutdown_drains_then_raises() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.shutdown()
    queue.add("ignored")
    assert queue.get(timeout=1) == "a"
    with pytest.raises(ShutDown):
        queue.get(timeout=1)
