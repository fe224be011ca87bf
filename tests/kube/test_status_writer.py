"""The status writer: latest wins, no duplicate writes while the cache lags, never a lost update."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from negsync.core.model import BindingKey
from negsync.kube.status_writer import StatusWriter
from tests.emulators.kubeapi import merge_patch

KEY = BindingKey("shop", "web")


class Server:
    """The status subresource as the API server keeps it: merge patches applied to a stored object."""

    def __init__(self) -> None:
        self.stored: dict[str, Any] = {}
        self.patches: list[Mapping[str, Any]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        self.entered.set()
        assert self.release.wait(10), "test never released the write"
        self.patches.append(body)
        self.stored = merge_patch(self.stored, body["status"])


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def writer(server: Server) -> StatusWriter:
    w = StatusWriter(patch_status=server.patch, workers=2)
    w.start()
    yield w
    server.release.set()
    w.stop(timeout=5)


def submit(writer: StatusWriter, status: Mapping[str, Any], *, cached: Mapping[str, Any]) -> None:
    writer.submit(key=KEY, namespace="shop", name="web", cached_json=json.dumps(cached), status=status)


def test_submit_does_not_wait_for_the_api_server_and_the_latest_status_wins(server: Server, writer: StatusWriter) -> None:
    server.release.clear()
    submit(writer, {"n": 1}, cached={})  # returns although the PATCH is held
    assert server.entered.wait(5)
    for n in range(2, 50):  # a burst of reconciles while that write is in flight
        submit(writer, {"n": n}, cached={})
    server.release.set()
    assert writer.flush(timeout=5)
    assert server.stored == {"n": 49}
    assert len(server.patches) == 2  # the one in flight, then only the newest


def test_no_second_write_while_the_cache_has_not_shown_our_own(server: Server, writer: StatusWriter) -> None:
    submit(writer, {"degraded": ["a"]}, cached={})
    assert writer.flush(timeout=5)
    submit(writer, {"degraded": ["a"]}, cached={})  # the cache still shows the old status
    assert writer.flush(timeout=5)
    assert len(server.patches) == 1


def test_keys_dropped_while_the_cache_lags_are_still_cleared(server: Server, writer: StatusWriter) -> None:
    submit(writer, {"endpoints": 1, "degraded": ["a"]}, cached={})
    assert writer.flush(timeout=5)
    submit(writer, {"endpoints": 1}, cached={})  # cache behind: the patch is computed from our own write
    assert writer.flush(timeout=5)
    assert server.stored == {"endpoints": 1}


def test_a_status_changed_by_someone_else_is_written_again(server: Server, writer: StatusWriter) -> None:
    submit(writer, {"n": 1}, cached={})
    assert writer.flush(timeout=5)
    server.stored = {"n": 7}  # edited behind our back; the cache shows it
    submit(writer, {"n": 1}, cached={"n": 7})
    assert writer.flush(timeout=5)
    assert server.stored == {"n": 1} and len(server.patches) == 2


def test_going_back_to_the_cached_status_while_a_write_is_in_flight_is_not_lost(
        server: Server, writer: StatusWriter) -> None:
    server.release.clear()
    submit(writer, {"n": 2}, cached={"n": 1})
    assert server.entered.wait(5)
    submit(writer, {"n": 1}, cached={"n": 1})  # equal to the cache, but not to what is being written
    server.release.set()
    assert writer.flush(timeout=5)
    assert server.stored == {"n": 1}


def test_a_standby_forgets_what_was_waiting(server: Server, writer: StatusWriter) -> None:
    server.release.clear()
    submit(writer, {"n": 1}, cached={})
    assert server.entered.wait(5)
    submit(writer, {"n": 2}, cached={})
    writer.clear()  # leadership lost
    server.release.set()
    assert writer.flush(timeout=5)
    assert server.stored == {"n": 1}


def test_a_slow_status_write_does_not_hold_the_reconcile(kube: Any, api_client: Any) -> None:
    """Issue 18: the status PATCH was made inside the reconcile, so cold start was paced by the API server."""
    from negsync.kube.controller import Controller
    from negsync.providers.memory import MemoryProvider
    from tests.kube.conftest import binding, endpoint_slice, pod, service
    from tests.kube.test_binding_reconciler import settings
    from tests.support.waiting import wait_for

    ctl = Controller(api_client=api_client, provider=MemoryProvider(), settings=settings())
    held = threading.Event()
    release = threading.Event()
    original = ctl.custom.patch_namespaced_custom_object_status

    def slow_status_patch(*args: Any, **kwargs: Any) -> Any:
        held.set()
        release.wait(10)
        return original(*args, **kwargs)

    ctl.custom.patch_namespaced_custom_object_status = slow_status_patch  # type: ignore[method-assign]
    ctl.start()
    try:
        kube.create(service())
        kube.create(pod("web-0", ip="10.1.0.1"))
        kube.create(endpoint_slice("web-abc", ["10.1.0.1"]))
        kube.create(binding(gate=False))
        assert held.wait(10), "no status write started"
        done = threading.Event()
        threading.Thread(target=lambda: (ctl.reconcile(BindingKey("shop", "web")), done.set()), daemon=True).start()
        assert done.wait(5), "the reconcile waited for the status PATCH"
        release.set()
        wait_for(lambda: ((kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}).get("status") or {})
                 .get("endpoints", {}).get("registered") == 1, what="status written")
    finally:
        release.set()
        ctl.stop(timeout=5)


def test_a_stale_cache_showing_the_new_status_does_not_hide_a_later_write(server: Server, writer: StatusWriter) -> None:
    # The soak's stuck binding: two writes in one watch latency (F, then A), then a reconcile
    # computes F again while the cache shows only the first write.  The cache then equals the new
    # status, yet the server holds A; status-only events start no reconcile, so a write skipped
    # here stays lost until the resync (300 s).
    synced, progressing = {"registered": 100}, {"registered": 75}
    submit(writer, synced, cached={})
    assert writer.flush(timeout=5)
    submit(writer, progressing, cached={})  # the cache has not shown the first write yet
    assert writer.flush(timeout=5)
    submit(writer, synced, cached=synced)  # the cache shows the first write only
    assert writer.flush(timeout=5)
    assert server.stored == synced


def test_keys_dropped_while_the_cache_is_ambiguous_are_cleared_on_the_server(
        server: Server, writer: StatusWriter) -> None:
    submit(writer, {"n": 1, "degraded": ["a"]}, cached={})
    assert writer.flush(timeout=5)
    # The cache shows neither our write nor what it started from: it may be stale or someone
    # else's; the server holds "degraded" either way, so the patch must clear it.
    submit(writer, {"n": 2}, cached={"n": 0})
    assert writer.flush(timeout=5)
    assert server.stored == {"n": 2}


def test_a_failed_write_asks_for_a_reconcile_so_a_status_skipped_behind_it_is_not_lost() -> None:
    # A reconcile whose status equals the write in flight is skipped; if that write then fails
    # (a time-out under load), nothing would compute the status again before the resync.
    released = threading.Event()
    failed: list[BindingKey] = []

    def failing(namespace: str, name: str, body: Mapping[str, Any]) -> None:
        assert released.wait(10)
        raise TimeoutError("read timed out")

    writer = StatusWriter(patch_status=failing, workers=1, on_failure=failed.append)
    writer.start()
    try:
        submit(writer, {"n": 1}, cached={})
        submit(writer, {"n": 1}, cached={})  # equal to the write in flight: skipped
        released.set()
        assert writer.flush(timeout=5)
        assert failed == [KEY]
    finally:
        writer.stop(timeout=5)


def test_stop_keeps_to_its_budget_and_leaves_no_writer_thread_behind() -> None:
    # A leader's shutdown with thousands of statuses waiting (a cold start of 5,000 bindings):
    # stop() flushed for its whole budget, then joined the threads, so it returned late — after the
    # manager had stopped waiting for it — with writers still inside a PATCH; a daemon thread in an
    # HTTP call at interpreter exit aborted the process (SIGABRT).
    def slow_patch(namespace: str, name: str, body: Mapping[str, Any]) -> None:
        time.sleep(0.3)

    writer = StatusWriter(patch_status=slow_patch, workers=2)
    writer.start()
    for i in range(100):
        writer.submit(key=BindingKey("shop", f"b{i}"), namespace="shop", name=f"b{i}", cached_json="",
                      status={"observedGeneration": 1})
    threads = list(writer._threads)
    started = time.monotonic()
    writer.stop(timeout=2.0)
    assert time.monotonic() - started <= 2.0
    assert not any(t.is_alive() for t in threads)
