"""Chunking a change set to a provider's per-call limit (NEG 500, ELBv2 200).

Chunks are cut from a sorted sequence so the same change set always produces the same calls —
retries and logs line up — and every member lands in exactly one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Iterable[T], *, limit: int) -> Iterator[list[T]]:
    """Consecutive chunks of at most ``limit`` items, in sorted order."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    ordered: Sequence[T] = sorted(items)  # type: ignore[type-var]
    for start in range(0, len(ordered), limit):
        yield list(ordered[start : start + limit])


def call_count(size: int, *, limit: int) -> int:
    """How many calls ``size`` changes need: the lower bound the benchmarks compare against."""
    return -(-size // limit)


def halves(items: Sequence[T]) -> tuple[Sequence[T], Sequence[T]]:
    """Split a rejected batch for bisection."""
    middle = len(items) // 2
    return items[:middle], items[middle:]
