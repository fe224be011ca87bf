"""The watcher against the API emulator: relist on 410, resume on drops, time-outs on silence."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from negsync.kube.caches import Store, decode_pod
from negsync.kube.watching import ResourceKind, Watcher
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import pod


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str | None, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, old: Any, new: Any) -> None:
        with self.lock:
            self.changes.append((old and old.name, new and new.name))


def make_watcher(api: client.ApiClient, recorder: Recorder, **kwargs: Any) -> Watcher[Any]:
    core = client.CoreV1Api(api)
    kind = ResourceKind("pods", core.list_pod_for_all_namespaces, core.list_namespaced_pod, decode_pod)
    return Watcher(kind=kind, store=Store(), on_change=recorder, backoff_base=0.01, **kwargs)


def run_in_background(watcher: Watcher[Any]) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_relist_after_410_misses_nothing_and_replays_nothing(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    for i in range(5):
        kube.create(pod(f"p{i}", ip=f"10.0.0.{i + 1}"))
    recorder = Recorder()
    watcher = make_watcher(api_client, recorder, watch_timeout=1)
    watcher.relist()
    assert len(recorder.changes) == 5
    recorder.changes.clear()
    # While nobody watches: one change, one delete, one add — then history is compacted.
    kube.patch("v1", "Pod", "shop", "p1", {"metadata": {"labels": {"app": "web", "v": "2"}}})
    kube.delete("v1", "Pod", "shop", "p2")
    kube.create(pod("p9", ip="10.0.0.9"))
    kube.compact()
    watcher.step()  # the watch gets 410 and drops its resourceVersion
    assert watcher.resource_version is None
    watcher.step()  # relist
    assert watcher.relists == 2
    assert sorted(recorder.changes, key=str) == sorted([("p1", "p1"), ("p2", None), (None, "p9")], key=str)
    assert {p.name for p in watcher.store.values()} == {"p0", "p1", "p3", "p4", "p9"}


def test_a_dropped_watch_resumes_from_its_resource_version(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(pod("p0", ip="10.0.0.1"))
    recorder = Recorder()
    watcher = make_watcher(api_client, recorder, watch_timeout=30)
    stop, thread = run_in_background(watcher)
    try:
        wait_for(lambda: kube.watch_count == 1)
        kube.create(pod("p1", ip="10.0.0.2"))
        wait_for(lambda: watcher.store.get(("shop", "p1")) is not None)
        assert kube.drop_watches() == 1
        kube.create(pod("p2", ip="10.0.0.3"))  # happens while the watch is down
        wait_for(lambda: watcher.store.get(("shop", "p2")) is not None)
        assert watcher.relists == 1  # resumed, never relisted
        assert [c for c in recorder.changes if c == (None, "p2")] == [(None, "p2")]
        assert len(recorder.changes) == 3
    finally:
        stop.set()
        watcher.interrupt()
        thread.join(timeout=5)


def test_unchanged_slim_records_are_not_reported(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(pod("p0", ip="10.0.0.1"))
    recorder = Recorder()
    watcher = make_watcher(api_client, recorder, watch_timeout=1)
    watcher.relist()
    kube.patch("v1", "Pod", "shop", "p0", {"metadata": {"annotations": {"noise": "1"}}})
    watcher.step()
    assert recorder.changes == [(None, "p0")]
    assert watcher.resource_version == str(kube.resource_version) or int(watcher.resource_version or 0) > 0


def test_a_silent_stream_times_out_instead_of_hanging(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.bookmark_interval = 60.0  # the server says nothing at all
    recorder = Recorder()
    watcher = make_watcher(api_client, recorder, watch_timeout=60, read_timeout_slack=-59.5)
    watcher.relist()
    started = time.monotonic()
    watcher.step()  # read timeout after ~0.5 s, then a short back-off
    assert time.monotonic() - started < 5
    assert watcher.resource_version  # kept: the next step resumes rather than relists


def test_api_errors_back_off_and_recover(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(pod("p0", ip="10.0.0.1"))
    recorder = Recorder()
    watcher = make_watcher(api_client, recorder, watch_timeout=1)
    # (A 429 with Retry-After is retried inside urllib3 already; a 500 reaches the watcher.)
    kube.inject("GET", r"/api/v1/pods", 500, count=2)
    watcher.step()
    watcher.step()
    assert not watcher.synced.is_set()
    watcher.step()
    assert watcher.synced.is_set() and recorder.changes == [(None, "p0")]
