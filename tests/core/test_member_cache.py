"""The member cache on its own: when a listing is due, how own writes fold in."""

from __future__ import annotations

import threading

from negsync.core.member_cache import MemberCache
from negsync.core.model import Health, TargetEndpoint, TargetRef

REF = TargetRef("memory", "local", "web")
A, B, C = (TargetEndpoint(f"10.0.0.{n}", 8080) for n in (1, 2, 3))


def cache(max_age: float = 60.0) -> MemberCache:
    return MemberCache(lock=threading.RLock(), max_age=max_age)


def test_an_entry_is_fresh_until_max_age_and_expired_when_the_clock_steps_back() -> None:
    members = cache(max_age=60.0)
    assert members.fresh(REF, now=0.0) is None  # never listed
    members.store(REF, {A: Health.HEALTHY}, version=0, listed_at=100.0)
    assert members.fresh(REF, now=159.0) == {A: Health.HEALTHY}
    assert members.fresh(REF, now=160.0) is None
    assert members.fresh(REF, now=99.0) is None  # a clock that stepped back: as old as we can tell


def test_a_gate_waiting_on_health_lists_after_the_poll_interval_only_while_a_member_is_not_passing() -> None:
    members = cache()
    members.store(REF, {A: Health.HEALTHY, B: Health.INITIAL}, version=0, listed_at=0.0)
    polls: list[int] = []

    def poll() -> float:
        polls.append(1)
        return 5.0

    assert members.fresh(REF, now=4.0, health_poll=poll) is not None
    assert members.fresh(REF, now=5.0, health_poll=poll) is None
    members.store(REF, {A: Health.HEALTHY, B: Health.NO_HEALTH_CHECK}, version=0, listed_at=10.0)
    assert members.fresh(REF, now=30.0, health_poll=poll) is not None  # every member passes: no poll due
    assert members.fresh(REF, now=30.0) is not None
    assert len(polls) == 3  # read only when a gate asks


def test_own_writes_fold_into_the_entry_without_renewing_its_age() -> None:
    members = cache(max_age=60.0)
    members.store(REF, {A: Health.HEALTHY, B: Health.HEALTHY}, version=0, listed_at=0.0)
    members.wrote(REF, detached=[B], attached=[C], certain=True)
    assert members.fresh(REF, now=59.0) == {A: Health.HEALTHY, C: Health.INITIAL}
    assert members.fresh(REF, now=60.0) is None  # still the listing's age: a busy target is re-listed
    assert members.version(REF) == 1


def test_an_uncertain_write_drops_the_entry() -> None:
    members = cache()
    members.store(REF, {A: Health.HEALTHY}, version=0, listed_at=0.0)
    members.wrote(REF, detached=[], attached=[], certain=False)
    assert members.fresh(REF, now=1.0) is None


def test_a_listing_a_write_overtook_is_not_cached() -> None:
    members = cache()
    version = members.version(REF)
    members.wrote(REF, detached=[], attached=[B], certain=True)  # completed while the list was in flight
    members.store(REF, {A: Health.HEALTHY}, version=version, listed_at=0.0)
    assert members.fresh(REF, now=1.0) is None


def test_versions_of_targets_no_binding_names_are_dropped() -> None:
    members = cache()
    other = TargetRef("memory", "local", "admin")
    for ref in (REF, other):
        members.wrote(ref, detached=[], attached=[], certain=True)
    members.keep_versions({REF})
    assert (members.version(REF), members.version(other)) == (1, 0)


def test_drop_forgets_one_entry_or_all() -> None:
    members = cache()
    other = TargetRef("memory", "local", "admin")
    for ref in (REF, other):
        members.store(ref, {A: Health.HEALTHY}, version=0, listed_at=0.0)
    members.drop(REF)
    assert members.fresh(REF, now=1.0) is None and members.fresh(other, now=1.0) is not None
    members.drop()
    assert members.fresh(other, now=1.0) is None
