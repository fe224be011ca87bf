"""Events: created once per (object, reason, message), repeats bump count instead of piling up."""

from __future__ import annotations

from kubernetes import client

from negsync.kube.events import EventRecorder, ObjectRef
from tests.emulators.kubeapi import KubeApiEmulator


def test_repeats_bump_the_count_of_one_event(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    recorder = EventRecorder(core_api=client.CoreV1Api(api_client), bump_seconds=0.0)
    ref = ObjectRef("negsync.io/v1alpha1", "TargetBinding", "shop", "web", "uid-1")
    for _ in range(3):
        recorder.warning(ref, "SyncFailed", "throttled")
    recorder.warning(ref, "SyncFailed", "another message")
    events = kube.list_objects("v1", "Event", "shop")
    by_message = {e["message"]: e for e in events}
    assert len(events) == 2
    assert by_message["throttled"]["count"] == 3
    assert by_message["throttled"]["involvedObject"]["name"] == "web"
    assert by_message["another message"]["count"] == 1


def test_repeats_within_the_bump_interval_write_nothing(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    recorder = EventRecorder(core_api=client.CoreV1Api(api_client), bump_seconds=3600.0)
    ref = ObjectRef("v1", "Service", "shop", "web")
    kube.clear_requests()
    for _ in range(5):
        recorder.normal(ref, "Synced", "ok")
    writes = [r for r in kube.requests if r.method in ("POST", "PATCH") and "/events" in r.path]
    assert len(writes) == 1


def test_the_recorder_keeps_only_recent_events_in_memory() -> None:
    class NoApi:
        def create_namespaced_event(self, *args: object, **kwargs: object) -> None:
            return None

    recorder = EventRecorder(core_api=NoApi())
    ref = ObjectRef("v1", "Pod", "shop", "web-0")
    for i in range(5000):  # a long-lived controller: pods come and go, each message is new
        recorder.warning(ref, "GateTimeout", f"pod web-{i} (10.1.{i // 250}.{i % 250}) timed out")
    assert len(recorder.recorded) <= 256
    assert recorder.recorded[-1][3] == "pod web-4999 (10.1.19.249) timed out"
