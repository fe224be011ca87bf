"""GcpProvider: endpoints to NEGs (zones, subnetworks, instances) and its wiring (negsync/providers/gcp/provider.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from negsync.core.clock import RealClock
from negsync.core.model import Endpoint, TargetEndpoint
from negsync.core.reconciling import Reconciler
from negsync.errors import (
    ConfigError,
)
from negsync.providers.gcp import (
    MAX_NAME_LENGTH,
    GcpProvider,
    neg_name,
)
from tests.emulators.compute import FakeCompute

from .conftest import (
    ATTACH,
    KEY,
    PROJECT,
    RFC1035,
    UID,
    ZONE_A,
    Driver,
    bspec,
    eps,
    ips,
    name_of,
    ref,
    target,
)

pytestmark = pytest.mark.timeout(30)


def test_constructor_validates(make: Callable[..., GcpProvider]) -> None:
    with pytest.raises(ConfigError):
        make(cluster_uid="")
    with pytest.raises(ConfigError):
        make(rate_limit=(0.0, 1))
    with pytest.raises(ConfigError):
        make(num_retries=-1)


def test_instance_comes_from_the_provider_id_lookup(
    fake: FakeCompute, make: Callable[..., GcpProvider]
) -> None:
    provider = make(instance_for_node=lambda node: {"node-1": "gke-pool-1-abcd"}.get(node))
    groups = provider.targets_for(
        binding=KEY,
        spec=target(),
        endpoints=[
            Endpoint("10.0.0.1", 80, zone=ZONE_A, node="node-1"),
            Endpoint("10.0.0.2", 80, zone=ZONE_A, node="unknown-node"),  # no instance: skipped
            Endpoint("10.0.0.3", 80, zone="", node="node-1"),  # no zone: skipped
        ],
    )
    assert groups == {ref(ZONE_A): {TargetEndpoint("10.0.0.1", 80, "gke-pool-1-abcd")}}


def test_nodes_of_a_non_default_subnetwork_get_a_neg_of_their_own(fake: FakeCompute) -> None:
    # An auto-mode-like network: "default" subnetwork, plus the node pool's own "pool-b".
    fake.add_subnetwork(PROJECT, "us-central1", "default", cidr="172.16.0.0/16")
    fake.add_subnetwork(PROJECT, "us-central1", "pool-b", cidr="192.168.0.0/16")
    fake.add_instance(PROJECT, ZONE_A, "n-default", subnetwork="default", alias_ranges=["172.16.1.0/24"])
    fake.add_instance(PROJECT, ZONE_A, "n-pool-b", subnetwork="pool-b", alias_ranges=["192.168.1.0/24"])
    subnets = {"n-default": "", "n-pool-b": "pool-b"}
    provider = GcpProvider(cluster_uid=UID, compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                           num_retries=0, operation_timeout=5.0, rate_limit=(1000.0, 1000), http_timeout=5.0,
                           subnet_for_node=subnets.get)
    driver = Driver(provider)  # the VMs are set up above
    try:
        endpoints = (Endpoint("172.16.1.5", 8080, ZONE_A, "n-default"), Endpoint("192.168.1.5", 8080, ZONE_A, "n-pool-b"))
        driver.set(KEY, bspec(subnetwork=""), endpoints)
        result = driver.run(until=lambda r: r.synced and r.count("registered") == 2)
        assert not result.rejected
        other = neg_name(prefix="k8s", cluster_uid=UID, binding=KEY, subnet="pool-b")
        assert other != name_of() and len(other) <= MAX_NAME_LENGTH and RFC1035.match(other)
        assert fake.endpoints(PROJECT, ZONE_A, name_of()) == {("172.16.1.5", 8080)}
        assert fake.endpoints(PROJECT, ZONE_A, other) == {("192.168.1.5", 8080)}
        assert fake.neg(PROJECT, ZONE_A, other)["subnetwork"].endswith("/subnetworks/pool-b")
        # After a restart both NEGs are found again (every name of the binding ends with its hash).
        fresh = GcpProvider(cluster_uid=UID, compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                            num_retries=0, operation_timeout=5.0, rate_limit=(1000.0, 1000), http_timeout=5.0)
        assert {r.name for r in fresh.existing_targets(binding=KEY, spec=target(subnetwork=""))} == {name_of(), other}
    finally:
        driver.close()


def test_the_controller_wires_node_subnets_into_the_provider(fake: FakeCompute) -> None:
    import argparse

    from negsync.app import NodeInstances, Settings, add_arguments, build_provider
    from negsync.kube.caches import Caches, decode_node

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--provider", "gcp", "--gcp-compute-endpoint", fake.api_endpoint, "--gcp-anonymous",
                              "--cluster-uid", UID])
    instances = NodeInstances()
    provider = build_provider(Settings.from_args(args), api_client=None, clock=RealClock(), instances=instances)
    assert isinstance(provider, GcpProvider)
    instances.caches = Caches()
    labels = {"topology.kubernetes.io/zone": ZONE_A, "cloud.google.com/gke-node-pool-subnet": "pool-b"}
    instances.caches.nodes.put(("", "n-b"), decode_node(
        {"metadata": {"name": "n-b", "labels": labels}, "spec": {"providerID": f"gce://{PROJECT}/{ZONE_A}/vm-b"}}))
    endpoint = Endpoint("192.168.1.5", 8080, ZONE_A, "n-b")
    assert provider.subnet_of(endpoint, target(subnetwork="")) == "pool-b"
    assert provider.subnet_of(endpoint, target(subnetwork="pool-b")) == ""  # pinned: the binding's own NEG
    groups = provider.targets_for(binding=KEY, spec=target(subnetwork=""), endpoints=[endpoint])
    assert [r.name for r in groups] == [neg_name(prefix="k8s", cluster_uid=UID, binding=KEY, subnet="pool-b")]
    assert groups[next(iter(groups))] == {TargetEndpoint("192.168.1.5", 8080, "vm-b")}


def test_endpoints_of_a_stopped_vm_are_reattached_within_one_member_listing_period(fake: FakeCompute) -> None:
    from negsync.core.clock import VirtualClock

    clock = VirtualClock(start=1000.0)
    provider = GcpProvider(cluster_uid=UID, compute_endpoint=fake.api_endpoint, credentials=fake.credentials(),
                           num_retries=0, operation_timeout=5.0, rate_limit=(1000.0, 1000), http_timeout=5.0)
    driver = Driver(provider, fake)
    driver.reconciler = Reconciler(provider=provider,
                                   enqueue=lambda key, delay, priority: None, clock=clock, seed=1)
    try:
        endpoints = eps(3, node="vm-preemptible")
        driver.set(KEY, bspec(), endpoints)
        result = driver.run(until=lambda r: r.synced and r.count("registered") == 3)
        assert result.requeue_after is not None and result.requeue_after <= 60.0  # the default period
        # Preempted: GCE drops the VM's endpoints; it comes back with the same name and pods.
        fake.stop_instance(PROJECT, ZONE_A, "vm-preemptible")
        fake.start_instance(PROJECT, ZONE_A, "vm-preemptible")
        assert fake.endpoints(PROJECT, ZONE_A, name_of()) == set()
        attaches = fake.count(ATTACH)
        clock.advance(59.0)
        driver.reconciler.reconcile(KEY, driver.desired.get(KEY))
        assert fake.count(ATTACH) == attaches  # the member list is still fresh
        clock.advance(2.0)
        driver.run(until=lambda r: r.synced and r.count("registered") == 3)
        assert fake.endpoints(PROJECT, ZONE_A, name_of()) == ips(endpoints)
    finally:
        driver.close()


def test_member_list_period_is_a_flag() -> None:
    import argparse

    from negsync.app import Settings, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert Settings.from_args(parser.parse_args([])).member_list_period == 60.0
    assert Settings.from_args(parser.parse_args(["--member-list-period", "30s"])).member_list_period == 30.0
    with pytest.raises(ConfigError, match="--member-list-period"):
        Settings.from_args(parser.parse_args(["--member-list-period", "0"]))
