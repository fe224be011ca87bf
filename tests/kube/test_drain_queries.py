"""The pod questions ``/drain-wait`` asks (:mod:`negsync.kube.drain_queries`), answered from the caches.

The caches are filled with decoded objects as the informers fill them; the provider is the memory
provider (a real :class:`TargetProvider`).  The leader's engine is a stand-in with the one method
:class:`DrainQueries` calls, ``reconciler.holds(ip, keys=...)``, recording what it was asked.  The
route over these answers is tests/test_draining.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.kube.caches import Caches, decode_binding, decode_pod, decode_service
from negsync.kube.drain_queries import DrainQueries
from negsync.providers.memory import MemoryProvider
from tests.kube.conftest import binding, pod, service

WEB = BindingKey("shop", "web")


def put(caches: Caches, *objects: dict[str, Any]) -> None:
    for raw in objects:
        key = (raw["metadata"]["namespace"], raw["metadata"]["name"])
        kind = raw["kind"]
        if kind == "Pod":
            caches.pods.put(key, decode_pod(raw))
        elif kind == "Service":
            caches.services.put(key, decode_service(raw))
        else:
            caches.bindings.put(key, decode_binding(raw))


@pytest.fixture
def caches() -> Caches:
    caches = Caches()
    put(caches, service("web", selector={"app": "web"}), service("api", selector={"app": "api"}),
        binding("web", svc="web"), binding("api", svc="api"), binding("web-other-ns", ns="other", svc="web"),
        pod("web-0", ip="10.0.0.7", labels={"app": "web"}), pod("lonely", ip="10.0.0.9", labels={"app": "batch"}))
    return caches


class Engine:
    """Stand-in for :class:`negsync.core.engine.Engine`: ``reconciler.holds`` answers ``held``."""

    def __init__(self, held: bool) -> None:
        self.asked: list[tuple[str, list[BindingKey]]] = []

        def holds(ip: str, *, keys: list[BindingKey]) -> bool:
            self.asked.append((ip, keys))
            return held

        self.reconciler = SimpleNamespace(holds=holds)


def test_pod_ips_come_from_the_cache_and_an_unknown_pod_is_none(caches: Caches) -> None:
    queries = DrainQueries(caches=caches, provider=MemoryProvider(), engine=lambda: None)
    assert queries.pod_ips("shop", "web-0") == ("10.0.0.7",)
    assert queries.pod_ips("shop", "gone") is None


def test_a_pods_bindings_are_those_whose_service_selects_it_in_its_namespace(caches: Caches) -> None:
    queries = DrainQueries(caches=caches, provider=MemoryProvider(), engine=lambda: None)
    assert [key for key, _ in queries.bindings_of_pod("shop", "web-0")] == [WEB]
    assert queries.bindings_of_pod("shop", "lonely") == [] and queries.bindings_of_pod("shop", "gone") == []


def test_the_leader_asks_its_reconciler_about_the_pods_bindings_only(caches: Caches) -> None:
    engine = Engine(held=True)
    queries = DrainQueries(caches=caches, provider=MemoryProvider(), engine=lambda: engine)
    assert queries.holds("shop", "web-0", "10.0.0.7") is True
    assert engine.asked == [("10.0.0.7", [WEB])]
    released = Engine(held=False)
    assert DrainQueries(caches=caches, provider=MemoryProvider(), engine=lambda: released).holds(
        "shop", "web-0", "10.0.0.7") is False


def test_a_pod_no_binding_selects_is_held_by_nothing_and_nobody_is_asked(caches: Caches) -> None:
    engine = Engine(held=True)
    queries = DrainQueries(caches=caches, provider=MemoryProvider(), engine=lambda: engine)
    assert queries.holds("shop", "lonely", "10.0.0.9") is False and engine.asked == []


def test_a_standby_asks_the_provider_which_targets_still_hold_the_ip(caches: Caches) -> None:
    provider = MemoryProvider()
    queries = DrainQueries(caches=caches, provider=provider, engine=lambda: None)
    assert queries.targets_of_pod("shop", "web-0") == []  # the target does not exist yet
    assert queries.holds("shop", "web-0", "10.0.0.7") is False
    [(key, spec)] = queries.bindings_of_pod("shop", "web-0")
    ref = TargetRef("memory", "local", "shop-web")
    provider.ensure_target(ref, binding=key, spec=spec.target)
    provider.attach(ref, [TargetEndpoint("10.0.0.7", 8080)])
    fresh = DrainQueries(caches=caches, provider=provider, engine=lambda: None)  # no TTL-cached answer
    assert fresh.targets_of_pod("shop", "web-0") == [ref]
    assert fresh.holds("shop", "web-0", "10.0.0.7") is True
    assert fresh.holds("shop", "web-0", "10.0.0.8") is False
