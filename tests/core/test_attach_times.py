"""AttachTimes: attach completion per call, timed by the first listing that shows a member healthy."""

from __future__ import annotations

import tracemalloc

from negsync.core.attach_times import AttachTimes
from negsync.core.model import Health, TargetEndpoint, TargetRef

REF = TargetRef("memory", "local", "web")
OTHER = TargetRef("memory", "local", "api")


def member(n: int) -> TargetEndpoint:
    return TargetEndpoint(f"10.0.{n // 250}.{n % 250 + 1}", 8080)


def test_a_healthy_listing_times_each_member_from_its_own_attach_call() -> None:
    times = AttachTimes()
    times.attached(REF, [member(1), member(2)], done_at=10.0)
    times.attached(REF, [member(3)], done_at=12.0)
    timed = times.listed(REF, {member(1): Health.HEALTHY, member(2): Health.INITIAL, member(3): Health.HEALTHY},
                         now=15.0)
    assert sorted(timed) == [(member(1), 5.0), (member(3), 3.0)]
    assert times.waiting(REF) == {member(2): 10.0}  # not healthy yet: kept for a later listing
    assert times.listed(REF, {member(2): Health.HEALTHY}, now=20.0) == [(member(2), 10.0)]
    assert len(times) == 0 and times.targets() == set()


def test_a_member_is_timed_once() -> None:
    times = AttachTimes()
    times.attached(REF, [member(1)], done_at=1.0)
    assert times.listed(REF, {member(1): Health.HEALTHY}, now=2.0) == [(member(1), 1.0)]
    assert times.listed(REF, {member(1): Health.HEALTHY}, now=3.0) == []


def test_no_health_check_forgets_and_an_unlisted_member_waits() -> None:
    # A listing that does not show the member yet (eventually consistent APIs) keeps its time.
    times = AttachTimes()
    times.attached(REF, [member(1), member(2)], done_at=1.0)
    assert times.listed(REF, {member(1): Health.NO_HEALTH_CHECK}, now=2.0) == []
    assert times.waiting(REF) == {member(2): 1.0}


def test_a_later_attach_supersedes_and_a_detach_removes() -> None:
    times = AttachTimes()
    times.attached(REF, [member(1), member(2)], done_at=1.0)
    times.attached(REF, [member(2)], done_at=5.0)  # attached again (the cloud had dropped it)
    assert times.waiting(REF) == {member(1): 1.0, member(2): 5.0}
    assert len(times) == 2  # in one record only
    times.detached(REF, [member(1)])
    assert times.waiting(REF) == {member(2): 5.0}
    times.detached(REF, {member(2)})
    assert times.targets() == set()  # an empty record is dropped with its target


def test_targets_are_independent_and_can_be_forgotten() -> None:
    times = AttachTimes()
    times.attached(REF, [member(1)], done_at=1.0)
    times.attached(OTHER, [member(1)], done_at=2.0)
    assert times.listed(OTHER, {member(1): Health.HEALTHY}, now=3.0) == [(member(1), 1.0)]
    assert times.waiting(REF) == {member(1): 1.0}
    times.forget([REF])
    assert len(times) == 0


def test_a_waiting_member_costs_a_pointer_not_a_dict_entry() -> None:
    # Issue 18: a dict entry per member ((ref, member) key tuple + slot) measured ~160 B; the
    # members are the member cache's own objects, so a record per call costs ~8 B per member.
    batches = [[member(n) for n in range(start, start + 500)] for start in range(0, 20_000, 500)]
    refs = [TargetRef("memory", "local", f"t{i}") for i in range(len(batches))]
    times = AttachTimes()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for ref, batch in zip(refs, batches, strict=True):
            times.attached(ref, batch, done_at=1.0)
        per_member = (tracemalloc.get_traced_memory()[0] - before) / 20_000
    finally:
        tracemalloc.stop()
    assert len(times) == 20_000
    assert per_member <= 16, per_member
