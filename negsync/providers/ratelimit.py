"""Client-side rate limiting: a thread-safe token bucket and a per-operation table of them.

Hand-written (about 70 lines) rather than a library: the bucket must wait on negsync's injectable
:class:`~negsync.core.clock.Clock` (tests run it in virtual time) and give up before a deadline it
cannot meet; adapting a rate-limit package to both would take about as much code as the bucket.

Cloud APIs throttle per account and region, and every controller sharing that account pays for
one that bursts.  So, like the AWS Load Balancer Controller, negsync paces its own calls before
the server has to: each API operation gets a :class:`TokenBucket` (``rate`` tokens per second,
at most ``burst`` saved up), and a call takes one token before it is sent.  Server-side
throttling still happens — the SDK's retry mode handles that — but rarely.

Design points a reader must know:

* Time comes from an injected :class:`~negsync.core.clock.Clock`.  Waiting is done with
  ``clock.wait(condition, timeout)``, so a test drives a bucket with a
  :class:`~negsync.core.clock.VirtualClock` and asserts on counts, never on wall time.
* Buckets are not FIFO: when several threads wait, whichever wakes first after a refill wins.
  Over a reconcile that is fair enough, and it keeps the bucket a dozen lines.
* :class:`RateLimits` holds *throttle groups*, because that is how clouds count: AWS throttles
  ELBv2 per account and region with one bucket for all ``Describe*`` actions, one for
  RegisterTargets and DeregisterTargets together, and one for every action.  A group is keyed
  by an exact name, an :mod:`fnmatch` pattern or ``|``-joined alternatives; an operation pays one
  token into each group it matches (the AWS Load Balancer Controller's ``pkg/aws/throttle``
  works the same way: every matching limiter is waited on).

Nothing here is cloud-specific: other providers reuse it with their own operation names.
"""

from __future__ import annotations

import fnmatch
import math
import threading
from collections.abc import Iterator, Mapping

from negsync.core.clock import Clock, RealClock
from negsync.errors import ConfigError

__all__ = ["RateLimits", "TokenBucket", "parse_rate_limits"]


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    def __init__(self, rate: float, burst: int, *, clock: Clock | None = None) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive finite number, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock: Clock = clock or RealClock()
        self._condition = threading.Condition()
        self._tokens = float(burst)
        self._stamp = self._clock.now()
        self._granted = 0

    @property
    def granted(self) -> int:
        """Tokens handed out so far (for metrics and tests)."""
        with self._condition:
            return self._granted

    def tokens(self) -> float:
        """Tokens available now, refilled to the clock's current time."""
        with self._condition:
            self._refill()
            return self._tokens

    def _refill(self) -> None:
        # Called with the condition held.  Tokens accrue continuously and are capped at burst,
        # so an idle bucket allows exactly one burst, not an unbounded backlog.
        now = self._clock.now()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._stamp = now

    def try_acquire(self) -> bool:
        """Take a token if one is available now; never waits."""
        with self._condition:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                self._granted += 1
                return True
            return False

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a token, waiting for one up to ``timeout`` seconds (None: as long as it takes).

        Returns False without waiting when the next token cannot arrive before the deadline —
        sleeping first and failing afterwards would only waste the caller's time.
        """
        deadline = None if timeout is None else self._clock.now() + timeout
        with self._condition:
            while True:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    self._granted += 1
                    return True
                needed = (1.0 - self._tokens) / self.rate
                if deadline is not None:
                    remaining = deadline - self._clock.now()
                    if remaining < needed:
                        return False
                # Re-check after every wake-up: other threads may have taken the refill, and a
                # virtual clock's wait returns on any notification.
                self._clock.wait(self._condition, needed)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst})"


class RateLimits(Mapping[str, TokenBucket]):
    """Throttle groups: each configured key is one :class:`TokenBucket` shared by every operation it matches.

    A key is an exact operation name, an :mod:`fnmatch` pattern (``Describe*``), or several of those
    joined by ``|`` (``RegisterTargets|DeregisterTargets``).  An operation takes one token from
    *every* group it matches, as the LB Controller's throttler waits on every matching limiter:
    with ``{"Describe*": ..., "*": ...}`` a DescribeTargetHealth call pays into the Describe group
    and into the account-wide one.  Operations that match no key are not limited.
    """

    def __init__(self, limits: Mapping[str, tuple[float, int]], *, clock: Clock | None = None) -> None:
        for key, (rate, burst) in limits.items():
            # Fail at start-up, not on the first call that happens to use the operation.
            TokenBucket(rate, burst, clock=RealClock())
            if not key or any(not part.strip() for part in key.split("|")):
                raise ValueError(f"an operation name or pattern must not be empty, got {key!r}")
        self.limits: dict[str, tuple[float, int]] = dict(limits)
        self._clock: Clock = clock or RealClock()
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    @staticmethod
    def matches(key: str, operation: str) -> bool:
        """Whether the group ``key`` covers ``operation``."""
        return any(fnmatch.fnmatchcase(operation, part.strip()) for part in key.split("|"))

    def groups_for(self, operation: str) -> list[str]:
        """The keys whose buckets ``operation`` pays into, most specific (fewest matches) first."""
        return sorted((k for k in self.limits if self.matches(k, operation)), key=lambda k: ("*" in k, -len(k), k))

    def limit_for(self, operation: str) -> tuple[float, int] | None:
        """The tightest rate among the groups ``operation`` pays into (None: not limited)."""
        groups = self.groups_for(operation)
        return min((self.limits[k] for k in groups), default=None)

    def group(self, key: str) -> TokenBucket:
        """The bucket of one configured key (created on first use)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                rate, burst = self.limits[key]
                bucket = self._buckets[key] = TokenBucket(rate, burst, clock=self._clock)
            return bucket

    def buckets_for(self, operation: str) -> list[TokenBucket]:
        return [self.group(key) for key in self.groups_for(operation)]

    def acquire(self, operation: str, timeout: float | None = None) -> bool:
        """Take a token for ``operation`` from each of its groups; True at once for an unlimited one.

        Groups are taken in a fixed order (specific first), so two callers never hold each
        other's tokens while waiting; a token taken before a later group times out is spent.
        """
        deadline = None if timeout is None else self._clock.now() + timeout
        for bucket in self.buckets_for(operation):
            remaining = None if deadline is None else max(0.0, deadline - self._clock.now())
            if not bucket.acquire(remaining):
                return False
        return True

    # Mapping interface: configured key → its bucket (metrics, tests).
    def __getitem__(self, key: str) -> TokenBucket:
        if key not in self.limits:
            raise KeyError(key)
        return self.group(key)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.limits))

    def __len__(self) -> int:
        return len(self.limits)


def parse_rate_limits(text: str, *, field: str = "rate-limits") -> dict[str, tuple[float, int]]:
    """Parse a flag value such as ``RegisterTargets|DeregisterTargets=3:10,Describe*=5:20``.

    Errors are :class:`~negsync.errors.ConfigError` naming ``field``, so a CLI prints one line.
    """
    limits: dict[str, tuple[float, int]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        rate_text, colon, burst_text = value.partition(":")
        try:
            if not sep or not colon or not name.strip():
                raise ValueError
            rate, burst = float(rate_text), int(burst_text)
            TokenBucket(rate, burst, clock=RealClock())
        except ValueError:
            raise ConfigError(
                field, f"expected OPERATION=RATE:BURST with RATE > 0 and BURST >= 1, got {item!r}"
            ) from None
        limits[name.strip()] = (rate, burst)
    return limits
