"""The readiness-gate admission webhook as the API server reaches it: AdmissionReview v1 over verified TLS.

An integration test of the package (server, admission, certs together), kept on purpose: a gate
patched end to end, certificate reload and ``start_webhook`` against the API emulator.  The pure
decision (which pod gets which gate) is test_admission.py; the HTTPS server's edges test_server.py;
certificates certs/.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from negsync.kube.caches import Caches
from negsync.kube.webhook import (
    WebhookCertificateError,
    WebhookServer,
    generate_serving_certificate,
    start_webhook,
    write_serving_files,
)
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding
from tests.kube.webhook.support import GATE, admit, post, put_binding, review, webhook_configuration

# -- the patch over real TLS ---------------------------------------------------------------------


def test_gate_added_for_selecting_binding(server: WebhookServer, caches: Caches, pki: Any) -> None:
    put_binding(caches, binding("web", svc="web"))
    _, patch = admit(server, pki[0], review())
    assert patch == [{"op": "add", "path": "/spec/readinessGates", "value": [{"conditionType": GATE + "web"}]}]


def test_certificate_reloaded_when_files_change(server: WebhookServer, tmp_path: Path) -> None:
    new_ca, cert_pem, key_pem = generate_serving_certificate(ip_addresses=["127.0.0.1"])
    write_serving_files(tmp_path, cert_pem=cert_pem, key_pem=key_pem)
    server.tls._checked = float("-inf")  # skip the check interval
    assert post(server.port, new_ca, b"[]")[0] == 400  # handshake verified against the new CA


def test_cert_dir_without_files_is_a_clear_error(caches: Caches, tmp_path: Path) -> None:
    with pytest.raises(WebhookCertificateError):
        WebhookServer(caches=caches, address="127.0.0.1:0", cert_dir=tmp_path)


# -- start_webhook (the certificate modules' own tests: tests/kube/webhook/certs/) -----------------


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
