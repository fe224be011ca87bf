"""The Compute API client: retries, pacing, per-thread http objects, operation waits, paging (negsync/providers/gcp/client.py)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from negsync.core.model import TargetEndpoint
from negsync.errors import (
    ProviderError,
    TransientError,
)
from negsync.providers.gcp import (
    GcpProvider,
    parse_location,
)
from tests.emulators.compute import FakeCompute

from .conftest import (
    ATTACH,
    KEY,
    LIST_EPS,
    PROJECT,
    ZONE_A,
    ZONE_B,
    ZONE_C,
    Driver,
    SkipSleepClock,
    bspec,
    eps,
    ips,
    name_of,
    place,
    ref,
    target,
)

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("status", "reason"), [(429, "rateLimitExceeded"), (503, "backendError"), (403, "rateLimitExceeded")]
)
def test_the_client_retries_throttling_and_5xx(
    fake: FakeCompute, provider: GcpProvider, clock: SkipSleepClock, status: int, reason: str
) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    place(fake, [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    fake.inject(ATTACH, status, count=2, reason=reason)
    provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    assert fake.count(ATTACH, status) == 2 and fake.count(ATTACH, 200) == 1
    assert len(clock.sleeps) == 2 and clock.sleeps[1] <= 4.0  # rand() * 2**n, through our clock
    # The retries reused one requestId, so a lost response cannot apply the change twice.
    ids = {c.query["requestId"][0] for c in fake.calls if c.method_id == ATTACH}
    assert len(ids) == 1
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_retries_exhausted_become_transient_and_the_reconciler_converges(
    fake: FakeCompute, driver: Driver, clock: SkipSleepClock
) -> None:
    fake.inject(ATTACH, 429, count=3)  # num_retries=2: the first call fails for good
    fake.inject(ATTACH, 503, count=3)  # and so does the next one
    driver.set(KEY, bspec(), eps(5))
    result = driver.run(timeout=20)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(eps(5))
    assert fake.count(ATTACH, 429) == 3 and fake.count(ATTACH, 503) == 3
    assert result.synced


def test_an_operation_past_its_deadline_is_transient(
    fake: FakeCompute, make: Callable[..., GcpProvider]
) -> None:
    provider = make(operation_timeout=0.3)
    provider.ensure_target(ref(), binding=KEY, spec=target())
    place(fake, [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    fake.operation_delay = math.inf
    fake.wait_timeout = 0.1
    started = time.monotonic()
    with pytest.raises(TransientError, match="not done after"):
        provider.attach(ref(), [TargetEndpoint("10.0.0.1", 8080, "vm-1")])
    assert time.monotonic() - started < 2.0
    assert fake.count("compute.zoneOperations.wait") >= 2
    fake.complete_operations()
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}


def test_the_provider_waits_again_when_zone_operations_wait_returns_early(fake: FakeCompute,
                                                                          provider: GcpProvider) -> None:
    fake.wait_returns_early = True  # the reference: wait may return before the operation is DONE
    fake.operation_delay = 0.2
    provider.ensure_target(ref(), binding=KEY, spec=target())
    member = [TargetEndpoint("10.0.0.1", 8080, "vm-1")]
    place(fake, member)
    provider.attach(ref(), member)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("10.0.0.1", 8080)}
    assert fake.count("compute.zoneOperations.wait") >= 2


def test_the_rate_limit_paces_every_attempt(fake: FakeCompute, make: Callable[..., GcpProvider]) -> None:
    make().ensure_target(ref(), binding=KEY, spec=target())
    provider = make(rate_limit=(20.0, 2))
    fake.clear_calls()
    fake.inject(LIST_EPS, 429, count=1)  # the client's retry takes a token too
    started = time.monotonic()
    for _ in range(7):
        provider.list_endpoints(ref())
    elapsed = time.monotonic() - started
    assert fake.count(None) == 8 == provider.bucket(PROJECT).granted
    assert elapsed >= (8 - 2) / 20 - 0.02  # burst 2, then 20 per second


def test_threads_do_not_share_http_objects(provider: GcpProvider) -> None:
    seen: list[object] = []  # the objects themselves (thread idents and ids can be reused)
    lock = threading.Lock()
    barrier = threading.Barrier(4)  # all four threads alive at once

    def grab() -> None:
        http = provider.client.http(PROJECT)
        with lock:
            seen.append(http)
        barrier.wait(5)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(h) for h in seen}) == 4
    assert provider.client.http(PROJECT) is provider.client.http(PROJECT)


def test_concurrent_calls_use_one_http_object_per_thread(fake: FakeCompute, provider: GcpProvider) -> None:
    refs = [ref(z) for z in (ZONE_A, ZONE_B, ZONE_C)]
    for r in refs:
        provider.ensure_target(r, binding=KEY, spec=target())

    for i in range(24):
        place(fake, [TargetEndpoint(f"10.1.{i}.1", 80, f"vm-{i % 3}")], zone=parse_location(refs[i % 3])[1])

    def work(i: int) -> None:
        r = refs[i % 3]
        provider.attach(r, [TargetEndpoint(f"10.1.{i}.1", 80, f"vm-{i % 3}")])
        assert TargetEndpoint(f"10.1.{i}.1", 80, f"vm-{i % 3}") in provider.list_endpoints(r)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(work, range(24)))
    assert sum(len(fake.endpoints(PROJECT, z, name_of())) for z in (ZONE_A, ZONE_B, ZONE_C)) == 24


def test_a_401_with_credentials_that_cannot_refresh_is_a_provider_error_not_a_crash(
        make: Callable[..., GcpProvider]) -> None:
    """Seen in the walkthrough: anonymous credentials against an API that wants a token raised
    google.auth's InvalidOperation out of the reconcile as a traceback."""
    import google.auth.credentials

    anonymous = make(credentials=google.auth.credentials.AnonymousCredentials())
    with pytest.raises(ProviderError, match="credentials"):
        anonymous.existing_targets(binding=KEY, spec=target())


def test_pages_follow_next_page_token_with_the_librarys_list_next(fake: FakeCompute, provider: GcpProvider) -> None:
    for i in range(5):
        fake.add_neg(PROJECT, ZONE_A, f"neg-{i}")
    fake.clear_calls()
    pages = list(provider.client.pages(PROJECT, provider.client.negs, "list", what="listing",
                                       project=PROJECT, zone=ZONE_A, maxResults=2))
    assert [n["name"] for page in pages for n in page.get("items", ())] == [f"neg-{i}" for i in range(5)]
    assert [len(page["items"]) for page in pages] == [2, 2, 1] and "nextPageToken" not in pages[-1]
    calls = [c for c in fake.calls if c.method_id == "compute.networkEndpointGroups.list"]
    assert len(calls) == 3 and "pageToken" not in calls[0].query
    assert [c.query["pageToken"][0] for c in calls[1:]] == [p["nextPageToken"] for p in pages[:-1]]
    # Every page is an HTTP attempt of its own, paced by the project's bucket.
    assert provider.bucket(PROJECT).granted >= 3
