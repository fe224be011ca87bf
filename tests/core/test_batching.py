"""Chunking a change set to a provider's per-call limit, and bisecting the chunks it rejects."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from negsync.core.batching import call_count, chunks, halves, send_bisecting
from negsync.errors import RejectedError, TransientError


@given(items=st.sets(st.integers(0, 10_000), max_size=2_000), limit=st.integers(1, 600))
def test_chunks_never_exceed_the_limit_and_carry_everything_once(items: set[int], limit: int) -> None:
    out = list(chunks(items, limit=limit))
    assert all(1 <= len(c) <= limit for c in out)
    flat = [x for c in out for x in c]
    assert sorted(flat) == sorted(items)
    assert len(out) == call_count(len(items), limit=limit)


def test_chunks_rejects_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        list(chunks([1], limit=0))


@pytest.mark.parametrize(("size", "limit", "calls"), [(0, 500, 0), (1, 500, 1), (500, 500, 1), (1200, 500, 3), (450, 200, 3)])
def test_call_count(size: int, limit: int, calls: int) -> None:
    assert call_count(size, limit=limit) == calls


def test_halves_split_everything() -> None:
    left, right = halves([1, 2, 3, 4, 5])
    assert list(left) + list(right) == [1, 2, 3, 4, 5]
    assert abs(len(left) - len(right)) <= 1


@given(items=st.lists(st.integers(0, 1_000), unique=True, max_size=300), limit=st.integers(1, 50), seed=st.randoms())
def test_the_same_change_set_always_makes_the_same_calls(items: list[int], limit: int, seed: random.Random) -> None:
    # Retries and logs line up only if the chunks do not depend on the order the set was built in.
    shuffled = list(items)
    seed.shuffle(shuffled)
    out = list(chunks(shuffled, limit=limit))
    assert out == list(chunks(items, limit=limit))
    assert [x for c in out for x in c] == sorted(items)


class Api:
    """A batch API that fails a whole call holding any bad member, like a 400 from the Compute API."""

    def __init__(self, bad: set[int], *, names_bad: bool = False) -> None:
        self.bad, self.names_bad = bad, names_bad
        self.calls: list[list[int]] = []
        self.accepted: list[int] = []

    def __call__(self, batch: list[int]) -> None:
        self.calls.append(batch)
        found = self.bad & set(batch)
        if found:
            error = RejectedError(f"invalid: {sorted(found)}")
            if self.names_bad:
                error.endpoints = found  # type: ignore[attr-defined]  # ELBv2 names the bad target
            raise error
        self.accepted.extend(batch)


@given(items=st.sets(st.integers(0, 999), min_size=1, max_size=300), data=st.data(),
       limit=st.integers(1, 64), names_bad=st.booleans())
def test_bisection_isolates_exactly_the_bad_members_and_sends_the_rest(
    items: set[int], data: st.DataObject, limit: int, names_bad: bool
) -> None:
    bad = data.draw(st.sets(st.sampled_from(sorted(items)), max_size=5))
    api = Api(bad, names_bad=names_bad)
    isolated: list[int] = []
    done = send_bisecting(sorted(items), limit=limit, call=api, isolate=lambda member, reason: isolated.append(member))
    assert sorted(isolated) == sorted(bad)
    assert sorted(done) == sorted(api.accepted) == sorted(items - bad)
    assert all(len(call) <= limit for call in api.calls)


def test_one_bad_member_costs_log2_extra_calls() -> None:
    api = Api({37})
    reasons: list[str] = []
    done = send_bisecting(list(range(64)), limit=500, call=api, isolate=lambda member, reason: reasons.append(reason))
    assert len(done) == 63 and reasons == ["invalid: [37]"]
    assert len(api.calls) == 1 + 2 * 6  # the batch, then both halves at each of six levels


def test_a_failure_other_than_a_rejection_propagates() -> None:
    def throttled(batch: list[int]) -> None:
        raise TransientError("HTTP 503")

    with pytest.raises(TransientError):
        send_bisecting([1, 2, 3], limit=2, call=throttled, isolate=lambda member, reason: None)
