"""negsync.core.backoff: the one back-off rule (client-go's wait.Backoff) and the Retry-After parser."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from negsync.core.backoff import Backoff, parse_retry_after

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC).timestamp()


# ------------------------------------------------------------------------------ Backoff
def test_the_ceiling_doubles_from_the_base_and_stops_at_the_cap() -> None:
    backoff = Backoff(base=5.0, cap=600.0)
    assert [backoff.ceiling(n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    # The work queue's rule (client-go ItemExponentialFailureRateLimiter): base × 2^failures, capped.
    backoff = Backoff(base=0.005, cap=1000.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [0.005, 0.01, 0.02, 0.04]
    assert backoff.delay(40) == 1000.0


@pytest.mark.parametrize("jitter", [0.5, 1.0])
def test_jitter_only_adds_up_to_jitter_times_the_ceiling(jitter: float) -> None:
    backoff = Backoff(base=1.0, cap=30.0, jitter=jitter)
    rng = random.Random(7)
    for failures in range(1, 12):
        ceiling = backoff.ceiling(failures)
        delays = [backoff.delay(failures, rng=rng) for _ in range(200)]
        assert all(ceiling <= d <= ceiling * (1 + jitter) for d in delays), failures
        # spread over the range, not stuck at one end
        assert min(delays) < ceiling * (1 + 0.2 * jitter) and max(delays) > ceiling * (1 + 0.8 * jitter)


def test_half_base_and_half_cap_keep_the_cap_a_hard_ceiling() -> None:
    # The watcher's configuration: uniform in [d/2, d] with d = min(30, 0.5 × 2^(n-1)).
    backoff = Backoff(base=0.5 / 2, cap=30.0 / 2, jitter=1.0)
    rng = random.Random(3)
    for failures in range(1, 15):
        d = min(30.0, 0.5 * 2 ** (failures - 1))
        assert all(d / 2 <= backoff.delay(failures, rng=rng) <= d for _ in range(100))


def test_thousands_of_failures_still_give_the_cap() -> None:
    # A watch failing every few seconds through a long outage: 2.0 ** 5000 overflows a float.
    assert Backoff(base=0.5, cap=30.0).ceiling(5000) == 30.0
    assert Backoff(base=0.25, cap=15.0, jitter=1.0).delay(5000, rng=random.Random(1)) <= 30.0
    assert Backoff(base=1.0, cap=60.0, factor=3.0).ceiling(10_000) == 60.0


def test_the_same_seed_gives_the_same_spread() -> None:
    backoff = Backoff(base=5.0, cap=600.0, jitter=1.0)
    first = [backoff.delay(n, rng=random.Random(1)) for n in range(1, 6)]
    assert first == [backoff.delay(n, rng=random.Random(1)) for n in range(1, 6)]


@pytest.mark.parametrize("kwargs", [dict(base=-1.0, cap=1.0), dict(base=1.0, cap=-1.0),
                                    dict(base=1.0, cap=2.0, factor=0.5), dict(base=1.0, cap=2.0, jitter=-0.1)])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_failures_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff(base=1.0, cap=2.0).ceiling(0)


# ------------------------------------------------------------------------------ Retry-After
@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("1.5", 1.5)])
def test_delay_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [
    "Tue, 01 Dec 2026 12:00:30 GMT",      # IMF-fixdate, the preferred form (RFC 9110 §5.6.7)
    "Tuesday, 01-Dec-26 12:00:30 GMT",    # obsolete RFC 850 form
    "Tue Dec  1 12:00:30 2026",           # obsolete asctime form: no zone, but GMT all the same
])
def test_http_dates_count_from_now(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)


def test_a_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Tue, 01 Dec 2026 11:59:00 GMT", now=NOW) == 0.0


def test_a_date_counts_from_the_wall_clock_by_default() -> None:
    assert parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT") == 0.0
    assert parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT") > 1e9  # type: ignore[operator]


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "+5", "1e3", "inf", "nan", "-1.5",
                                   "Tue, 32 Dec 2026 12:00:00 GMT", "12:00:30"])
def test_garbage_and_negative_values_say_nothing(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None
