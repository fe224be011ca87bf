"""The slim records decoded from raw API objects, and the Store that indexes them.

The raw objects are shaped as the API server returns them (managedFields, kubelet conditions,
other controllers' readiness gates): the decoders must keep what negsync reads and nothing that
changes without mattering, because record equality is what drops a heartbeat before it enqueues
anything (the module docstring's claim).  These tests read records through the fields and methods
the handlers and the desired state use, not through the records' private layout.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from negsync.kube.caches import (
    GATE_PREFIX,
    Caches,
    Store,
    decode_binding,
    decode_node,
    decode_pod,
    decode_service,
    decode_slice,
    parse_time,
    record_key,
)
from tests.kube.conftest import binding, endpoint_slice

GATE = f"{GATE_PREFIX}web"
CREATED = "2026-12-01T10:00:00Z"


def raw_pod(**overrides: Any) -> dict[str, Any]:
    """A dual-stack pod as `kubectl get pod -o json` shows it, with our gate and another controller's."""
    raw: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d4b9c-x2x8q",
            "namespace": "shop",
            "uid": "6f1c2b8e-0000-4000-8000-000000000001",
            "resourceVersion": "81234",
            "creationTimestamp": CREATED,
            "labels": {"pod-template-hash": "7d4b9c", "app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
                                 "uid": "rs-uid", "controller": True}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "time": CREATED}],
        },
        "spec": {
            "nodeName": "gke-pool-1-abcd",
            "containers": [{"name": "app", "image": "web:1", "ports": [{"containerPort": 8080}]}],
            "readinessGates": [
                {"conditionType": GATE},
                {"conditionType": "cloud.google.com/load-balancer-neg-ready"},
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.8.0.12",
            "podIPs": [{"ip": "10.8.0.12"}, {"ip": "fd00:10:8::c"}],
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": CREATED},
                {"type": "Ready", "status": "False", "lastTransitionTime": CREATED,
                 "reason": "ReadinessGatesNotReady"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": CREATED},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": CREATED},
                {"type": GATE, "status": "False", "reason": "RegistrationInProgress",
                 "message": "waiting", "lastTransitionTime": CREATED},
                {"type": "cloud.google.com/load-balancer-neg-ready", "status": "True"},
            ],
            "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": CREATED}}}],
        },
    }
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = value
    return raw


def raw_node(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gke-pool-1-abcd", "resourceVersion": "5", "labels": {
            "kubernetes.io/hostname": "gke-pool-1-abcd", **labels}},
        "spec": {"providerID": "gce://my-project/us-central1-a/gke-pool-1-abcd", "podCIDR": "10.8.0.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": CREATED}]},
    }


# -- parse_time ---------------------------------------------------------------------------------


def test_times_are_read_as_the_api_writes_them_and_absent_or_garbage_is_zero() -> None:
    assert parse_time(CREATED) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()
    assert parse_time("2026-12-01T10:00:00.250000Z") == pytest.approx(parse_time(CREATED) + 0.25)
    for value in (None, "", "yesterday"):
        assert parse_time(value) == 0.0


# -- pods ---------------------------------------------------------------------------------------


def test_a_pod_keeps_what_negsync_reads() -> None:
    record = decode_pod(raw_pod())
    assert record_key(record) == ("shop", "web-7d4b9c-x2x8q")
    assert record.uid == "6f1c2b8e-0000-4000-8000-000000000001"
    assert record.label_map == {"app": "web", "pod-template-hash": "7d4b9c"}
    assert record.gates == (GATE,)  # another controller's gate is not ours
    assert record.condition(GATE) == ("False", "RegistrationInProgress")
    assert record.condition("cloud.google.com/load-balancer-neg-ready") is None
    assert record.condition("Ready") is None  # the kubelet's own conditions are not gates
    assert record.ips == ("10.8.0.12", "fd00:10:8::c")
    assert record.node == "gke-pool-1-abcd"
    assert record.created == parse_time(CREATED)
    assert record.containers_ready and not record.deleting


def test_a_pod_without_pod_ips_falls_back_to_pod_ip_and_an_unscheduled_pod_has_none() -> None:
    assert decode_pod(raw_pod(**{"status.podIPs": None})).ips == ("10.8.0.12",)
    pending = raw_pod()
    pending["status"] = {"phase": "Pending"}
    del pending["spec"]["nodeName"]
    record = decode_pod(pending)
    assert record.ips == () and record.node == "" and not record.containers_ready
    assert record.condition(GATE) is None


def test_a_terminating_pod_and_failing_probes_are_seen() -> None:
    assert decode_pod(raw_pod(**{"metadata.deletionTimestamp": "2026-12-01T10:05:00Z"})).deleting
    raw = raw_pod()
    raw["status"]["conditions"][2]["status"] = "False"
    assert not decode_pod(raw).containers_ready


def test_changes_negsync_does_not_read_leave_the_pod_record_equal() -> None:
    record = decode_pod(raw_pod())
    noisy = raw_pod()
    noisy["metadata"]["resourceVersion"] = "99999"
    noisy["metadata"]["managedFields"].append({"manager": "kubectl", "operation": "Update"})
    noisy["metadata"]["labels"] = dict(reversed(list(noisy["metadata"]["labels"].items())))  # order is no change
    noisy["status"]["containerStatuses"][0]["restartCount"] = 3
    noisy["status"]["conditions"][1] = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:01:00Z"}
    next(c for c in noisy["status"]["conditions"] if c["type"] == GATE)["message"] = "a message alone is no change"
    noisy["status"]["conditions"].reverse()
    assert decode_pod(noisy) == record
    assert hash(decode_pod(noisy)) == hash(record)


@pytest.mark.parametrize(
    "change",
    [
        lambda raw: raw["status"]["conditions"][4].update(status="True", reason="LoadBalancerHealthy"),
        lambda raw: raw["status"]["conditions"][4].update(reason="LoadBalancerUnhealthy"),
        lambda raw: raw["metadata"]["labels"].update(app="api"),
        lambda raw: raw["metadata"].update(uid="another-uid"),
        lambda raw: raw["status"].update(podIPs=[{"ip": "10.8.0.99"}]),
        lambda raw: raw["spec"].update(readinessGates=[]),
    ],
    ids=["gate-status", "gate-reason", "labels", "uid", "ips", "gates"],
)
def test_changes_negsync_reads_make_the_pod_record_differ(change: Any) -> None:
    raw = raw_pod()
    change(raw)
    assert decode_pod(raw) != decode_pod(raw_pod())


# -- services -----------------------------------------------------------------------------------


def raw_service(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "svc-uid", "resourceVersion": "7"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "grpc", "port": 9090, "targetPort": "grpc-port", "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ], **spec},
        "status": {"loadBalancer": {}},
    }


def test_a_service_keeps_its_selector_and_ports() -> None:
    record = decode_service(raw_service())
    assert record_key(record) == ("shop", "web") and record.uid == "svc-uid"
    http = record.port_named("http")
    assert http is not None and (http.port, http.target_port, http.protocol) == (80, "8080", "TCP")
    grpc = record.port_named(9090)
    assert grpc is not None and grpc.name == "grpc" and grpc.target_port == "grpc-port"
    dns = record.port_named("dns")
    assert dns is not None and dns.target_port == "53"  # an omitted targetPort is the port itself
    assert record.port_named(53) is None  # by number only a TCP port is a target's port
    assert record.port_named("metrics") is None and record.port_named(8080) is None


def test_a_port_without_a_protocol_is_tcp() -> None:
    record = decode_service(raw_service(ports=[{"name": "http", "port": 80, "targetPort": 8080}]))
    port = record.port_named(80)
    assert port is not None and port.protocol == "TCP"


def test_a_service_selects_pods_by_every_label_of_its_selector() -> None:
    record = decode_service(raw_service(selector={"app": "web", "tier": "front"}))
    assert record.selects({"app": "web", "tier": "front", "pod-template-hash": "x"})
    assert not record.selects({"app": "web"})
    assert not record.selects({"app": "web", "tier": "back"})


@pytest.mark.parametrize("selector", [None, {}])
def test_a_service_without_a_selector_selects_no_pod(selector: dict[str, str] | None) -> None:
    # Endpoints of a selector-less Service are managed by hand (EndpointSlices without a controller):
    # no pod is "selected", even though an empty selector would match every label set.
    spec = raw_service()
    spec["spec"]["selector"] = selector
    record = decode_service(spec)
    assert not record.selects({"app": "web"}) and not record.selects({})


def test_a_service_record_ignores_what_negsync_does_not_read() -> None:
    noisy = raw_service()
    noisy["metadata"]["resourceVersion"] = "8"
    noisy["status"] = {"loadBalancer": {"ingress": [{"ip": "34.1.2.3"}]}}
    noisy["spec"]["sessionAffinity"] = "ClientIP"
    assert decode_service(noisy) == decode_service(raw_service())
    moved = raw_service()
    moved["spec"]["ports"][0]["targetPort"] = 8081
    assert decode_service(moved) != decode_service(raw_service())


# -- nodes --------------------------------------------------------------------------------------


def test_a_node_keeps_its_zone_provider_id_and_subnet() -> None:
    record = decode_node(raw_node({"topology.kubernetes.io/zone": "us-central1-a",
                                   "cloud.google.com/gke-node-pool-subnet": "pool-b"}))
    assert record_key(record) == ("", "gke-pool-1-abcd")
    assert record.zone == "us-central1-a"
    assert record.provider_id == "gce://my-project/us-central1-a/gke-pool-1-abcd"
    assert record.subnet == "pool-b"


def test_node_records_carry_the_subnet_label() -> None:
    # ingress-gce pkg/utils/zonegetter getSubnet reads this label; absent = the cluster's default subnetwork.
    assert decode_node(raw_node({"cloud.google.com/gke-node-pool-subnet": "pool-b"})).subnet == "pool-b"
    assert decode_node(raw_node({})).subnet == ""


def test_a_node_zone_falls_back_to_the_legacy_label_and_prefers_the_current_one() -> None:
    legacy = "failure-domain.beta.kubernetes.io/zone"
    assert decode_node(raw_node({legacy: "us-central1-b"})).zone == "us-central1-b"
    assert decode_node(raw_node({legacy: "us-central1-b", "topology.kubernetes.io/zone": "us-central1-c"})).zone == (
        "us-central1-c")
    assert decode_node(raw_node({})).zone == ""


def test_a_node_heartbeat_leaves_the_record_equal() -> None:
    labels = {"topology.kubernetes.io/zone": "us-central1-a"}
    beat = raw_node(labels)
    beat["metadata"]["resourceVersion"] = "6"
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-12-01T10:00:10Z"
    beat["metadata"]["labels"]["node.kubernetes.io/instance-type"] = "e2-standard-4"
    assert decode_node(beat) == decode_node(raw_node(labels))


# -- bindings -----------------------------------------------------------------------------------


def raw_binding(**extra_meta: Any) -> dict[str, Any]:
    raw = binding()
    raw["metadata"].update({"uid": "tb-uid", "generation": 3, "resourceVersion": "11",
                            "finalizers": ["negsync.io/target-cleanup"], **extra_meta})
    raw["status"] = {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]}
    return raw


def test_a_binding_keeps_its_identity_lifecycle_and_service() -> None:
    record = decode_binding(raw_binding())
    assert record_key(record) == ("shop", "web")
    assert (record.uid, record.generation, record.finalizers) == ("tb-uid", 3, ("negsync.io/target-cleanup",))
    assert record.service_name == "web"
    assert not record.deleting
    assert record.status["observedGeneration"] == 3
    assert decode_binding(raw_binding(deletionTimestamp="2026-12-01T11:00:00Z")).deleting


@pytest.mark.parametrize("spec", [{}, {"serviceRef": "web"}, {"serviceRef": {"name": 7}}, None, []])
def test_a_binding_whose_service_cannot_be_read_names_none(spec: Any) -> None:
    # The spec is validated later, with a condition naming the field; decoding must not fail.
    raw = raw_binding()
    raw["spec"] = spec
    assert decode_binding(raw).service_name == ""


def test_a_binding_record_compares_its_spec_by_value_not_key_order() -> None:
    raw = raw_binding()
    reordered = copy.deepcopy(raw)
    reordered["spec"] = dict(reversed(list(raw["spec"].items())))
    assert decode_binding(reordered) == decode_binding(raw)
    changed = copy.deepcopy(raw)
    changed["spec"]["serviceRef"]["port"] = "grpc"
    assert decode_binding(changed) != decode_binding(raw)
    assert decode_binding(changed).service_name == "web"


def test_a_binding_without_status_reads_as_an_empty_status() -> None:
    raw = raw_binding()
    del raw["status"]
    assert decode_binding(raw).status == {}


# -- the Store ----------------------------------------------------------------------------------


def by_letter(value: str) -> list[str]:
    return sorted(set(value))


def test_put_get_remove_return_the_previous_record() -> None:
    store: Store[str] = Store()
    assert store.put(("ns", "a"), "x") is None
    assert store.put(("ns", "a"), "y") == "x"
    assert store.get(("ns", "a")) == "y" and store.get(("ns", "b")) is None
    assert len(store) == 1 and store.values() == ["y"]
    assert store.remove(("ns", "a")) == "y"
    assert store.remove(("ns", "a")) is None
    assert len(store) == 0


def test_an_index_follows_every_put_and_remove() -> None:
    store: Store[str] = Store(indexers={"letter": by_letter})
    store.put(("ns", "one"), "ab")
    store.put(("ns", "two"), "bc")
    assert store.by_index("letter", "b") == ["ab", "bc"]  # sorted by key: ("ns","one") < ("ns","two")
    store.put(("ns", "one"), "cd")  # re-indexed: no longer under a or b
    assert store.by_index("letter", "a") == []
    assert store.by_index("letter", "b") == ["bc"]
    assert store.by_index("letter", "c") == ["cd", "bc"]
    store.remove(("ns", "two"))
    assert store.by_index("letter", "b") == [] and store.by_index("letter", "c") == ["cd"]
    assert store.by_index("letter", "z") == []


def test_a_relist_reports_only_real_changes() -> None:
    store: Store[str] = Store(indexers={"letter": by_letter})
    store.put(("ns", "same"), "s")
    store.put(("ns", "changed"), "c1")
    store.put(("ns", "gone"), "g")
    changes = store.replace({("ns", "same"): "s", ("ns", "changed"): "c2", ("ns", "new"): "n"})
    assert sorted(changes, key=str) == sorted([("g", None), ("c1", "c2"), (None, "n")], key=str)
    assert {k: store.get(k) for k in [("ns", "same"), ("ns", "changed"), ("ns", "gone"), ("ns", "new")]} == {
        ("ns", "same"): "s", ("ns", "changed"): "c2", ("ns", "gone"): None, ("ns", "new"): "n"}
    assert store.by_index("letter", "g") == [] and store.by_index("letter", "1") == []
    assert store.by_index("letter", "2") == ["c2"]
    # The same relist again (a reconnect): nothing to report.
    assert store.replace({("ns", "same"): "s", ("ns", "changed"): "c2", ("ns", "new"): "n"}) == []


def test_a_relist_of_decoded_objects_replays_nothing_that_only_changed_unread_fields() -> None:
    store: Store[Any] = Store()
    store.replace({("shop", "web-7d4b9c-x2x8q"): decode_pod(raw_pod())})
    noisy = raw_pod()
    noisy["metadata"]["resourceVersion"] = "81300"
    noisy["status"]["containerStatuses"][0]["restartCount"] = 1
    assert store.replace({("shop", "web-7d4b9c-x2x8q"): decode_pod(noisy)}) == []


# -- the controller's caches and their indexes --------------------------------------------------


def test_slices_and_bindings_are_indexed_by_service_and_pods_by_binding() -> None:
    caches = Caches()
    caches.slices.put(("shop", "web-a"), decode_slice(endpoint_slice("web-a", ["10.0.0.1"])))
    caches.slices.put(("shop", "web-b"), decode_slice(endpoint_slice("web-b", ["10.0.0.2"])))
    caches.slices.put(("shop", "api-a"), decode_slice(endpoint_slice("api-a", ["10.0.1.1"], svc="api")))
    caches.slices.put(("other", "web-a"), decode_slice(endpoint_slice("web-a", ["10.0.2.1"], ns="other")))
    assert [s.name for s in caches.slices.by_index("service", ("shop", "web"))] == ["web-a", "web-b"]
    assert [s.namespace for s in caches.slices.by_index("service", ("other", "web"))] == ["other"]

    caches.bindings.put(("shop", "web"), decode_binding(binding()))
    caches.bindings.put(("shop", "web-too"), decode_binding(binding("web-too")))
    assert [b.name for b in caches.bindings.by_index("service", ("shop", "web"))] == ["web", "web-too"]
    caches.bindings.put(("shop", "web-too"), decode_binding(binding("web-too", svc="api")))  # serviceRef edited
    assert [b.name for b in caches.bindings.by_index("service", ("shop", "web"))] == ["web"]
    assert [b.name for b in caches.bindings.by_index("service", ("shop", "api"))] == ["web-too"]

    two_gates = raw_pod(**{"spec.readinessGates": [{"conditionType": GATE}, {"conditionType": f"{GATE_PREFIX}api"}]})
    caches.pods.put(("shop", "web-7d4b9c-x2x8q"), decode_pod(two_gates))
    caches.pods.put(("shop", "plain"), decode_pod(raw_pod(**{"metadata.name": "plain", "spec.readinessGates": []})))
    assert [p.name for p in caches.pods.by_index("binding", ("shop", "web"))] == ["web-7d4b9c-x2x8q"]
    assert [p.name for p in caches.pods.by_index("binding", ("shop", "api"))] == ["web-7d4b9c-x2x8q"]
    assert caches.pods.by_index("binding", ("other", "web")) == []


def test_a_slice_without_a_service_label_is_in_no_service_bucket() -> None:
    caches = Caches()
    raw = endpoint_slice("manual", ["10.0.0.1"])
    raw["metadata"]["labels"] = {}
    caches.slices.put(("shop", "manual"), decode_slice(raw))
    assert caches.slices.by_index("service", ("shop", "")) == []
    assert caches.slices.by_index("service", ("shop", "web")) == []
    assert len(caches.slices) == 1
