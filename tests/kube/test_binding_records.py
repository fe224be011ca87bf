"""A TargetBinding's spec is decoded once, when its record is made (issue 14 item 5, issue 18)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from negsync.core.model import BindingKey
from negsync.errors import ConfigError
from negsync.kube.caches import Caches, decode_binding, decode_service, decode_slice
from negsync.kube.desired import DesiredState
from negsync.kube.selection import bindings_selecting
from tests.kube.conftest import binding, endpoint_slice, service

KEY = BindingKey("shop", "web")


def test_reconciles_and_index_functions_never_parse_the_spec_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # The record kept spec_json and ran json.loads on every .spec access — in every reconcile
    # (problem(), compute()) and in the bindings' service index on every put.
    caches = Caches()
    caches.services.put(("shop", "web"), decode_service(service()))
    caches.slices.put(("shop", "web-abc"), decode_slice(endpoint_slice("web-abc", ["10.1.0.1", "10.1.0.2"])))
    record = decode_binding(binding(gate=False))
    desired = DesiredState(caches=caches, provider_name="memory")
    real_loads = json.loads
    parsed: list[str] = []

    def counting_loads(text: Any, **kwargs: Any) -> Any:
        parsed.append(text)
        return real_loads(text, **kwargs)

    monkeypatch.setattr(json, "loads", counting_loads)
    for _ in range(3):
        caches.bindings.put(("shop", "web"), record)
        assert desired.problem(KEY).reason == ""
        computed = desired.compute(KEY)
        assert computed is not None and len(computed.endpoints) == 2
        assert [s.record.name for s in bindings_selecting(
            namespace="shop", labels={"app": "web"}, bindings=caches.bindings.values(),
            services=caches.services.get)] == ["web"]
    assert parsed == []
    assert record.spec is record.spec


def test_an_invalid_spec_still_names_its_field_on_every_look() -> None:
    raw = binding()
    raw["spec"]["serviceRef"]["port"] = 70000
    record = decode_binding(raw)
    for _ in range(2):  # a fresh error each time, not one exception object re-raised
        with pytest.raises(ConfigError) as caught:
            record.parsed_spec()
        assert caught.value.field == "spec.serviceRef.port"
    caches = Caches()
    caches.bindings.put(("shop", "web"), record)
    check = DesiredState(caches=caches, provider_name="memory").problem(KEY)
    assert check.reason == "InvalidSpec" and "spec.serviceRef.port" in check.message


def test_records_compare_by_their_canonical_spec_only() -> None:
    a = decode_binding(binding())
    b = decode_binding(json.loads(json.dumps(binding())))
    assert a == b and hash(a) == hash(b)
    assert a.service_name == "web"
    changed = decode_binding(binding(svc="api"))
    assert changed != a and changed.service_name == "api"
