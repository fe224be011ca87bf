"""Chunking a change set to a provider's per-call limit, and halving a rejected batch."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from negsync.core.batching import call_count, chunks, halves


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
