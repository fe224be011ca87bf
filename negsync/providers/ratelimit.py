"""Client-side rate limiting: a thread-safe token bucket and a per-operation table of them.

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
* :class:`RateLimits` maps *operation names* to buckets.  Limits are configured by exact name or
  by an :mod:`fnmatch` pattern (``Describe*``); each operation still gets a bucket of its own,
  so ``DescribeTargetHealth`` and ``DescribeTargetGroups`` do not starve each other.

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
    """Operation name → :class:`TokenBucket`, created on first use from the configured limits.

    ``limits`` maps an exact operation name or an :mod:`fnmatch` pattern to ``(rate, burst)``.
    An exact name wins over a pattern; among patterns the longest (most specific) wins.
    Operations that match nothing are not limited: :meth:`bucket` returns None for them.
    """

    def __init__(self, limits: Mapping[str, tuple[float, int]], *, clock: Clock | None = None) -> None:
        for key, (rate, burst) in limits.items():
            # Fail at start-up, not on the first call that happens to use the operation.
            TokenBucket(rate, burst, clock=RealClock())
            if not key:
                raise ValueError("an operation name or pattern must not be empty")
        self.limits: dict[str, tuple[float, int]] = dict(limits)
        self._clock: Clock = clock or RealClock()
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def limit_for(self, operation: str) -> tuple[float, int] | None:
        if operation in self.limits:
            return self.limits[operation]
        patterns = [p for p in self.limits if fnmatch.fnmatchcase(operation, p)]
        if not patterns:
            return None
        return self.limits[max(patterns, key=len)]

    def bucket(self, operation: str) -> TokenBucket | None:
        with self._lock:
            if operation in self._buckets:
                return self._buckets[operation]
            limit = self.limit_for(operation)
            if limit is None:
                return None
            bucket = TokenBucket(limit[0], limit[1], clock=self._clock)
            self._buckets[operation] = bucket
            return bucket

    def acquire(self, operation: str, timeout: float | None = None) -> bool:
        """Take a token for ``operation``; True at once for an unlimited operation."""
        bucket = self.bucket(operation)
        return True if bucket is None else bucket.acquire(timeout)

    # Mapping interface over the buckets created so far (metrics, tests).
    def __getitem__(self, operation: str) -> TokenBucket:
        with self._lock:
            return self._buckets[operation]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._buckets))

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)


def parse_rate_limits(text: str, *, field: str = "rate-limits") -> dict[str, tuple[float, int]]:
    """Parse a flag value such as ``RegisterTargets=4:20,Describe*=50:200``.

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
