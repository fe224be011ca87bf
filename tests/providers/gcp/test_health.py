"""Members and health read as GKE reads them (negsync/providers/gcp/health.py), through the provider and the gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from negsync.core.model import Health, TargetEndpoint
from negsync.providers.gcp import (
    GcpProvider,
    health_from_item,
)
from tests.emulators.compute import FakeCompute

from .conftest import (
    ATTACH,
    DETACH,
    KEY,
    PROJECT,
    ZONE_A,
    Driver,
    bspec,
    eps,
    ips,
    name_of,
    new_project,
    place,
    ref,
    target,
)

pytestmark = pytest.mark.timeout(30)


def test_health_from_item() -> None:
    def item(*states: str) -> dict[str, Any]:
        return {"healths": [{"healthState": s, "backendService": {"backendService": f"bs-{i}"}}
                            for i, s in enumerate(states)]}

    assert health_from_item({}, health_checked=False) is Health.NO_HEALTH_CHECK
    assert health_from_item({}, health_checked=True) is Health.INITIAL
    assert health_from_item(item("HEALTHY"), health_checked=False) is Health.HEALTHY
    assert health_from_item(item("UNHEALTHY", "HEALTHY"), health_checked=False) is Health.HEALTHY
    # HEALTHY in any backend service passes the gate (ingress-gce getHealthyBackendService).
    assert health_from_item(item("HEALTHY", "DRAINING"), health_checked=False) is Health.HEALTHY
    assert health_from_item(item("UNHEALTHY", "DRAINING"), health_checked=False) is Health.DRAINING
    assert health_from_item(item("UNHEALTHY"), health_checked=False) is Health.UNHEALTHY
    assert health_from_item(item("UNKNOWN"), health_checked=False) is Health.UNKNOWN


def test_health_feeds_the_readiness_gate(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(2)
    members = {TargetEndpoint(e.ip, e.port, e.node) for e in endpoints}
    driver.set(KEY, bspec(gate=True), endpoints)
    # No backend service, no health check: the gate passes with reason NoHealthCheck.
    result = driver.run(until=lambda r: r.synced and set(r.health.values()) == {Health.NO_HEALTH_CHECK})
    assert set(result.health) == members
    fake.set_backend(PROJECT, ZONE_A, name_of())
    driver.reconciler.invalidate()  # all members passed the gate, so the reconciler stopped polling
    result = driver.run(until=lambda r: set(r.health.values()) == {Health.UNKNOWN})
    assert result.count("healthy") == 0
    for e in endpoints:
        fake.set_health(PROJECT, ZONE_A, name_of(), e.ip, e.port, "HEALTHY")
    result = driver.run(until=lambda r: set(r.health.values()) == {Health.HEALTHY})
    assert result.count("healthy") == 2
    fake.set_health(PROJECT, ZONE_A, name_of(), endpoints[0].ip, endpoints[0].port, "UNHEALTHY")
    driver.reconciler.invalidate()
    assert driver.reconciler.reconcile(KEY, driver.desired.get(KEY)).health[min(members)] is Health.UNHEALTHY


def test_unprobed_endpoints_of_a_health_checked_neg_do_not_pass_the_gate(
    make: Callable[..., GcpProvider],
) -> None:
    with FakeCompute(default_health=None) as fake:
        new_project(fake)
        provider = make(compute_endpoint=fake.api_endpoint, credentials=fake.credentials())
        provider.ensure_target(ref(), binding=KEY, spec=target())
        a, b = (TargetEndpoint(e.ip, e.port, e.node) for e in eps(2))
        place(fake, [a, b])
        provider.attach(ref(), [a, b])
        fake.set_backend(PROJECT, ZONE_A, name_of())
        assert provider.list_endpoints(ref()) == {a: Health.NO_HEALTH_CHECK, b: Health.NO_HEALTH_CHECK}
        fake.set_health(PROJECT, ZONE_A, name_of(), a.ip, a.port, "HEALTHY")
        assert provider.list_endpoints(ref()) == {a: Health.HEALTHY, b: Health.INITIAL}
        # The kube layer can say a health-checked backend uses the NEG before any probe reports.
        known = make(compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                     health_check_known=lambda r: True)
        fake.clear_backend(PROJECT, ZONE_A, name_of())
        assert set(known.list_endpoints(ref()).values()) == {Health.INITIAL}


def test_healthy_in_any_backend_service_passes_and_forwarding_rule_entries_do_not_count(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    provider.ensure_target(ref(), binding=KEY, spec=target())
    a, b = (TargetEndpoint(e.ip, e.port, e.node) for e in eps(2))
    place(fake, [a, b])
    provider.attach(ref(), [a, b])
    # Only a passthrough forwarding rule reports health: not a backend service, so not health-checked.
    fake.add_forwarding_rule(PROJECT, ZONE_A, name_of(), "ilb")
    fake.set_health(PROJECT, ZONE_A, name_of(), a.ip, a.port, "HEALTHY")
    assert provider.list_endpoints(ref()) == {a: Health.NO_HEALTH_CHECK, b: Health.NO_HEALTH_CHECK}
    # Two backend services: HEALTHY in one of them is enough, whatever the other says.
    fake.set_backend(PROJECT, ZONE_A, name_of(), backend_service="external")
    fake.set_backend(PROJECT, ZONE_A, name_of(), backend_service="internal")
    fake.set_health(PROJECT, ZONE_A, name_of(), a.ip, a.port, "DRAINING", backend_service="internal")
    fake.set_health(PROJECT, ZONE_A, name_of(), b.ip, b.port, "UNHEALTHY")
    listed = provider.list_endpoints(ref())
    assert listed == {a: Health.HEALTHY, b: Health.UNHEALTHY}


def test_a_draining_member_is_a_member_and_is_not_attached_again(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(2)
    driver.set(KEY, bspec(), endpoints)
    driver.run(until=lambda r: r.synced and r.count("registered") == 2)
    fake.set_backend(PROJECT, ZONE_A, name_of())
    fake.set_health(PROJECT, ZONE_A, name_of(), endpoints[0].ip, endpoints[0].port, "DRAINING")
    attaches = fake.count(ATTACH)
    driver.reconciler.invalidate()
    for _ in range(3):
        result = driver.run()
    assert fake.count(ATTACH) == attaches  # ingress-gce: every listed endpoint is present
    assert result.count("draining") == 1


def test_a_detached_endpoint_draining_in_the_list_is_not_detached_again(fake: FakeCompute, driver: Driver) -> None:
    endpoints = eps(3)
    driver.set(KEY, bspec(), endpoints)
    driver.run(until=lambda r: r.synced and r.count("registered") == 3)
    fake.set_backend(PROJECT, ZONE_A, name_of())
    driver.set(KEY, bspec(), endpoints[1:])
    driver.run(until=lambda r: r.synced and fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints[1:]))
    detaches = fake.count(DETACH)
    driver.reconciler.invalidate()
    result = driver.run()
    assert result.synced and fake.count(DETACH) == detaches and fake.count(DETACH, 400) == 0


def test_members_with_health_reads_every_listed_item() -> None:
    from negsync.providers.gcp.health import members_with_health

    asked: list[bool] = []

    def known() -> bool:
        asked.append(True)
        return True

    items = [
        {"networkEndpoint": {"ipAddress": "10.0.0.1", "port": 80,
                             "instance": f"projects/{PROJECT}/zones/{ZONE_A}/instances/vm-1"}},
        {"networkEndpoint": {"ipAddress": "10.0.0.2", "port": 80, "instance": "vm-2"}},
        {"networkEndpoint": {"port": 80}},  # no IP: not a member negsync can name
    ]
    assert members_with_health(items, health_check_known=known) == {
        TargetEndpoint("10.0.0.1", 80, "vm-1"): Health.INITIAL,
        TargetEndpoint("10.0.0.2", 80, "vm-2"): Health.INITIAL,
    }
    assert asked == [True]
    # One endpoint reporting a backend service's health proves the NEG is checked: no need to ask.
    items[1]["healths"] = [{"healthState": "HEALTHY", "backendService": {"backendService": "bs"}}]
    asked.clear()
    listed = members_with_health(items, health_check_known=known)
    assert listed[TargetEndpoint("10.0.0.2", 80, "vm-2")] is Health.HEALTHY
    assert listed[TargetEndpoint("10.0.0.1", 80, "vm-1")] is Health.INITIAL and asked == []
    assert set(members_with_health(items[:1]).values()) == {Health.NO_HEALTH_CHECK}
