"""The watcher: relist on 410, resume on drops, time-outs on silence (against the API emulator), and its back-off
between failed steps (negsync.core.backoff's rule and the server's Retry-After)."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from negsync.core.clock import RealClock
from negsync.kube.caches import Store, decode_pod
from negsync.kube.watching import ResourceKind, Watcher
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import pod
from tests.support.waiting import wait_for


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


# -- lists as client-go makes them ----------------------------------------------------------------

def list_queries(kube: KubeApiEmulator) -> list[dict[str, str]]:
    return [r.query for r in kube.requests if r.path == "/api/v1/pods" and r.query.get("watch") != "true"]


def test_first_list_asks_the_watch_cache_with_a_page_limit(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    for i in range(5):
        kube.create(pod(f"p{i}", ip=f"10.0.0.{i + 1}"))
    watcher = make_watcher(api_client, Recorder(), page_size=2)
    watcher.relist()
    # reflector.relistResourceVersion: "0" first; the pager always sends its limit; the watch cache
    # answers whole, so one request holds all five.
    (query,) = list_queries(kube)
    assert query["resourceVersion"] == "0" and query["limit"] == "2"
    assert len(watcher.store) == 5 and watcher.resource_version == str(kube.resource_version)


def test_a_server_that_pages_is_followed_and_paging_is_kept(api_client: client.ApiClient) -> None:
    with KubeApiEmulator(bookmark_interval=0.2, watch_cache=False) as kube:
        api = client.ApiClient(kube.client_configuration())
        for i in range(5):
            kube.create(pod(f"p{i}", ip=f"10.0.0.{i + 1}"))
        recorder = Recorder()
        watcher = make_watcher(api, recorder, page_size=2, watch_timeout=1)
        watcher.relist()
        queries = list_queries(kube)
        assert [q.get("limit") for q in queries] == ["2", "2", "2"]
        assert queries[0]["resourceVersion"] == "0" and "continue" not in queries[0]
        # pager.go: continuations carry the token and no resourceVersion.
        assert all(q.get("continue") and "resourceVersion" not in q for q in queries[1:])
        assert len(watcher.store) == 5 and len(recorder.changes) == 5
        # After a 410 the relist is "not older than" the last version seen, still paged
        # (reflector: paginatedResult), so this server answers it from storage at that version.
        last = watcher.resource_version
        kube.create(pod("p9", ip="10.0.0.9"))
        kube.compact()
        kube.clear_requests()
        watcher.step()
        watcher.step()
        relist = list_queries(kube)
        assert relist[0]["limit"] == "2"
        assert relist[0]["resourceVersion"] in (last, str(kube.resource_version))
        assert {p.name for p in watcher.store.values()} == {f"p{i}" for i in range(5)} | {"p9"}
        api.close()


def test_relist_after_410_is_not_older_than_the_last_version_seen_and_unpaged(
        kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(pod("p0", ip="10.0.0.1"))
    watcher = make_watcher(api_client, Recorder(), watch_timeout=1, page_size=2)
    watcher.relist()
    kube.create(pod("p1", ip="10.0.0.2"))
    watcher.step()  # the watch sees p1, then times out
    seen = watcher.resource_version
    assert seen == str(kube.resource_version)
    kube.create(pod("p2", ip="10.0.0.3"))
    kube.compact()
    kube.clear_requests()
    watcher.step()  # 410
    watcher.step()  # relist
    (query,) = list_queries(kube)
    assert query == {"resourceVersion": seen}  # no limit: served by the watch cache, not etcd
    assert {p.name for p in watcher.store.values()} == {"p0", "p1", "p2"}


def test_a_too_large_relist_falls_back_to_a_consistent_list(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    for i in range(3):
        kube.create(pod(f"p{i}", ip=f"10.0.0.{i + 1}"))
    watcher = make_watcher(api_client, Recorder(), watch_timeout=1, page_size=2)
    watcher.relist()
    seen = watcher.resource_version
    # This API server's watch cache lags behind the version the watcher saw (another replica, a
    # restart): its "not older than" read answers 504 Too large resource version.
    kube.inject("GET", r"^/api/v1/pods$", 504, message=f"Timeout: Too large resource version: {seen}, current: 1")
    kube.create(pod("p3", ip="10.0.0.4"))
    kube.clear_requests()
    watcher.resource_version = None  # as after a 410 on the watch
    watcher.relist()
    # reflector: isTooLargeResourceVersionError -> lastSyncResourceVersionUnavailable -> list again at
    # once with resourceVersion "" (unpaged, as the failed "not older than" attempt was).
    assert list_queries(kube) == [{"resourceVersion": seen}, {}]
    assert {p.name for p in watcher.store.values()} == {"p0", "p1", "p2", "p3"}
    # Once a list succeeded the last version is trusted again.
    kube.clear_requests()
    watcher.relist()
    assert list_queries(kube) == [{"resourceVersion": str(kube.resource_version)}]


def test_an_expired_continue_token_restarts_as_one_full_list(api_client: client.ApiClient) -> None:
    with KubeApiEmulator(bookmark_interval=0.2, watch_cache=False) as kube:
        api = client.ApiClient(kube.client_configuration())
        core = client.CoreV1Api(api)
        for i in range(5):
            kube.create(pod(f"p{i}", ip=f"10.0.0.{i + 1}"))

        def list_all(**kwargs: Any) -> Any:
            if kwargs.get("_continue"):
                kube.create(pod("late", ip="10.0.0.99"))
                kube.compact()  # the first page's snapshot is gone before the second page is read
            return core.list_pod_for_all_namespaces(**kwargs)

        kind = ResourceKind("pods", list_all, core.list_namespaced_pod, decode_pod)
        recorder = Recorder()
        watcher = Watcher(kind=kind, store=Store(), on_change=recorder, page_size=2)
        watcher.relist()
        queries = list_queries(kube)
        assert [(q.get("limit"), bool(q.get("continue"))) for q in queries] == [("2", False), ("2", True), (None, False)]
        assert queries[2] == {"resourceVersion": "0"}  # pager FullListIfExpired: original options, no limit
        assert {p.name for p in watcher.store.values()} == {f"p{i}" for i in range(5)} | {"late"}
        assert len(recorder.changes) == 6  # the discarded first page reported nothing
        api.close()


def test_list_items_are_decoded_across_any_chunk_boundary() -> None:
    from negsync.kube.watching import _list_items

    items = [{"metadata": {"name": f"p{i}", "annotations": {"note": 'braces } ] { [ and "quotes" and ünïcödé 🚀'}},
              "spec": {"n": 12345678901234567890, "f": -1.5e-3, "ok": True, "none": None, "list": [1, [2, {}]]}}
             for i in range(4)]
    document = {"kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 7}, "items": items}
    for text in (json.dumps(document), json.dumps(document, indent=2), json.dumps({**document, "metadata": document["metadata"]},
                                                                             separators=(",", ":"))):
        data = text.encode()
        for size in (1, 2, 5, 17, 4096, len(data)):
            meta: dict[str, Any] = {}
            decoded = list(_list_items((data[i:i + size] for i in range(0, len(data), size)), meta))
            assert decoded == items, size
            assert meta == document["metadata"]
    # Items after metadata, before it, absent or null.
    for doc in ({"items": items[:1], "metadata": {"resourceVersion": "1"}}, {"metadata": {"resourceVersion": "1"}},
                {"items": None, "metadata": {"resourceVersion": "1"}}, {"items": [], "metadata": {}}):
        meta = {}
        assert list(_list_items([json.dumps(doc).encode()], meta)) == (doc.get("items") or [])
        assert meta == doc["metadata"]
    with pytest.raises(ValueError):
        list(_list_items([b'{"items": [{"a": 1}'], {}))


class SleepRecorder(RealClock):
    """Real time, but sleeps are recorded instead of slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def failing_watcher(error: Callable[[], Exception], clock: SleepRecorder) -> Watcher[Any]:
    def list_all(**_: Any) -> Any:
        raise error()

    kind = ResourceKind("pods", list_all, None, decode_pod)
    return Watcher(kind=kind, store=Store(), on_change=lambda old, new: None, clock=clock,
                   backoff_base=0.5, backoff_max=30.0)


def test_failures_back_off_between_half_and_all_of_a_doubling_step_capped_even_after_thousands() -> None:
    # A long API outage: every step fails at once.  2.0 ** 1100 used to overflow and kill the watcher thread.
    clock = SleepRecorder()
    watcher = failing_watcher(lambda: OSError("connection refused"), clock)
    stop = threading.Event()
    for _ in range(1100):
        watcher.step(stop)
    assert len(clock.sleeps) == 1100
    for n, slept in enumerate(clock.sleeps, start=1):
        step = min(30.0, 0.5 * 2.0 ** min(n - 1, 64))
        assert step / 2 <= slept <= step, (n, slept)
    assert watcher.step_deadline >= max(clock.sleeps)  # the liveness heartbeat's bound holds


def test_retry_after_as_an_http_date_is_honoured() -> None:
    def unavailable() -> ApiException:
        exc = ApiException(status=503, reason="Service Unavailable")
        exc.headers = {"Retry-After": email.utils.formatdate(time.time() + 20, usegmt=True)}
        return exc

    clock = SleepRecorder()
    failing_watcher(unavailable, clock).step(threading.Event())
    assert len(clock.sleeps) == 1 and 15 <= clock.sleeps[0] <= 20
