"""The one "bindings selecting this pod" query, shared by the webhook and drain-wait."""

from __future__ import annotations

from typing import Any

from negsync.kube.caches import BindingRecord, ServiceRecord, decode_binding, decode_service
from negsync.kube.selection import bindings_selecting
from tests.kube.conftest import binding, service


def services(*raws: dict[str, Any]) -> dict[tuple[str, str], ServiceRecord]:
    return {(r["metadata"]["namespace"], r["metadata"]["name"]): decode_service(r) for r in raws}


def record(raw: dict[str, Any], *, deleting: bool = False) -> BindingRecord:
    if deleting:
        raw["metadata"].update(deletionTimestamp="2026-12-01T00:00:00Z", finalizers=["negsync.io/targets"])
    return decode_binding(raw)


def test_only_bindings_whose_service_selects_the_pod_in_its_namespace() -> None:
    known = services(service("web", selector={"app": "web"}), service("api", selector={"app": "api"}),
                     service("web", ns="other", selector={"app": "web"}))
    broken = binding("broken")
    broken["spec"]["serviceRef"] = {"name": "web"}  # no port: InvalidSpec, reconciled by no one
    bindings = [record(binding("b")), record(binding("a")), record(binding("to-api", svc="api")),
                record(binding("no-service", svc="gone")), record(binding("elsewhere", ns="other")),
                record(broken), record(binding("leaving"), deleting=True)]
    found = list(bindings_selecting(namespace="shop", labels={"app": "web", "tier": "front"}, bindings=bindings,
                                    services=known.get))
    # In the given order; a binding being deleted still selects (a draining pod must leave its targets).
    assert [f.record.name for f in found] == ["b", "a", "leaving"]
    assert all(f.service is known[("shop", "web")] and f.spec.service_name == "web" for f in found)
    assert found[2].record.deleting


def test_a_service_without_a_selector_selects_nothing() -> None:
    known = services(service("web", selector={}))
    assert list(bindings_selecting(namespace="shop", labels={"app": "web"}, bindings=[record(binding("web"))],
                                   services=known.get)) == []
