"""The readiness-gate admission webhook as the API server reaches it: AdmissionReview v1 over verified TLS.

An integration test of the package (server, admission, certs together), kept on purpose: a gate
patched end to end, the HTTP edges, certificate reload and ``start_webhook`` against the API emulator.
The pure decision (which pod gets which gate) is tests/kube/webhook/test_admission.py; the listener's
address families tests/kube/webhook/test_server.py; certificates tests/kube/webhook/certs/.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from negsync.kube.caches import Caches
from negsync.kube.webhook import (
    MAX_BODY,
    WebhookCertificateError,
    WebhookServer,
    generate_serving_certificate,
    start_webhook,
    write_serving_files,
)
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, service
from tests.kube.webhook.reviews import GATE, put_binding, put_service, review

# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> tuple[bytes, bytes, bytes]:
    return generate_serving_certificate(ip_addresses=["127.0.0.1"], dns_names=["localhost"])


@pytest.fixture
def caches() -> Caches:
    caches = Caches()
    put_service(caches, service("web", selector={"app": "web"}))
    return caches


@pytest.fixture
def server(caches: Caches, pki: tuple[bytes, bytes, bytes], tmp_path: Path) -> Iterator[WebhookServer]:
    _, cert_pem, key_pem = pki
    write_serving_files(tmp_path, cert_pem=cert_pem, key_pem=key_pem)
    webhook = WebhookServer(caches=caches, address="127.0.0.1:0", cert_dir=tmp_path).start()
    try:
        yield webhook
    finally:
        webhook.stop()


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


# -- the patch over real TLS ---------------------------------------------------------------------


def test_gate_added_for_selecting_binding(server: WebhookServer, caches: Caches, pki: Any) -> None:
    put_binding(caches, binding("web", svc="web"))
    _, patch = admit(server, pki[0], review())
    assert patch == [{"op": "add", "path": "/spec/readinessGates", "value": [{"conditionType": GATE + "web"}]}]


# -- HTTP edges -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"kind": "AdmissionReview"}',
                                  json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                              "request": {"operation": "CREATE"}}).encode()])
def test_malformed_body_is_400(server: WebhookServer, pki: Any, body: bytes) -> None:
    status, text = post(server.port, pki[0], body)
    assert status == 400, text


def test_oversized_body_is_413(server: WebhookServer, pki: Any) -> None:
    status, _ = post(server.port, pki[0], b" " * (MAX_BODY + 1))
    assert status == 413


def test_healthz_and_unknown_path(server: WebhookServer, pki: Any) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls_context(pki[0]), timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b"ok\n"
    conn.close()
    assert post(server.port, pki[0], b"{}", path="/nope")[0] == 404


def test_keep_alive_serves_several_reviews_on_one_connection(server: WebhookServer, caches: Caches, pki: Any) -> None:
    put_binding(caches, binding("web"))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls_context(pki[0]), timeout=5)
    try:
        for _ in range(3):
            conn.request("POST", "/mutate", body=json.dumps(review()).encode())
            response = conn.getresponse()
            assert response.status == 200 and "patch" in json.loads(response.read())["response"]
    finally:
        conn.close()


def test_plain_http_to_tls_port_fails(server: WebhookServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.request("POST", "/mutate-pods", body=b"{}")
        conn.getresponse().read()
    conn.close()


def test_untrusted_ca_fails_verification(server: WebhookServer) -> None:
    other_ca = generate_serving_certificate(ip_addresses=["127.0.0.1"])[0]
    with pytest.raises(ssl.SSLCertVerificationError):
        post(server.port, other_ca, b"{}")


def test_silent_client_does_not_block_others(server: WebhookServer, caches: Caches, pki: Any) -> None:
    # A connection that never starts its handshake holds only its own thread, not the accept loop.
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        put_binding(caches, binding("web"))
        assert admit(server, pki[0], review())[1] is not None
    finally:
        idle.close()


def test_certificate_reloaded_when_files_change(server: WebhookServer, tmp_path: Path) -> None:
    new_ca, cert_pem, key_pem = generate_serving_certificate(ip_addresses=["127.0.0.1"])
    write_serving_files(tmp_path, cert_pem=cert_pem, key_pem=key_pem)
    server.tls._checked = float("-inf")  # skip the check interval
    assert post(server.port, new_ca, b"[]")[0] == 400  # handshake verified against the new CA


def test_cert_dir_without_files_is_a_clear_error(caches: Caches, tmp_path: Path) -> None:
    with pytest.raises(WebhookCertificateError):
        WebhookServer(caches=caches, address="127.0.0.1:0", cert_dir=tmp_path)


# -- start_webhook (the certificate modules' own tests: tests/kube/webhook/certs/) -----------------


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


def test_start_webhook_self_generated(kube: KubeApiEmulator, api_client: client.ApiClient, caches: Caches) -> None:
    kube.create(webhook_configuration())
    put_binding(caches, binding("web"))
    webhook = start_webhook(caches=caches, address="127.0.0.1:0", cert_dir=None,
                            admission_api=client.AdmissionregistrationV1Api(api_client), leader_patch=True,
                            ip_addresses=["127.0.0.1"])
    try:
        # The API server's view: trust exactly what the configuration's caBundle says.
        config = kube.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, "negsync")
        assert config is not None
        bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
        status, body = post(webhook.port, bundle, json.dumps(review()).encode())
        assert status == 200 and "patch" in json.loads(body)["response"]
    finally:
        webhook.stop()


def test_start_webhook_cert_dir_does_not_patch(kube: KubeApiEmulator, api_client: client.ApiClient, caches: Caches,
                                               pki: Any, tmp_path: Path) -> None:
    kube.create(webhook_configuration())
    write_serving_files(tmp_path, cert_pem=pki[1], key_pem=pki[2])
    kube.clear_requests()
    webhook = start_webhook(caches=caches, address="127.0.0.1:0", cert_dir=str(tmp_path),
                            admission_api=client.AdmissionregistrationV1Api(api_client), leader_patch=True)
    try:
        assert post(webhook.port, pki[0], b"[]")[0] == 400
        assert kube.requests == []  # cainjector owns the caBundle
    finally:
        webhook.stop()
