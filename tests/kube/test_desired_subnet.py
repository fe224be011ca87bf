"""A binding pinning one subnetwork skips endpoints on nodes of another (issue 13, item 3).

GCE refuses an endpoint IP outside the NEG's subnetwork; without this the 400 would be bisected into a
blocked pod.  The node's subnetwork is the label ingress-gce reads
(``cloud.google.com/gke-node-pool-subnet``; absent = the cluster's default subnetwork).
"""

from __future__ import annotations

from negsync.core.endpoints import decode_slice
from negsync.core.model import BindingKey
from negsync.kube.caches import Caches, decode_binding, decode_node, decode_service
from negsync.kube.desired import DesiredState
from tests.kube.conftest import binding, endpoint_slice, service

KEY = BindingKey("shop", "web")
ZONE = "us-central1-a"


def node(name: str, subnet: str | None) -> dict[str, object]:
    labels = {"topology.kubernetes.io/zone": ZONE}
    if subnet is not None:
        labels["cloud.google.com/gke-node-pool-subnet"] = subnet
    return {"metadata": {"name": name, "labels": labels}, "spec": {"providerID": f"gce://my-project/{ZONE}/{name}"}}


def world(subnetwork: str) -> Caches:
    caches = Caches()
    caches.services.put(("shop", "web"), decode_service(service()))
    target = {"gcpNeg": {"project": "my-project", "network": "default", **({"subnetwork": subnetwork} if subnetwork else {})}}
    caches.bindings.put(("shop", "web"), decode_binding(binding(target=target, gate=False)))
    raw = endpoint_slice("web-a", ["10.0.0.1", "192.168.0.1", "10.0.0.2"], zone=ZONE)
    nodes = {"10.0.0.1": "n-default", "192.168.0.1": "n-pool-b", "10.0.0.2": "n-nodes"}
    for ep in raw["endpoints"]:
        ep["nodeName"] = nodes[ep["addresses"][0]]
    caches.slices.put(("shop", "web-a"), decode_slice(raw))
    for name, subnet in (("n-default", None), ("n-pool-b", "pool-b"), ("n-nodes", "nodes")):
        caches.nodes.put(("", name), decode_node(node(name, subnet)))
    return caches


def test_node_records_carry_the_subnet_label() -> None:
    assert decode_node(node("n", "pool-b")).subnet == "pool-b"
    assert decode_node(node("n", None)).subnet == ""


def test_a_pinned_subnetwork_skips_endpoints_of_other_subnets_with_a_reason() -> None:
    desired = DesiredState(caches=world("projects/my-project/regions/us-central1/subnetworks/nodes"), provider_name="gcp")
    computed = desired.compute(KEY)
    assert computed is not None
    assert {e.ip for e in computed.endpoints} == {"10.0.0.1", "10.0.0.2"}  # unlabelled = default subnet
    skipped = {s.address: s.reason for s in computed.skipped}
    assert list(skipped) == ["192.168.0.1"]
    assert "node subnet pool-b, NEG subnet nodes" in skipped["192.168.0.1"]


def test_without_a_pinned_subnetwork_nothing_is_skipped() -> None:
    computed = DesiredState(caches=world(""), provider_name="gcp").compute(KEY)
    assert computed is not None and len(computed.endpoints) == 3 and not computed.skipped
