"""Which pod gets which readiness gate (:mod:`negsync.kube.webhook.admission`): the pure decision.

Each case calls :func:`mutate` as the server does and decodes the JSONPatch; that the same answer
travels over verified TLS is tests/kube/webhook/test_webhook.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from negsync.kube.caches import Caches
from negsync.kube.webhook.admission import MalformedReview, gates_for, mutate, request_of
from tests.kube.conftest import binding, service
from tests.kube.webhook.support import GATE, put_binding, put_service, review


def admit(caches: Caches, request: dict[str, Any], **options: Any) -> tuple[dict[str, Any], list[Any] | None]:
    """The response to ``request`` and its decoded patch (None without one), checked as the API server would."""
    answer = mutate(request, bindings=caches.bindings.values(), services=caches.services.get, **options)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == request["request"]["uid"] and response["allowed"] is True
    if "patch" not in response:
        assert "patchType" not in response
        return response, None
    assert response["patchType"] == "JSONPatch"
    return response, json.loads(base64.b64decode(response["patch"]))


def test_no_gate_when_readiness_gate_false(caches: Caches) -> None:
    put_binding(caches, binding("web", gate=False))
    assert admit(caches, review())[1] is None


def test_no_gate_when_service_does_not_select_pod(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    assert admit(caches, review(labels={"app": "api"}))[1] is None


def test_no_gate_for_another_namespaces_binding(caches: Caches) -> None:
    put_service(caches, service("web", ns="other"))
    put_binding(caches, binding("web", ns="other"))
    assert admit(caches, review(ns="shop"))[1] is None
    _, patch = admit(caches, review(ns="other"))
    assert patch is not None and patch[0]["value"] == [{"conditionType": GATE + "web"}]


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_no_gate_for_other_operations(caches: Caches, operation: str) -> None:
    put_binding(caches, binding("web"))
    assert admit(caches, review(operation=operation))[1] is None


def test_no_gate_for_other_kinds(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    assert admit(caches, review(kind="Deployment"))[1] is None


def test_idempotent_when_gate_present(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    assert admit(caches, review(gates=[GATE + "web"]))[1] is None


def test_appends_when_readiness_gates_exist(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    _, patch = admit(caches, review(gates=["example.com/other"]))
    assert patch == [{"op": "add", "path": "/spec/readinessGates/-", "value": {"conditionType": GATE + "web"}}]


def test_two_bindings_two_gates(caches: Caches) -> None:
    put_service(caches, service("web-canary", selector={"app": "web"}))
    put_binding(caches, binding("web", svc="web"))
    put_binding(caches, binding("canary", svc="web-canary"))
    _, patch = admit(caches, review())
    assert patch == [{"op": "add", "path": "/spec/readinessGates",
                      "value": [{"conditionType": GATE + "canary"}, {"conditionType": GATE + "web"}]}]
    # One already present (a reinvocation): only the other is appended.
    _, patch = admit(caches, review(gates=[GATE + "web"]))
    assert patch == [{"op": "add", "path": "/spec/readinessGates/-", "value": {"conditionType": GATE + "canary"}}]


def test_invalid_binding_spec_skipped(caches: Caches) -> None:
    put_binding(caches, binding("broken", target={"gcpNeg": {"project": "NOT VALID"}}))
    put_binding(caches, binding("web"))
    _, patch = admit(caches, review())
    assert patch is not None and patch[0]["value"] == [{"conditionType": GATE + "web"}]


def test_bindings_the_controller_would_never_gate_are_skipped(caches: Caches) -> None:
    # Each of these would leave the pod un-Ready forever: the controller never writes their condition.
    put_binding(caches, binding("no-service", svc="missing"))
    put_binding(caches, binding("no-port", port="grpc"))
    deleting = binding("deleting")
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    put_binding(caches, deleting)
    put_binding(caches, binding("x" * 64))  # condition type name part > 63: the API would reject the pod
    assert admit(caches, review())[1] is None


def test_namespace_without_inject_label_gets_nothing(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    request = review()
    assert "patch" not in mutate(request, bindings=caches.bindings.values(), services=caches.services.get,
                                 namespace_labels={"team": "shop"})["response"]
    answer = mutate(request, bindings=caches.bindings.values(), services=caches.services.get,
                    namespace_labels={"negsync.io/readiness-gate-inject": "enabled"})
    assert "patch" in answer["response"]


def test_provider_mismatch_skipped(caches: Caches) -> None:
    put_binding(caches, binding("web"))  # a memory target
    assert "patch" not in mutate(review(), bindings=caches.bindings.values(), services=caches.services.get,
                                 provider="gcp")["response"]


def test_internal_error_admits_without_patch(caches: Caches) -> None:
    def broken(key: Any) -> Any:
        raise RuntimeError("boom")

    put_binding(caches, binding("web"))
    request = review()
    answer = mutate(request, bindings=caches.bindings.values(), services=broken)
    assert answer["response"] == {"uid": request["request"]["uid"], "allowed": True}


# -- unit cases beyond the TLS ones ---------------------------------------------------------------


def test_a_pod_with_null_readiness_gates_gets_the_list_created(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    request = review()
    request["request"]["object"]["spec"]["readinessGates"] = None
    assert admit(caches, request)[1] == [{"op": "add", "path": "/spec/readinessGates",
                                          "value": [{"conditionType": GATE + "web"}]}]


def test_a_subresource_or_a_pod_without_spec_is_admitted_untouched(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    status = review()
    status["request"]["subResource"] = "status"
    no_spec = review()
    del no_spec["request"]["object"]["spec"]
    assert admit(caches, status)[1] is None and admit(caches, no_spec)[1] is None


def test_the_requests_namespace_wins_over_the_objects(caches: Caches) -> None:
    """A ReplicaSet's pod has no metadata.namespace yet; when both are set, the request's is authoritative."""
    put_binding(caches, binding("web"))
    request = review(ns="shop")
    request["request"]["object"]["metadata"]["namespace"] = "elsewhere"
    assert admit(caches, request)[1] is not None


def test_an_internal_error_is_reported_to_on_error(caches: Caches) -> None:
    put_binding(caches, binding("web"))
    errors: list[str] = []

    def broken(key: Any) -> Any:
        raise RuntimeError("boom")

    answer = mutate(review(), bindings=caches.bindings.values(), services=broken, on_error=lambda: errors.append("x"))
    assert "patch" not in answer["response"] and errors == ["x"]
    assert admit(caches, review(), on_error=lambda: errors.append("y"))[1] is not None and errors == ["x"]


@pytest.mark.parametrize(("body", "message"), [
    ([], "not a JSON object"),
    ({"kind": "AdmissionReview"}, "expected kind AdmissionReview"),
    ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "u"}}, "expected kind"),
    ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}, "request is missing"),
    ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": ""}}, "request.uid"),
])
def test_a_malformed_review_is_refused_with_what_is_wrong(body: Any, message: str) -> None:
    with pytest.raises(MalformedReview, match=message):
        request_of(body)
    with pytest.raises(MalformedReview):
        mutate(body, bindings=[], services=lambda key: None)


def test_gates_for_is_sorted_and_filters_by_provider(caches: Caches) -> None:
    put_service(caches, service("web-canary", selector={"app": "web"}))
    put_binding(caches, binding("web", svc="web"))
    put_binding(caches, binding("canary", svc="web-canary"))
    found = gates_for(namespace="shop", labels={"app": "web"}, bindings=caches.bindings.values(),
                      services=caches.services.get)
    assert found == [GATE + "canary", GATE + "web"]
    assert gates_for(namespace="shop", labels={"app": "web"}, bindings=caches.bindings.values(),
                     services=caches.services.get, provider="aws") == []
