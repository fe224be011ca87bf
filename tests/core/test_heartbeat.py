"""Heartbeats in virtual time: a missed deadline is stale, an idle or forgotten loop is not."""

from __future__ import annotations

from negsync.core.heartbeat import Heartbeats


def test_heartbeat_deadlines() -> None:
    now = [0.0]
    beats = Heartbeats(now=lambda: now[0])
    beats.beat("worker-0", within=10)
    beats.beat("watch-pods", within=100)
    now[0] = 10.0
    assert beats.stale() == []  # exactly at the deadline is still on time
    now[0] = 10.5
    assert [s.name for s in beats.stale()] == ["worker-0"]
    beats.idle("worker-0")  # waiting on an empty queue is not being wedged
    assert beats.stale() == []
    now[0] = 200.0
    assert [str(s) for s in beats.stale()] == ["watch-pods (no progress for 200s)"]
    beats.forget("watch-pods")
    assert beats.stale() == []
