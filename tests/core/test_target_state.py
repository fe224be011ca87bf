"""One target's bookkeeping: isolated members and their release, failures and back-off."""

from __future__ import annotations

import random

from negsync.core.backoff import Backoff
from negsync.core.model import TargetEndpoint
from negsync.core.target_state import TargetState
from negsync.errors import QuotaExceeded, TargetNotFound, TransientError

A, B = TargetEndpoint("10.0.0.1", 8080), TargetEndpoint("10.0.0.2", 8080)
ISOLATION = Backoff(base=300.0, cap=3600.0)


def review(state: TargetState, want: set[TargetEndpoint], now: float, inputs: dict[TargetEndpoint, int] | None = None
           ) -> tuple[dict[TargetEndpoint, str], list[float]]:
    rejected: dict[TargetEndpoint, str] = {}
    requeue: list[float] = []
    state.review_rejections(want=want, fingerprint=lambda m: (inputs or {}).get(m, 0), now=now, rejected=rejected,
                            requeue=requeue)
    return rejected, requeue


def test_an_isolated_member_waits_a_doubling_back_off_and_is_reported_meanwhile() -> None:
    state = TargetState()
    state.isolate(A, "HTTP 400", policy=ISOLATION, now=0.0)
    rejected, requeue = review(state, {A, B}, now=100.0)
    assert "HTTP 400" in rejected[A] and requeue == [200.0]
    review(state, {A, B}, now=300.0)
    assert A not in state.rejected  # back-off over: one more try
    state.isolate(A, "HTTP 400", policy=ISOLATION, now=300.0)  # refused again: strike two
    assert state.rejected[A].retry_at == 300.0 + 600.0


def test_an_isolated_member_is_released_at_once_when_its_inputs_change_or_it_leaves() -> None:
    state = TargetState()
    for member in (A, B):
        state.isolate(member, "HTTP 400", policy=ISOLATION, now=0.0)
    review(state, {A, B}, now=1.0, inputs={A: 1})  # first look records what each was computed from
    rejected, _ = review(state, {A}, now=2.0, inputs={A: 2})  # A's pod changed; B left the desired set
    assert rejected == {} and state.rejected == {}
    assert state.strikes == {}  # a comeback starts afresh


def test_failures_back_off_to_the_cap_and_honour_a_longer_retry_after() -> None:
    state = TargetState()
    policy = Backoff(base=5.0, cap=60.0, jitter=1.0)
    rng = random.Random(1)
    first = state.back_off(TransientError("HTTP 503"), policy=policy, cap=60.0, rng=rng, now=0.0)
    assert 5.0 <= first <= 10.0 and state.not_before == first
    hinted = state.back_off(TransientError("HTTP 429", retry_after=50.0), policy=policy, cap=60.0, rng=rng, now=0.0)
    assert hinted == 50.0
    capped = state.back_off(TransientError("HTTP 429", retry_after=500.0), policy=policy, cap=60.0, rng=rng, now=10.0)
    assert capped == 60.0 and state.not_before == 70.0 and state.failures == 3


def test_a_missing_target_is_ensured_again_and_a_used_up_quota_is_reported() -> None:
    state = TargetState(ensured=True)
    state.note_failure(TargetNotFound("gone"))
    assert not state.ensured and state.quota == ""
    state.note_failure(QuotaExceeded("NETWORK_ENDPOINT_GROUPS quota"))
    assert state.quota == "NETWORK_ENDPOINT_GROUPS quota"
    state.note_failure(TransientError("HTTP 503"))
    assert state.quota == ""
