"""How long to wait before trying again: negsync's exponential back-off and a server's ``Retry-After``.

One rule for every retry loop — the reconciler per target, the work queue per key, a watch after a
broken stream — the one of client-go's ``wait.Backoff`` (k8s.io/apimachinery/pkg/util/wait,
``Backoff.Step`` and ``Jitter``): after the n-th consecutive failure the wait is

    d = min(cap, base × factor^(n-1)),  then  d + uniform(0, jitter × d)

The cap bounds ``d`` before the jitter, as in client-go.  Jitter only *adds*, so ``d`` is a floor:
after an outage, the keys that failed together come back spread over ``[d, (1 + jitter)·d]``
instead of in lock-step against an API that is just recovering.  The callers:

* the reconciler (per target, after a failed cloud call): jitter 1, so ``[d, 2d]``; it then takes
  the server's ``Retry-After`` if longer, and clamps the sum to its cap;
* a watch (after a dropped stream or an API error): jitter 1 on *half* the base and *half* the cap,
  so the wait is uniform in ``[d/2, d]`` and its cap is a hard ceiling, which the liveness
  heartbeat relies on (``Watcher.step_deadline``);
* the reconciler's isolation of one endpoint the cloud rejected (5 min doubling to 1 h): no
  jitter, since a member is isolated alone and there is no herd to spread;
* the work queue (``add_rate_limited``): no jitter, as client-go's workqueue
  ``ItemExponentialFailureRateLimiter`` (``base × 2^failures``, capped): its delays are
  milliseconds, and the cloud retries under it are already spread by the reconciler's back-off.

:func:`parse_retry_after` reads the header of RFC 9110 §10.2.3 in both of its forms (delay-seconds
and HTTP-date), for every layer that talks HTTP (the GCP and AWS providers, the kube watcher).
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

_RANDOM = random.Random()


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """Exponential back-off with client-go's jitter rule (see the module docstring)."""

    base: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError(f"back-off base and cap must not be negative (base={self.base}, cap={self.cap})")
        if self.factor < 1:
            raise ValueError(f"back-off factor must be at least 1 (factor={self.factor})")
        if self.jitter < 0:
            raise ValueError(f"back-off jitter must not be negative (jitter={self.jitter})")

    def ceiling(self, failures: int) -> float:
        """The un-jittered wait after ``failures`` consecutive failures (1 = the first)."""
        if failures < 1:
            raise ValueError(f"failures counts from 1 (got {failures})")
        try:
            grown = self.base * self.factor ** (failures - 1)
        except OverflowError:  # a long outage: thousands of failures must still give the cap
            grown = math.inf
        return min(self.cap, grown)

    def delay(self, failures: int, *, rng: random.Random | None = None) -> float:
        """The wait after ``failures`` consecutive failures: ``ceiling`` plus up to ``jitter`` × itself.

        ``rng``: the caller's generator (seeded in tests for reproducible spreads).
        """
        ceiling = self.ceiling(failures)
        if not self.jitter:
            return ceiling
        return ceiling + (rng or _RANDOM).uniform(0, self.jitter * ceiling)


# RFC 9110 §10.2.3: delay-seconds = 1*DIGIT.  A decimal fraction is accepted as well (servers
# send "1.5" in the wild, and negsync always read it as seconds); a sign, an exponent, "inf" or
# "nan" is not a delay: a watcher told to sleep "inf" would never wake up.
_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or None when it says nothing usable.

    RFC 9110 §10.2.3: either delay-seconds (``"120"``) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, and the obsolete RFC 850 and asctime forms a recipient
    must accept, §5.6.7), counted from ``now`` (Unix seconds; the wall clock by default, since the
    date is the server's wall clock).  A date already past means "now": 0.0.  Empty, negative,
    malformed or non-finite values give None, and the caller's own back-off applies.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # An HTTP-date is always UTC (§5.6.7); asctime and "-0000" carry no zone and parse naive.
    seconds = when.timestamp() if when.tzinfo is not None else when.replace(tzinfo=UTC).timestamp()
    return max(0.0, seconds - (time.time() if now is None else now))
