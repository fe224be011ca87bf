"""Tests for the kube-apiserver emulator, driven through the real kubernetes client."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.emulators.kubeapi import KubeApiEmulator

pytestmark = pytest.mark.timeout(10)

NS = "default"
TB = ("negsync.io", "v1alpha1")


@pytest.fixture
def emu() -> Iterator[KubeApiEmulator]:
    with KubeApiEmulator(bookmark_interval=0.2) as emulator:
        yield emulator


@pytest.fixture
def api(emu: KubeApiEmulator) -> Iterator[client.ApiClient]:
    api_client = client.ApiClient(emu.client_configuration())
    yield api_client
    api_client.close()


# API handles are typed Any: the v37 client's signatures want model instances and its
# models are Optional everywhere, while these tests send plain dicts (accepted at runtime).
@pytest.fixture
def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api)


def pod(name: str, labels: dict[str, str] | None = None, node: str | None = None, ns: str = NS) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": spec}


def binding(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "negsync.io/v1alpha1", "kind": "TargetBinding",
            "metadata": {"name": name, "namespace": NS, **extra},
            "spec": {"serviceRef": {"name": "web", "port": 80}, "target": {"memory": {"name": "pool"}}}}


def _name(event: dict[str, Any]) -> str:
    obj = event["object"]
    return str(obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name)


def drain(func: Callable[..., Any], *args: Any, timeout: int = 1, **kwargs: Any) -> list[tuple[str, str]]:
    """Run a watch to its server-side timeout; (type, name) for non-bookmark events."""
    events = watch.Watch().stream(func, *args, timeout_seconds=timeout, _request_timeout=timeout + 4, **kwargs)
    return [(e["type"], _name(e)) for e in events if e["type"] != "BOOKMARK"]


def stored(emu: KubeApiEmulator, api_version: str, kind: str, name: str) -> dict[str, Any]:
    obj = emu.get(api_version, kind, NS, name)
    assert obj is not None
    return obj


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or "{}")
    return body


# ------------------------------------------------------------- list and watch


def test_list_rv_then_watch_sees_exactly_later_changes(emu: KubeApiEmulator, core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    core.create_namespaced_pod(NS, pod("b"))
    listed = core.list_namespaced_pod(NS)
    rv = listed.metadata.resource_version
    assert rv == str(emu.resource_version)
    assert [p.metadata.name for p in listed.items] == ["a", "b"]

    core.create_namespaced_pod(NS, pod("c"))
    core.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_pod("b", NS)

    def live_change() -> None:
        time.sleep(0.2)
        core.patch_namespaced_pod("c", NS, {"metadata": {"labels": {"y": "2"}}})

    writer = threading.Thread(target=live_change)
    writer.start()
    events = drain(core.list_namespaced_pod, NS, resource_version=rv)
    writer.join()
    assert events == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b"), ("MODIFIED", "c")]


def test_watch_event_resource_versions_increase(emu: KubeApiEmulator, core: Any) -> None:
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    core.create_namespaced_pod(NS, pod("a"))
    core.delete_namespaced_pod("a", NS)
    raw = list(watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=1,
                                    _request_timeout=5, deserialize=False))
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in raw]
    assert [e["type"] for e in raw] == ["ADDED", "DELETED"]
    assert rvs == sorted(rvs) and rvs[-1] == emu.resource_version


@pytest.mark.parametrize("rv", [None, "0"])
def test_watch_without_rv_sends_current_state_then_live(core: Any, rv: str | None) -> None:
    core.create_namespaced_pod(NS, pod("old"))
    core.delete_namespaced_pod("old", NS)
    core.create_namespaced_pod(NS, pod("a"))

    def live_change() -> None:
        time.sleep(0.2)
        core.create_namespaced_pod(NS, pod("b"))

    writer = threading.Thread(target=live_change)
    writer.start()
    kwargs: dict[str, Any] = {} if rv is None else {"resource_version": rv}
    events = drain(core.list_namespaced_pod, NS, **kwargs)
    writer.join()
    assert events == [("ADDED", "a"), ("ADDED", "b")]


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "data": {"k": name}}


def raw_list(api: client.ApiClient, path: str, **query: Any) -> tuple[int, dict[str, Any]]:
    """GET a list path with exact query parameters; (status, body) without the client's models."""
    url = f"{api.configuration.host}{path}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"


def test_paged_list_is_one_consistent_snapshot(emu: KubeApiEmulator, api: client.ApiClient, core: Any) -> None:
    for name in "abcde":
        core.create_namespaced_config_map(NS, configmap(name))
    code, first = raw_list(api, CM_PATH, limit=2)
    assert code == 200
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3 and first["metadata"]["continue"]
    # Writes between pages do not show: later pages are read at the first page's revision.
    core.create_namespaced_config_map(NS, configmap("bb"))
    core.patch_namespaced_config_map("c", NS, {"data": {"k": "changed"}})
    core.delete_namespaced_config_map("d", NS)
    code, second = raw_list(api, CM_PATH, limit=2, **{"continue": first["metadata"]["continue"]})
    assert code == 200
    assert [(i["metadata"]["name"], i["data"]["k"]) for i in second["items"]] == [("c", "c"), ("d", "d")]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert second["metadata"]["remainingItemCount"] == 1
    code, third = raw_list(api, CM_PATH, limit=2, **{"continue": second["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in third["items"]] == ["e"]
    assert "continue" not in third["metadata"] and "remainingItemCount" not in third["metadata"]
    # The typed client sees the same fields.
    typed = core.list_namespaced_config_map(NS, limit=4)
    assert len(typed.items) == 4 and typed.metadata._continue and typed.metadata.remaining_item_count == 1


def test_limit_with_resource_version_zero_is_answered_whole_by_the_watch_cache(api: client.ApiClient, core: Any) -> None:
    for name in "abc":
        core.create_namespaced_config_map(NS, configmap(name))
    code, body = raw_list(api, CM_PATH, limit=1, resourceVersion="0")
    assert code == 200 and len(body["items"]) == 3 and "continue" not in body["metadata"]


def test_selectors_page_without_a_remaining_count(api: client.ApiClient, core: Any) -> None:
    for name in "abcd":
        core.create_namespaced_config_map(NS, configmap(name, keep="yes" if name != "b" else "no"))
    code, body = raw_list(api, CM_PATH, limit=2, labelSelector="keep=yes")
    assert code == 200
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "c"]
    assert body["metadata"]["continue"] and "remainingItemCount" not in body["metadata"]
    _, rest = raw_list(api, CM_PATH, limit=2, labelSelector="keep=yes", **{"continue": body["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in rest["items"]] == ["d"]


def test_compacted_continue_token_is_410_with_an_inconsistent_token(
        emu: KubeApiEmulator, api: client.ApiClient, core: Any) -> None:
    for name in "abc":
        core.create_namespaced_config_map(NS, configmap(name))
    _, first = raw_list(api, CM_PATH, limit=1)
    core.create_namespaced_config_map(NS, configmap("d"))
    emu.compact()
    code, status = raw_list(api, CM_PATH, limit=1, **{"continue": first["metadata"]["continue"]})
    assert code == 410 and status["reason"] == "Expired"
    assert "continue parameter is too old" in status["message"]
    # The inconsistent token carries on from the same key at the current revision (d shows up).
    names: list[str] = []
    token = status["metadata"]["continue"]
    while token:
        code, page = raw_list(api, CM_PATH, limit=1, **{"continue": token})
        assert code == 200
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == ["b", "c", "d"]


def test_list_parameter_rules(emu: KubeApiEmulator, api: client.ApiClient, core: Any) -> None:
    for name in "ab":
        core.create_namespaced_config_map(NS, configmap(name))
    _, first = raw_list(api, CM_PATH, limit=1)
    token = first["metadata"]["continue"]
    assert raw_list(api, CM_PATH, limit=1, resourceVersion="2", **{"continue": token})[0] == 400
    assert raw_list(api, CM_PATH, limit=1, **{"continue": "not-a-token"})[0] == 400
    assert raw_list(api, CM_PATH, resourceVersionMatch="Exact")[0] == 400
    assert raw_list(api, CM_PATH, resourceVersion="0", resourceVersionMatch="Exact")[0] == 400
    # Exact: the list as of that revision (b did not exist yet), 410 once compacted.
    rv_after_a = int(first["items"][0]["metadata"]["resourceVersion"])
    code, exact = raw_list(api, CM_PATH, resourceVersion=str(rv_after_a), resourceVersionMatch="Exact")
    assert code == 200 and [i["metadata"]["name"] for i in exact["items"]] == ["a"]
    emu.compact()
    code, status = raw_list(api, CM_PATH, resourceVersion=str(rv_after_a), limit=5)
    assert code == 410 and status["message"] == "The resourceVersion for the provided list is too old."


def test_too_large_resource_version(emu: KubeApiEmulator, api: client.ApiClient, core: Any) -> None:
    emu.too_large_wait = 0.2
    future = emu.resource_version + 5
    started = time.monotonic()
    code, status = raw_list(api, CM_PATH, resourceVersion=str(future))
    assert code == 504 and time.monotonic() - started >= 0.2  # the watch cache waited first
    assert status["reason"] == "Timeout"
    assert status["message"] == f"Timeout: Too large resource version: {future}, current: {emu.resource_version}"
    assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    assert raw_list(api, CM_PATH, resourceVersion=str(future), limit=10)[0] == 504
    # A list that the store catches up with in time succeeds.
    emu.too_large_wait = 5.0
    threading.Timer(0.05, lambda: core.create_namespaced_config_map(NS, configmap("a"))).start()
    assert raw_list(api, CM_PATH, resourceVersion=str(emu.resource_version + 1))[0] == 200


def test_watch_from_a_future_resource_version_waits_silently(emu: KubeApiEmulator, core: Any) -> None:
    """The watch cache neither fails nor replays: events up to the requested revision are skipped,
    bookmarks too, and the stream carries on once the store passes it."""
    future = emu.resource_version + 2
    reached = threading.Event()

    def writes() -> None:
        time.sleep(0.5)  # > bookmark interval: no bookmark may arrive meanwhile
        for name in ("a", "b", "c"):
            if emu.resource_version + 1 >= future:
                reached.set()  # this write reaches the requested revision
            core.create_namespaced_pod(NS, pod(name))

    writer = threading.Thread(target=writes)
    writer.start()
    raw: list[tuple[bool, dict[str, Any]]] = []
    for event in watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=str(future), timeout_seconds=1,
                                      allow_watch_bookmarks=True, _request_timeout=5, deserialize=False):
        raw.append((reached.is_set(), event))
    writer.join()
    assert [(e["type"], e["object"]["metadata"].get("name")) for _, e in raw if e["type"] != "BOOKMARK"] == [
        ("ADDED", "c")]
    # Nothing at all — bookmarks included — before the store reached the requested revision
    # (cacheWatcher.process forwards a bookmark equal to it, never one the store has not reached).
    assert all(after for after, _ in raw)
    assert all(int(e["object"]["metadata"]["resourceVersion"]) >= future for _, e in raw)


def test_label_and_field_selectors_on_list(core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a", {"app": "web", "tier": "front"}, node="n1"))
    core.create_namespaced_pod(NS, pod("b", {"app": "db"}, node="n2"))
    core.create_namespaced_pod(NS, pod("c", {}))
    core.create_namespaced_pod("other", pod("d", {"app": "web"}, node="n1", ns="other"))

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in core.list_pod_for_all_namespaces(**kw).items]

    assert names(label_selector="app=web") == ["a", "d"]
    assert names(label_selector="app==web,tier=front") == ["a"]
    assert names(label_selector="app!=web") == ["b", "c"]
    assert names(label_selector="app in (web, db)") == ["a", "b", "d"]
    assert names(label_selector="app notin (web)") == ["b", "c"]
    assert names(label_selector="tier") == ["a"]
    assert names(label_selector="!app") == ["c"]
    assert names(field_selector="spec.nodeName=n1") == ["a", "d"]
    assert names(field_selector="spec.nodeName!=n1,metadata.namespace=default") == ["b", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert [p.metadata.name for p in core.list_namespaced_pod("other").items] == ["d"]
    with pytest.raises(ApiException) as err:
        names(field_selector="spec.bogus=1")
    assert err.value.status == 400


def test_watch_selectors_report_transitions(core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a", {"app": "web"}))
    core.create_namespaced_pod(NS, pod("b", {"app": "db"}, node="n1"))
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    core.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"app": "db"}}})  # leaves app=web
    core.patch_namespaced_pod("b", NS, {"metadata": {"labels": {"app": "web"}}})  # enters app=web
    core.patch_namespaced_pod("b", NS, {"metadata": {"labels": {"extra": "1"}}})
    assert drain(core.list_namespaced_pod, NS, resource_version=rv, label_selector="app=web") == [
        ("DELETED", "a"), ("ADDED", "b"), ("MODIFIED", "b")]
    assert drain(core.list_namespaced_pod, NS, resource_version=rv, field_selector="spec.nodeName=n1") == [
        ("MODIFIED", "b"), ("MODIFIED", "b")]


def test_bookmarks_arrive(emu: KubeApiEmulator, core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    events = list(watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=rv,
                                       allow_watch_bookmarks=True, timeout_seconds=1, _request_timeout=5))
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2
    assert bookmarks[-1]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                       "metadata": {"resourceVersion": str(emu.resource_version)}}
    assert not drain(core.list_namespaced_pod, NS, resource_version=rv, timeout=1)  # none unless asked


def test_compaction_expires_old_resource_versions(emu: KubeApiEmulator, core: Any) -> None:
    old_rv = core.list_namespaced_pod(NS).metadata.resource_version
    core.create_namespaced_pod(NS, pod("a"))
    current = emu.compact()
    with pytest.raises(ApiException) as err:
        drain(core.list_namespaced_pod, NS, resource_version=old_rv)
    assert err.value.status == 410
    assert "too old resource version" in str(err.value.reason)

    # Without timeout_seconds the client retries once on 410, then gives up.
    emu.clear_requests()
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=old_rv, _request_timeout=5))
    assert err.value.status == 410
    assert len([r for r in emu.requests if r.query.get("watch") == "true"]) == 2

    # Watching from the compaction point loses nothing, so it is allowed.
    core.create_namespaced_pod(NS, pod("b"))
    assert drain(core.list_namespaced_pod, NS, resource_version=str(current)) == [("ADDED", "b")]


def test_bounded_history_window_expires_too(core: Any) -> None:
    with KubeApiEmulator(max_history=3) as small:
        api: Any = client.CoreV1Api(client.ApiClient(small.client_configuration()))
        rv = api.list_namespaced_config_map(NS).metadata.resource_version
        for i in range(4):
            api.create_namespaced_config_map(NS, {"metadata": {"name": f"c{i}"}})
        with pytest.raises(ApiException) as err:
            drain(api.list_namespaced_config_map, NS, resource_version=rv)
        assert err.value.status == 410


def test_drop_watches_truncates_the_stream(emu: KubeApiEmulator, core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    stream = watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=5, _request_timeout=5)
    first = next(stream)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "a")
    assert emu.watch_count == 1
    assert emu.drop_watches() == 1
    with pytest.raises(urllib3.exceptions.ProtocolError):
        next(stream)
    # The server still serves new requests after a drop.
    assert core.read_namespaced_pod("a", NS).metadata.name == "a"


def test_stop_ends_open_watches_promptly() -> None:
    emulator = KubeApiEmulator().start()
    core: Any = client.CoreV1Api(client.ApiClient(emulator.client_configuration()))
    errors: list[BaseException] = []

    def watcher() -> None:
        try:
            list(watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=60, _request_timeout=10))
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=watcher)
    thread.start()
    assert emulator.wait_for_watches(1)
    started = time.monotonic()
    emulator.stop()
    thread.join(3)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.0
    assert errors and isinstance(errors[0], urllib3.exceptions.HTTPError)


# --------------------------------------------------------- writes and semantics


def test_status_subresource_isolation_for_pods(core: Any) -> None:
    created = core.create_namespaced_pod(NS, pod("a") | {"status": {"phase": "Running"}})
    assert created.status.phase == "Pending"  # clients cannot create status
    assert created.metadata.generation == 1

    core.patch_namespaced_pod_status("a", NS, {"status": {"phase": "Running"},
                                               "spec": {"nodeName": "sneaky"}})
    after = core.read_namespaced_pod("a", NS)
    assert after.status.phase == "Running" and after.spec.node_name is None

    core.patch_namespaced_pod("a", NS, {"status": {"phase": "Failed"}, "metadata": {"labels": {"k": "v"}}})
    after = core.read_namespaced_pod("a", NS)
    assert after.status.phase == "Running" and after.metadata.labels == {"k": "v"}
    assert after.metadata.generation == 1

    core.patch_namespaced_pod("a", NS, {"spec": {"activeDeadlineSeconds": 5}})
    assert core.read_namespaced_pod("a", NS).metadata.generation == 2

    full = core.read_namespaced_pod("a", NS)
    full.status.phase = "Succeeded"
    full.spec.active_deadline_seconds = 9
    replaced = core.replace_namespaced_pod("a", NS, full)
    assert replaced.status.phase == "Running" and replaced.spec.active_deadline_seconds == 9


def test_status_subresource_and_generation_for_custom_resources(custom: Any) -> None:
    obj = custom.create_namespaced_custom_object(*TB, NS, "targetbindings",
                                                 binding("t") | {"status": {"observedGeneration": 7}})
    assert obj["metadata"]["generation"] == 1 and "status" not in obj

    obj = custom.patch_namespaced_custom_object_status(
        *TB, NS, "targetbindings", "t", {"status": {"observedGeneration": 1}, "spec": {"serviceRef": {"port": 1}}})
    assert obj["status"] == {"observedGeneration": 1} and obj["spec"]["serviceRef"]["port"] == 80
    assert obj["metadata"]["generation"] == 1

    obj = custom.patch_namespaced_custom_object(*TB, NS, "targetbindings", "t", {"status": {"observedGeneration": 9}})
    assert obj["status"] == {"observedGeneration": 1}
    assert obj["metadata"]["generation"] == 1

    obj = custom.patch_namespaced_custom_object(*TB, NS, "targetbindings", "t", {"spec": {"serviceRef": {"port": 81}}})
    assert obj["metadata"]["generation"] == 2

    obj["spec"]["serviceRef"]["port"] = 82
    obj["status"] = {"observedGeneration": 2}
    obj = custom.replace_namespaced_custom_object_status(*TB, NS, "targetbindings", "t", obj)
    assert obj["spec"]["serviceRef"]["port"] == 81 and obj["status"] == {"observedGeneration": 2}
    assert obj["metadata"]["generation"] == 2


def causes(exc: ApiException) -> dict[str, str]:
    found: dict[str, str] = {}
    for cause in status_of(exc)["details"]["causes"]:
        found[cause["field"]] = "\n".join(filter(None, [found.get(cause["field"]), cause["message"]]))
    return found


def test_bindings_are_validated_against_the_crd_schema(emu: KubeApiEmulator, custom: Any) -> None:
    created = custom.create_namespaced_custom_object(*TB, NS, "targetbindings", binding("ok"))
    # The CRD's defaults are applied on the way in.
    assert created["spec"]["readinessGate"] is True and created["spec"]["ipFamily"] == "IPv4"
    bad = binding("bad")
    bad["spec"]["serviceRef"]["port"] = 70000
    bad["spec"]["target"] = {"memory": {"name": "pool"}, "gcpNeg": {"project": "Not_A_Project", "network": "default"}}
    del bad["spec"]["serviceRef"]["name"]
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*TB, NS, "targetbindings", bad)
    assert err.value.status == 422 and status_of(err.value)["reason"] == "Invalid"
    found = causes(err.value)
    assert found["spec.serviceRef.name"] == "Required value"
    assert "less than or equal to 65535" in found["spec.serviceRef.port"]
    assert "should match" in found["spec.target.gcpNeg.project"]
    assert "oneOf" in found["spec.target"]
    assert emu.get("negsync.io/v1alpha1", "TargetBinding", NS, "bad") is None
    # The CEL rule speaks where the structure is valid: two well-formed targets.
    two = binding("two")
    two["spec"]["target"]["gcpNeg"] = {"project": "my-project", "network": "default"}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*TB, NS, "targetbindings", two)
    assert "exactly one of gcpNeg, awsTargetGroup or memory must be set" in causes(err.value)["spec.target"]
    # A port name must look like one; status writes are checked too.
    named = binding("named")
    named["spec"]["serviceRef"]["port"] = "HTTP_PORT"
    with pytest.raises(ApiException):
        custom.create_namespaced_custom_object(*TB, NS, "targetbindings", named)
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object_status(*TB, NS, "targetbindings", "ok", {"status": {"conditions": [
            {"type": "Ready", "status": "Maybe", "reason": "", "message": "", "lastTransitionTime": "now"}]}})
    found = causes(err.value)
    assert {"status.conditions[0].status", "status.conditions[0].reason",
            "status.conditions[0].lastTransitionTime"} <= set(found)
    # Python-side writes are the test's own etcd: no validation.
    emu.create({**binding("raw"), "spec": {"anything": True}})
    assert emu.get("negsync.io/v1alpha1", "TargetBinding", NS, "raw") is not None


def test_unknown_fields_are_pruned_or_rejected_under_strict_validation(emu: KubeApiEmulator, custom: Any) -> None:
    extra = binding("t")
    extra["spec"]["bogus"] = 1
    extra["spec"]["serviceRef"]["nme"] = "typo"
    created = custom.create_namespaced_custom_object(*TB, NS, "targetbindings", extra)
    assert "bogus" not in created["spec"] and "nme" not in created["spec"]["serviceRef"]
    request = urllib.request.Request(f"{emu.url}/apis/negsync.io/v1alpha1/namespaces/{NS}/targetbindings"
                                     "?fieldValidation=Strict", method="POST",
                                     data=json.dumps({**extra, "metadata": {"name": "u"}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    body = json.loads(err.value.read())
    assert err.value.code == 400
    assert 'strict decoding error: unknown field "spec.bogus", unknown field "spec.serviceRef.nme"' in body["message"]


def test_strategic_merge_of_pod_conditions(core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]
    core.patch_namespaced_pod_status("a", NS, {"status": {"conditions": conditions}})
    core.patch_namespaced_pod_status("a", NS, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    got = {c.type: c.status for c in core.read_namespaced_pod("a", NS).status.conditions}
    assert got == {"PodScheduled": "True", "Ready": "True"}

    core.patch_namespaced_pod_status(
        "a", NS, {"status": {"conditions": [{"type": "PodScheduled", "$patch": "delete"}]}})
    assert [c.type for c in core.read_namespaced_pod("a", NS).status.conditions] == ["Ready"]


def test_strategic_merge_of_finalizers_and_containers(core: Any) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "c", "finalizers": ["a/x"]}, "data": {"k": "v"}})
    core.patch_namespaced_config_map("c", NS, {"metadata": {"finalizers": ["b/y"]}, "data": {"k": None}})
    cm = core.read_namespaced_config_map("c", NS)
    assert cm.metadata.finalizers == ["a/x", "b/y"] and not cm.data
    core.patch_namespaced_config_map("c", NS, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}})
    assert core.read_namespaced_config_map("c", NS).metadata.finalizers == ["b/y"]

    core.create_namespaced_pod(NS, pod("p"))
    core.patch_namespaced_pod("p", NS, {"spec": {"containers": [{"name": "side", "image": "busybox"}]}})
    assert [c.name for c in core.read_namespaced_pod("p", NS).spec.containers] == ["app", "side"]


def test_json_patch_and_merge_patch(core: Any, custom: Any) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    patched = core.patch_namespaced_config_map("c", NS, [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "replace", "path": "/data/k", "value": "w"},
        {"op": "add", "path": "/metadata/labels", "value": {"l": "1"}},
    ])
    assert patched.data == {"k": "w"} and patched.metadata.labels == {"l": "1"}
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("c", NS, [{"op": "test", "path": "/data/k", "value": "nope"}])
    assert err.value.status == 422

    custom.create_namespaced_custom_object(*TB, NS, "targetbindings", binding("t"))
    obj = custom.patch_namespaced_custom_object(*TB, NS, "targetbindings", "t",
                                                {"spec": {"ipFamily": None, "target": {"memory": {"name": "b"}}}})
    # The merge patch removed ipFamily; the CRD's default puts it back, as the API server does.
    assert obj["spec"]["target"] == {"memory": {"name": "b"}} and obj["spec"]["ipFamily"] == "IPv4"


def test_strategic_merge_on_custom_resource_is_unsupported(custom: Any) -> None:
    custom.create_namespaced_custom_object(*TB, NS, "targetbindings", binding("t"))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(*TB, NS, "targetbindings", "t", {"spec": {"serviceRef": {"port": 1}}},
                                              _content_type="application/strategic-merge-patch+json")
    assert err.value.status == 415


def test_patch_preconditions(core: Any) -> None:
    created = core.create_namespaced_pod(NS, pod("a"))
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("a", NS, {"metadata": {"uid": "not-the-uid", "labels": {"x": "1"}}})
    status = status_of(err.value)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert "field is immutable" in status["message"]
    assert status["kind"] == "Status" and status["status"] == "Failure" and status["details"]["name"] == "a"

    core.patch_namespaced_pod("a", NS, {"metadata": {"uid": created.metadata.uid, "labels": {"x": "1"}}})
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("a", NS, {"metadata": {"resourceVersion": created.metadata.resource_version,
                                                         "labels": {"x": "2"}}})
    assert err.value.status == 409 and status_of(err.value)["reason"] == "Conflict"
    assert core.read_namespaced_pod("a", NS).metadata.labels == {"x": "1"}


def test_lease_update_with_stale_resource_version_conflicts(api: client.ApiClient) -> None:
    leases: Any = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(NS, {"metadata": {"name": "leader"},
                                                "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})
    stale = lease.metadata.resource_version
    lease.spec.holder_identity = "b"
    renewed = leases.replace_namespaced_lease("leader", NS, lease)
    assert renewed.spec.holder_identity == "b" and renewed.metadata.resource_version != stale

    lease.spec.holder_identity = "c"
    lease.metadata.resource_version = stale
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease("leader", NS, lease)
    assert err.value.status == 409
    assert leases.read_namespaced_lease("leader", NS).spec.holder_identity == "b"

    lease.metadata.resource_version = None
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease("leader", NS, lease)
    assert err.value.status == 422


def test_put_preconditions_on_custom_resources(custom: Any) -> None:
    obj = custom.create_namespaced_custom_object(*TB, NS, "targetbindings", binding("t"))
    no_rv = json.loads(json.dumps(obj))
    del no_rv["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(*TB, NS, "targetbindings", "t", no_rv)
    assert err.value.status == 422

    other_uid = json.loads(json.dumps(obj))
    other_uid["metadata"]["uid"] = "different"
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(*TB, NS, "targetbindings", "t", other_uid)
    assert err.value.status == 409

    obj["spec"]["serviceRef"]["port"] = 90
    replaced = custom.replace_namespaced_custom_object(*TB, NS, "targetbindings", "t", obj)
    assert replaced["spec"]["serviceRef"]["port"] == 90
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(*TB, NS, "targetbindings", "t", obj)  # now stale
    assert err.value.status == 409


def test_create_generate_name_and_duplicates(core: Any) -> None:
    a = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "cfg-"}})
    b = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "cfg-"}})
    assert a.metadata.name.startswith("cfg-") and a.metadata.name != b.metadata.name
    assert a.metadata.uid and a.metadata.creation_timestamp and a.metadata.resource_version
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, {"metadata": {"name": a.metadata.name}})
    assert err.value.status == 409 and status_of(err.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", NS)
    assert err.value.status == 404 and status_of(err.value)["details"] == {"name": "missing", "kind": "configmaps"}


def test_delete_with_finalizers(emu: KubeApiEmulator, custom: Any) -> None:
    obj = custom.create_namespaced_custom_object(*TB, NS, "targetbindings", binding("t", finalizers=["negsync.io/x"]))
    rv = obj["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as err:
        custom.delete_namespaced_custom_object(*TB, NS, "targetbindings", "t",
                                               body={"preconditions": {"uid": "wrong"}})
    assert err.value.status == 409

    pending = custom.delete_namespaced_custom_object(*TB, NS, "targetbindings", "t")
    assert pending["metadata"]["deletionTimestamp"]
    assert pending["metadata"]["generation"] == 2
    still = custom.get_namespaced_custom_object(*TB, NS, "targetbindings", "t")
    assert still["metadata"]["deletionTimestamp"]

    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(*TB, NS, "targetbindings", "t",
                                              {"metadata": {"finalizers": ["negsync.io/x", "new/one"]}})
    assert err.value.status == 422

    custom.patch_namespaced_custom_object(*TB, NS, "targetbindings", "t", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(*TB, NS, "targetbindings", "t")
    assert err.value.status == 404
    events = drain(custom.list_namespaced_custom_object, *TB, NS, "targetbindings", resource_version=rv)
    assert events == [("MODIFIED", "t"), ("DELETED", "t")]


def test_delete_without_finalizers_answers_like_the_api(core: Any) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})
    core.create_namespaced_pod(NS, pod("p"))
    assert core.delete_namespaced_pod("p", NS).metadata.name == "p"  # pods return the object
    result = core.api_client.call_api(*core.api_client.param_serialize(
        "DELETE", "/api/v1/namespaces/{namespace}/configmaps/{name}", path_params={"namespace": NS, "name": "c"}))
    result.read()
    assert json.loads(result.data)["status"] == "Success"
    assert core.list_namespaced_config_map(NS).items == []


def test_noop_write_keeps_resource_version_and_emits_nothing(emu: KubeApiEmulator, core: Any) -> None:
    cm = core.create_namespaced_config_map(NS, {"metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}})
    rv = cm.metadata.resource_version
    same = core.patch_namespaced_config_map("c", NS, {"data": {"k": "v"}, "metadata": {"labels": {"a": "b"}}})
    assert same.metadata.resource_version == rv
    assert core.replace_namespaced_config_map("c", NS, cm).metadata.resource_version == rv
    assert str(emu.resource_version) == rv
    assert drain(core.list_namespaced_config_map, NS, resource_version=rv) == []


def test_timestamps_are_normalised_like_go_types(emu: KubeApiEmulator, api: client.ApiClient, core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    condition = {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T10:00:00.123+02:00"}
    core.patch_namespaced_pod_status("a", NS, {"status": {"conditions": [condition]}})
    read = core.read_namespaced_pod("a", NS)
    assert stored(emu, "v1", "Pod", "a")["status"]["conditions"][0]["lastTransitionTime"] == "2024-01-01T08:00:00Z"
    # Read-modify-write of an unchanged object: the client re-encodes times as +00:00.
    rv = read.metadata.resource_version
    assert core.replace_namespaced_pod("a", NS, read).metadata.resource_version == rv

    leases: Any = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(NS, {"metadata": {"name": "l"},
                                                "spec": {"renewTime": "2024-01-01T00:00:00.5+00:00"}})
    assert stored(emu, "coordination.k8s.io/v1", "Lease", "l")["spec"]["renewTime"] == "2024-01-01T00:00:00.500000Z"
    assert lease.spec.renew_time.microsecond == 500000


def test_injected_faults(emu: KubeApiEmulator, core: Any) -> None:
    emu.inject("GET", r"/namespaces/default/pods$", 500)
    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod(NS)
    assert err.value.status == 500 and status_of(err.value)["reason"] == "InternalError"
    core.list_namespaced_pod(NS)  # count=1: the next one succeeds

    # POST is not idempotent, so urllib3 hands the 429 straight to the caller.
    emu.inject("POST", r"/configmaps$", 429, count=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})
        assert err.value.status == 429 and err.value.headers is not None
        assert err.value.headers["Retry-After"] == "3"
        assert status_of(err.value)["reason"] == "TooManyRequests"
    core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})

    # urllib3's default Retry honours Retry-After on 429/503 for GET: one transparent retry.
    emu.clear_requests()
    emu.inject("GET", r"/configmaps$", 429, retry_after=1)
    started = time.monotonic()
    assert [c.metadata.name for c in core.list_namespaced_config_map(NS).items] == ["c"]
    assert time.monotonic() - started >= 0.9
    assert [r.method for r in emu.requests] == ["GET", "GET"]


def test_request_log_records_bodies_and_content_types(emu: KubeApiEmulator, core: Any) -> None:
    core.create_namespaced_pod(NS, pod("a"))
    core.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"x": "y"}}})
    last = emu.requests[-1]
    assert last.method == "PATCH" and last.path == "/api/v1/namespaces/default/pods/a"
    assert last.content_type == "application/strategic-merge-patch+json"
    assert last.body == {"metadata": {"labels": {"x": "y"}}}


# ----------------------------------------------------- other resources and API


def test_python_side_api_shares_storage_and_events(emu: KubeApiEmulator, core: Any) -> None:
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    emu.create(pod("a") | {"status": {"phase": "Running"}})
    assert core.read_namespaced_pod("a", NS).status.phase == "Running"  # seeding status is allowed
    emu.patch_status("v1", "Pod", NS, "a", {"podIP": "10.0.0.1"})
    got = emu.get("v1", "pods", NS, "a")
    assert got is not None and got["status"] == {"phase": "Running", "podIP": "10.0.0.1"}
    got["metadata"]["labels"] = {"z": "1"}
    emu.update(got)
    assert [p["metadata"]["name"] for p in emu.list_objects("v1", "Pod")] == ["a"]
    emu.delete("v1", "Pod", NS, "a")
    assert emu.get("v1", "Pod", NS, "a") is None
    events = drain(core.list_namespaced_pod, NS, resource_version=rv)
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_cluster_scoped_and_grouped_resources(api: client.ApiClient, core: Any) -> None:
    core.create_namespace({"metadata": {"name": "team"}})
    assert core.read_namespace("team").status.phase == "Active"
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    node = core.create_node({"metadata": {"name": "n1"}, "status": ready})
    assert node.status.conditions[0].type == "Ready"  # nodes may set status on create
    core.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert core.read_node("n1").status.conditions[0].status == "False"

    discovery: Any = client.DiscoveryV1Api(api)
    discovery.create_namespaced_endpoint_slice(NS, {
        "metadata": {"name": "svc-abc", "labels": {"kubernetes.io/service-name": "svc"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]})
    slices = discovery.list_namespaced_endpoint_slice(NS, label_selector="kubernetes.io/service-name=svc")
    assert [s.metadata.name for s in slices.items] == ["svc-abc"]

    core.create_namespaced_service(NS, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})
    core.patch_namespaced_service_status("svc", NS, {"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
    assert core.read_namespaced_service("svc", NS).status.load_balancer.ingress[0].ip == "1.2.3.4"

    events: Any = client.EventsV1Api(api)
    events.create_namespaced_event(NS, {"metadata": {"name": "e1"}, "eventTime": "2024-01-01T00:00:00.000000Z",
                                        "reason": "Synced", "action": "Sync", "type": "Normal",
                                        "reportingController": "negsync", "reportingInstance": "x"})
    core.create_namespaced_event(NS, {"metadata": {"name": "e2"}, "involvedObject": {"kind": "Pod", "name": "p"},
                                      "reason": "Synced"})
    assert [e.metadata.name for e in core.list_namespaced_event(NS, field_selector="involvedObject.name=p").items] == [
        "e2"]

    webhooks: Any = client.AdmissionregistrationV1Api(api)
    webhooks.create_mutating_webhook_configuration({"metadata": {"name": "negsync"}, "webhooks": []})
    patched = webhooks.patch_mutating_webhook_configuration("negsync", {"metadata": {"labels": {"a": "b"}}})
    assert patched.metadata.labels == {"a": "b"}

    assert client.VersionApi(api).get_code().major == "1"
    assert "negsync.io" in [g.name for g in client.ApisApi(api).get_api_versions().groups]


def test_kubeconfig_points_at_the_emulator(emu: KubeApiEmulator, tmp_path: Path) -> None:
    path = emu.write_kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == emu.url
    configuration.no_proxy = "127.0.0.1,localhost"
    with client.ApiClient(configuration) as api:
        assert client.CoreV1Api(api).list_namespace().items == []


def test_writes_carry_managed_fields_like_a_real_server(emu: KubeApiEmulator, core: Any) -> None:
    """Objects weigh what they weigh on a cluster: every write is attributed to a field manager."""
    created = core.create_namespaced_pod(NS, pod("a", labels={"app": "web"}))
    (entry,) = created.metadata.managed_fields
    assert entry.manager == "OpenAPI-Generator" and entry.operation == "Update"  # the client's User-Agent
    assert "f:containers" in entry.fields_v1["f:spec"] and 'k:{"name":"app"}' in entry.fields_v1["f:spec"]["f:containers"]
    rv = created.metadata.resource_version
    core.patch_namespaced_pod_status("a", NS, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                                     field_manager="kubelet")
    stored = emu.get("v1", "Pod", NS, "a")
    assert stored is not None
    managers = {(e["manager"], e.get("subresource")) for e in stored["metadata"]["managedFields"]}
    assert managers == {("OpenAPI-Generator", None), ("kubelet", "status")}
    # A write that changes nothing changes nothing, managedFields included.
    again = core.patch_namespaced_pod_status("a", NS, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                                             field_manager="kubelet")
    assert again.metadata.resource_version == stored["metadata"]["resourceVersion"] != rv


def test_pod_readiness_gates_and_conditions_are_validated(core: Any) -> None:
    """What the API server refuses of negsync's pod writes: a gate that is no qualified name (a
    binding name over 63 characters), a gate added after creation, a condition status not in
    True/False/Unknown."""
    long_gate = "target-health.negsync.io/" + "b" * 64
    bad = pod("a")
    bad["spec"]["readinessGates"] = [{"conditionType": long_gate}]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(NS, bad)
    assert err.value.status == 422
    assert status_of(err.value)["details"]["causes"][0]["field"] == "spec.readinessGates[0].conditionType"
    good = pod("b")
    good["spec"]["readinessGates"] = [{"conditionType": "target-health.negsync.io/web"}]
    core.create_namespaced_pod(NS, good)
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("b", NS, {"spec": {"readinessGates": [{"conditionType": "x.io/y"}]}})
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod_status("b", NS, {"status": {"conditions": [
            {"type": "target-health.negsync.io/web", "status": "true"}]}})
    assert status_of(err.value)["details"]["causes"][0]["field"] == "status.conditions[0].status"
    core.patch_namespaced_pod_status("b", NS, {"status": {"conditions": [
        {"type": "target-health.negsync.io/web", "status": "True", "reason": "LoadBalancerHealthy"}]}})
