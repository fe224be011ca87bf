"""Chunking a change set to a provider's per-call limit (NEG 500, ELBv2 200), and bisecting rejected chunks.

Chunks are cut from a sorted sequence so the same change set always produces the same calls —
retries and logs line up — and every member lands in exactly one chunk.  One bad member fails a
whole call (HTTP 400 for the batch), so :func:`send_bisecting` halves a rejected chunk until each
bad member is alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from negsync.errors import RejectedError

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


def send_bisecting(
    members: Sequence[T], *, limit: int, call: Callable[[list[T]], None], isolate: Callable[[T, str], None]
) -> list[T]:
    """Send ``members`` in chunks of ``limit``; returns the members that went through.

    A chunk the API rejects (:class:`~negsync.errors.RejectedError`) is bisected until each bad
    member is alone, and that member is handed to ``isolate`` with the reason; a rejection that
    names its bad members (``endpoints``) isolates those at once and resends the rest.  Any other
    error propagates: what went through before it is lost to the caller, who lists again.
    """
    done: list[T] = []
    pending = [list(batch) for batch in chunks(members, limit=limit)]
    while pending:
        batch = pending.pop(0)
        try:
            call(batch)
        except RejectedError as exc:
            known_bad = set(getattr(exc, "endpoints", None) or ()) & set(batch)
            if known_bad:
                for member in [m for m in batch if m in known_bad]:
                    isolate(member, str(exc))
                rest = [m for m in batch if m not in known_bad]
                if rest:
                    pending.insert(0, rest)
            elif len(batch) == 1:
                isolate(batch[0], str(exc))
            else:
                left, right = halves(batch)
                pending[:0] = [list(left), list(right)]
            continue
        done.extend(batch)
    return done
