"""NEG membership: batches of 500, paged listing, detach of what is gone, bisection (negsync/providers/gcp/endpoints.py)."""

from __future__ import annotations

import pytest

from negsync.core.model import TargetEndpoint
from negsync.providers.gcp import (
    GcpProvider,
)
from tests.emulators.compute import FakeCompute

from .conftest import (
    ATTACH,
    DETACH,
    KEY,
    LIST_EPS,
    PROJECT,
    ZONE_A,
    Driver,
    batch_sizes,
    bspec,
    eps,
    ips,
    name_of,
    place,
    ref,
    target,
)

pytestmark = pytest.mark.timeout(30)


def test_1200_endpoints_attach_in_3_calls_and_detach_in_3_calls(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(1200)
    driver.set(KEY, bspec(), endpoints)
    result = driver.run(timeout=25)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints)
    assert fake.count(ATTACH) == 3
    assert sorted(batch_sizes(fake, ATTACH)) == [200, 500, 500]
    assert result.count("registered") == 1200
    driver.set(KEY, bspec(), ())
    driver.run(timeout=25)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()
    assert fake.count(DETACH) == 3
    assert sorted(batch_sizes(fake, DETACH)) == [200, 500, 500]


def test_list_endpoints_pages_through_more_than_500(fake: FakeCompute, provider: GcpProvider) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    members = [TargetEndpoint(e.ip, e.port, e.node) for e in eps(700)]
    place(fake, members)
    provider.attach(ref(), members[:500])
    provider.attach(ref(), members[500:])
    fake.clear_calls()
    listed = provider.list_endpoints(ref())
    assert set(listed) == set(members)
    assert fake.count(LIST_EPS) == 2  # 500 + 200
    assert all(c.body == {"healthStatus": "SHOW"} for c in fake.calls if c.method_id == LIST_EPS)


def test_detach_of_an_already_gone_endpoint_detaches_the_rest(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    a, b = (TargetEndpoint(e.ip, e.port, e.node) for e in eps(2))
    place(fake, [a, b])
    provider.attach(ref(), [a, b])
    provider.detach(ref(), [b])
    provider.detach(ref(), [a, b])  # b is gone: a strict 400 for the batch, then only a
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()


@pytest.mark.parametrize("mode", ["request", "operation"])
def test_bisection_isolates_2_bad_endpoints_among_500(fake: FakeCompute, driver: Driver, mode: str) -> None:
    endpoints = eps(500)
    bad = [endpoints[17], endpoints[401]]
    fake.reject_endpoints(ips(tuple(bad)), mode=mode)
    driver.set(KEY, bspec(), endpoints)
    result = driver.run(timeout=25)
    assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints) - ips(tuple(bad))
    assert set(result.rejected) == {TargetEndpoint(e.ip, e.port, e.node) for e in bad}
    assert result.synced and result.count("registered") == 498
    # log2(500) ~ 9 levels, two bad leaves: far fewer than 500 single calls.
    assert fake.count(ATTACH) < 45
