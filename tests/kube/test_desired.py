"""A binding's desired endpoints from the caches (pure: no API, no provider).

Includes the pinned subnetwork of issue 13, item 3: GCE refuses an endpoint IP outside the NEG's
subnetwork, so without the skip the 400 would be bisected into a blocked pod.  The node's
subnetwork is the label ingress-gce reads (``cloud.google.com/gke-node-pool-subnet``; absent = the
cluster's default subnetwork).
"""

from __future__ import annotations

import dataclasses

from negsync.core.model import BindingKey
from negsync.kube.caches import Caches, decode_binding, decode_node, decode_pod, decode_service, decode_slice
from negsync.kube.desired import DesiredState
from tests.kube.conftest import binding, endpoint_slice, pod, service


def test_a_service_port_named_by_number_matches_the_tcp_port_only() -> None:
    caches = Caches()
    # DNS-style: the same number over UDP (listed first) and TCP.
    caches.services.put(("shop", "web"), decode_service(service(ports=[
        {"name": "dns-udp", "port": 53, "targetPort": 5353, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "targetPort": 5353, "protocol": "TCP"}])))
    raw = endpoint_slice("web-abc", ["10.1.0.1"], port=5353)
    raw["ports"] = [{"name": "dns-udp", "port": 5353, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 5353, "protocol": "TCP"}]
    caches.slices.put(("shop", "web-abc"), decode_slice(raw))
    caches.bindings.put(("shop", "web"), decode_binding({**binding(port=53, gate=False),
                                                         "metadata": {"name": "web", "namespace": "shop"}}))
    desired = DesiredState(caches=caches, provider_name="memory").compute(BindingKey("shop", "web"))
    assert desired is not None
    assert [(e.ip, e.port) for e in desired.endpoints] == [("10.1.0.1", 5353)]


def test_a_service_with_only_a_udp_port_of_that_number_has_no_such_port() -> None:
    caches = Caches()
    caches.services.put(("shop", "web"), decode_service(service(ports=[
        {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}])))
    caches.bindings.put(("shop", "web"), decode_binding(binding(port=53, gate=False)))
    check = DesiredState(caches=caches, provider_name="memory").problem(BindingKey("shop", "web"))
    reason, message = check.reason, check.message
    assert reason == "PortNotFound" and "53" in message


# -- a pinned subnetwork (issue 13, item 3) ------------------------------------------------------

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


def test_inputs_follow_the_pod_and_node_records_but_not_our_gate_conditions() -> None:
    caches = world("")
    caches.pods.put(("shop", "pod-192-168-0-1"), decode_pod(pod("pod-192-168-0-1", ip="192.168.0.1")))
    desired = DesiredState(caches=caches, provider_name="gcp")
    computed = desired.compute(KEY)
    assert computed is not None and computed.inputs is not None
    inputs = computed.inputs
    endpoint = next(e for e in computed.endpoints if e.ip == "192.168.0.1")
    before = inputs(endpoint)
    record = caches.pods.get(("shop", "pod-192-168-0-1"))
    assert record is not None
    # Our own gate write changes the pod record, but not what the endpoint was computed from.
    caches.pods.put(("shop", record.name), dataclasses.replace(record, conditions=(("t", "False", "Pending"),)))
    assert inputs(endpoint) == before
    caches.pods.put(("shop", record.name), dataclasses.replace(record, uid="another-uid"))
    assert inputs(endpoint) != before
    caches.pods.put(("shop", record.name), record)
    node = caches.nodes.get(("", "n-pool-b"))
    assert node is not None
    caches.nodes.put(("", "n-pool-b"), dataclasses.replace(node, provider_id="gce://my-project/us-central1-a/new-vm"))
    assert inputs(endpoint) != before
