"""Handlers: which binding keys a changed object names, and which of them go in the priority lane.

Pure: caches filled from decoded objects, an enqueue that records.  The priority rule under test
is the handlers' one judgement — an address that leaves the serving set (newly terminating, or
gone) must overtake pending attaches — and everything else is enqueued in the normal lane.
"""

from __future__ import annotations

from typing import Any

import pytest

from negsync.core.model import BindingKey
from negsync.kube.caches import (
    GATE_PREFIX,
    Caches,
    Store,
    decode_binding,
    decode_node,
    decode_pod,
    decode_service,
    decode_slice,
)
from negsync.kube.handlers import Handlers, all_keys
from tests.kube.conftest import binding, endpoint_slice, pod, service

WEB, WEB_TOO, API = BindingKey("shop", "web"), BindingKey("shop", "web-too"), BindingKey("shop", "api")
OTHER_WEB = BindingKey("other", "web")
BINDINGS = (("web", "shop", "web"), ("web-too", "shop", "web"), ("api", "shop", "api"), ("web", "other", "web"))


class Recorder:
    def __init__(self) -> None:
        self.enqueued: list[tuple[BindingKey, bool]] = []
        self.changed: list[BindingKey] = []

    def enqueue(self, key: BindingKey, priority: bool) -> None:
        self.enqueued.append((key, priority))

    def keys(self) -> dict[BindingKey, bool]:
        return dict(self.enqueued)


@pytest.fixture
def caches() -> Caches:
    """Two bindings of shop/web, one of shop/api, one of other/web."""
    caches = Caches()
    for name, ns, svc in BINDINGS:
        caches.bindings.put((ns, name), decode_binding(binding(name, ns=ns, svc=svc)))
    return caches


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def handlers(caches: Caches, recorder: Recorder) -> Handlers:
    return Handlers(caches=caches, enqueue=recorder.enqueue, endpoints_changed=recorder.changed.append)


def web_slice(ips: list[str], **kwargs: Any) -> Any:
    return decode_slice(endpoint_slice("web-abc", ips, **kwargs))


# -- slices -------------------------------------------------------------------------------------


def test_a_new_slice_enqueues_every_binding_of_its_service_in_the_normal_lane(handlers: Handlers,
                                                                              recorder: Recorder) -> None:
    handlers.on_slice(None, web_slice(["10.0.0.1"]))
    assert recorder.keys() == {WEB: False, WEB_TOO: False}
    assert sorted(recorder.changed) == [WEB, WEB_TOO]  # the start of "endpoint change -> cloud call"


@pytest.mark.parametrize(
    ("old", "new", "priority"),
    [
        # An endpoint turned terminating: its detach overtakes pending attaches.
        (dict(ips=["10.0.0.1", "10.0.0.2"]), dict(ips=["10.0.0.1", "10.0.0.2"], terminating=("10.0.0.2",)), True),
        # An endpoint vanished from the slice.
        (dict(ips=["10.0.0.1", "10.0.0.2"]), dict(ips=["10.0.0.1"]), True),
        # An endpoint was added: an attach, no hurry over others.
        (dict(ips=["10.0.0.1"]), dict(ips=["10.0.0.1", "10.0.0.2"]), False),
        # Not ready -> ready: still serving before and after.
        (dict(ips=["10.0.0.1"], not_ready=("10.0.0.1",)), dict(ips=["10.0.0.1"]), False),
        # Already terminating, now gone: it left the serving set earlier, with priority then.
        (dict(ips=["10.0.0.1", "10.0.0.2"], terminating=("10.0.0.2",)), dict(ips=["10.0.0.1"]), False),
        # One leaves as another arrives (a rolling update's step): the leaving one sets the lane.
        (dict(ips=["10.0.0.1"]), dict(ips=["10.0.0.2"]), True),
    ],
    ids=["terminating", "removed", "added", "became-ready", "terminating-then-gone", "replaced"],
)
def test_priority_when_an_endpoint_leaves_the_serving_set(handlers: Handlers, recorder: Recorder,
                                                          old: dict[str, Any], new: dict[str, Any],
                                                          priority: bool) -> None:
    handlers.on_slice(web_slice(old.pop("ips"), **old), web_slice(new.pop("ips"), **new))
    assert recorder.keys() == {WEB: priority, WEB_TOO: priority}


def test_a_deleted_slice_with_serving_endpoints_is_a_priority_change(handlers: Handlers, recorder: Recorder) -> None:
    handlers.on_slice(web_slice(["10.0.0.1"]), None)
    assert recorder.keys() == {WEB: True, WEB_TOO: True}


def test_a_slice_moved_to_another_service_enqueues_the_bindings_of_both(handlers: Handlers,
                                                                         recorder: Recorder) -> None:
    handlers.on_slice(web_slice(["10.0.0.1"]), web_slice(["10.0.0.1"], svc="api"))
    assert set(recorder.keys()) == {WEB, WEB_TOO, API}


def test_a_slice_names_only_bindings_of_its_own_namespace_and_service(handlers: Handlers,
                                                                       recorder: Recorder) -> None:
    handlers.on_slice(None, web_slice(["10.0.0.1"], ns="other"))
    assert recorder.keys() == {OTHER_WEB: False}
    recorder.enqueued.clear()
    handlers.on_slice(None, web_slice(["10.0.0.1"], svc="unbound"))
    assert recorder.enqueued == [] and recorder.changed == [OTHER_WEB]


def test_a_slice_without_a_service_names_nothing(handlers: Handlers, recorder: Recorder) -> None:
    raw = endpoint_slice("manual", ["10.0.0.1"])
    raw["metadata"]["labels"] = {}
    handlers.on_slice(None, decode_slice(raw))
    assert recorder.enqueued == [] and recorder.changed == []


# -- services, pods, nodes ----------------------------------------------------------------------


def test_a_service_change_or_deletion_enqueues_its_bindings(handlers: Handlers, recorder: Recorder) -> None:
    old = decode_service(service())
    handlers.on_service(old, decode_service(service(ports=[{"name": "http", "port": 81, "targetPort": 8080}])))
    assert recorder.keys() == {WEB: False, WEB_TOO: False}
    recorder.enqueued.clear()
    handlers.on_service(old, None)
    assert recorder.keys() == {WEB: False, WEB_TOO: False}
    recorder.enqueued.clear()
    handlers.on_service(None, decode_service(service("unbound")))
    assert recorder.enqueued == []


def test_a_pod_names_the_bindings_of_its_gates_before_and_after(handlers: Handlers, recorder: Recorder) -> None:
    gated = decode_pod(pod("web-0", ip="10.0.0.1", gates=[f"{GATE_PREFIX}web"]))
    regated = decode_pod(pod("web-0", ip="10.0.0.1", gates=[f"{GATE_PREFIX}api"]))
    handlers.on_pod(None, gated)
    assert recorder.enqueued == [(WEB, False)]
    recorder.enqueued.clear()
    handlers.on_pod(gated, regated)  # the gate of the binding it left must be reconsidered too
    assert recorder.keys() == {WEB: False, API: False}
    recorder.enqueued.clear()
    handlers.on_pod(regated, None)
    assert recorder.enqueued == [(API, False)]


def test_a_gate_naming_a_binding_that_is_gone_is_still_enqueued(handlers: Handlers, recorder: Recorder) -> None:
    # The reconcile of a missing binding releases the gate (BindingDeleted): the pod must not wait forever.
    handlers.on_pod(None, decode_pod(pod("orphan", gates=[f"{GATE_PREFIX}gone"])))
    assert recorder.enqueued == [(BindingKey("shop", "gone"), False)]


def test_a_pod_without_our_gates_names_nothing(handlers: Handlers, recorder: Recorder) -> None:
    handlers.on_pod(None, decode_pod(pod("plain", ip="10.0.0.9", gates=["example.com/other-gate"])))
    assert recorder.enqueued == []


def test_a_node_change_enqueues_every_binding(handlers: Handlers, recorder: Recorder) -> None:
    raw = {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}, "spec": {"providerID": "p"}}
    handlers.on_node(None, decode_node(raw))
    assert recorder.keys() == {WEB: False, WEB_TOO: False, API: False, OTHER_WEB: False}


# -- bindings -----------------------------------------------------------------------------------


def test_our_own_status_write_enqueues_nothing(handlers: Handlers, recorder: Recorder) -> None:
    old = decode_binding(binding())
    with_status = decode_binding({**binding(), "status": {"observedGeneration": 1, "conditions": []}})
    assert with_status != old  # the store sees a change ...
    handlers.on_binding(old, with_status)
    assert recorder.enqueued == []  # ... that is no reason to reconcile


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw["spec"].update(readinessGate=False),
        lambda raw: raw["metadata"].update(generation=2),
        lambda raw: raw["metadata"].update(finalizers=["negsync.io/target-cleanup"]),
        lambda raw: raw["metadata"].update(deletionTimestamp="2026-12-01T11:00:00Z"),
        lambda raw: raw["metadata"].update(uid="re-created"),
    ],
    ids=["spec", "generation", "finalizer", "deleting", "uid"],
)
def test_a_binding_change_beyond_status_enqueues_it(handlers: Handlers, recorder: Recorder, edit: Any) -> None:
    raw = binding()
    edited = binding()
    edit(edited)
    handlers.on_binding(decode_binding(raw), decode_binding(edited))
    assert recorder.enqueued == [(WEB, False)]


def test_a_created_or_deleted_binding_is_enqueued(handlers: Handlers, recorder: Recorder) -> None:
    record = decode_binding(binding())
    handlers.on_binding(None, record)
    handlers.on_binding(record, None)
    handlers.on_binding(None, None)
    assert recorder.enqueued == [(WEB, False), (WEB, False)]


# -- unchanged objects, end to end through the store ---------------------------------------------


def test_a_relist_of_unchanged_objects_enqueues_nothing(caches: Caches, handlers: Handlers,
                                                         recorder: Recorder) -> None:
    """A watch reconnect replays the world through ``Store.replace``; only changes reach the handlers."""
    slices: Store[Any] = caches.slices
    world = {("shop", "web-abc"): web_slice(["10.0.0.1", "10.0.0.2"])}
    for old, new in slices.replace(world):
        handlers.on_slice(old, new)
    assert recorder.keys() == {WEB: False, WEB_TOO: False}
    recorder.enqueued.clear()
    # Same objects, freshly decoded (new resourceVersions on the server, equal records here).
    for old, new in slices.replace({("shop", "web-abc"): web_slice(["10.0.0.1", "10.0.0.2"])}):
        handlers.on_slice(old, new)
    assert recorder.enqueued == []
    again = {(ns, name): decode_binding(binding(name, ns=ns, svc=svc)) for name, ns, svc in BINDINGS}
    for old, new in caches.bindings.replace(again):
        handlers.on_binding(old, new)
    assert recorder.enqueued == []


def test_all_keys_names_every_cached_binding(caches: Caches) -> None:
    assert sorted(all_keys(caches)) == sorted([WEB, WEB_TOO, API, OTHER_WEB])
