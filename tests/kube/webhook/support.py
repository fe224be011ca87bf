"""What the webhook's tests share: AdmissionReview builders, caches, a served webhook, a verified TLS client.

The fixtures (``pki``, ``caches``, ``server``) are in tests/kube/webhook/conftest.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import uuid
from typing import Any

from negsync.kube.caches import Caches, decode_binding, decode_service
from negsync.kube.webhook import WebhookServer

GATE = "target-health.negsync.io/"


def put_binding(caches: Caches, raw: dict[str, Any]) -> None:
    caches.bindings.put((raw["metadata"]["namespace"], raw["metadata"]["name"]), decode_binding(raw))


def put_service(caches: Caches, raw: dict[str, Any]) -> None:
    caches.services.put((raw["metadata"]["namespace"], raw["metadata"]["name"]), decode_service(raw))


def review(*, ns: str = "shop", labels: dict[str, str] | None = None, operation: str = "CREATE",
           gates: list[str] | None = None, kind: str = "Pod") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "web"}]}
    if gates is not None:
        spec["readinessGates"] = [{"conditionType": g} for g in gates]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "namespace": ns,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            # As a ReplicaSet creates it: generateName, no name, no namespace in the object.
            "object": {"apiVersion": "v1", "kind": kind,
                       "metadata": {"generateName": "web-5d9c7-", "labels": labels or {"app": "web"}}, "spec": spec},
            "oldObject": None,
            "dryRun": False,
        },
    }


def tls_context(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())  # verification and hostname check ON


def post(port: int, ca_pem: bytes, body: bytes, *, path: str = "/mutate-pods") -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls_context(ca_pem), timeout=5)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def admit(server: WebhookServer, ca_pem: bytes, request: dict[str, Any]) -> tuple[dict[str, Any], list[Any] | None]:
    status, body = post(server.port, ca_pem, json.dumps(request).encode())
    assert status == 200, body
    answer = json.loads(body)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == request["request"]["uid"]
    assert response["allowed"] is True
    if "patch" not in response:
        assert "patchType" not in response
        return response, None
    assert response["patchType"] == "JSONPatch"
    return response, json.loads(base64.b64decode(response["patch"]))


def webhook_configuration(*, ca_bundle: str | None = None) -> dict[str, Any]:
    client_config: dict[str, Any] = {"service": {"name": "negsync", "namespace": "negsync-system",
                                                 "path": "/mutate-pods", "port": 443}}
    if ca_bundle is not None:
        client_config["caBundle"] = ca_bundle
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "negsync"},
        "webhooks": [{"name": "readiness-gates.negsync.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Ignore", "timeoutSeconds": 5, "clientConfig": client_config}],
    }
