"""The webhook's HTTPS server (:mod:`negsync.kube.webhook.server`): both address families, answers counted, no Nagle.

``--webhook-addr [::]:9443`` binds either family; bad bodies, sizes, paths and clients get HTTP's
answers without blocking others; each answer is counted by outcome (the webhook-requests metric);
accepted connections have TCP_NODELAY set.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from negsync.core.httpserver import format_address
from negsync.kube.caches import Caches
from negsync.kube.webhook import MAX_BODY, WebhookServer, generate_serving_certificate, start_webhook, write_serving_files
from tests.kube.conftest import binding
from tests.kube.webhook.support import GATE, admit, post, put_binding, review, tls_context
from tests.support.loopback import LOOPBACKS, require, spy_nodelay


def exchange(host: str, port: int, ca_pem: bytes) -> tuple[int, dict[str, object], int]:
    """One admission review and a /healthz on the same verified keep-alive connection."""
    conn = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cadata=ca_pem.decode()),
                                       timeout=5)
    try:
        conn.request("POST", "/mutate-pods", body=json.dumps(review()).encode(),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        status, answer = response.status, json.loads(response.read())
        conn.request("GET", "/healthz")
        health = conn.getresponse()
        health.read()
        return status, answer["response"], health.status
    finally:
        conn.close()


@LOOPBACKS
def test_the_webhook_answers_on_both_address_families(host: str, caches: Caches,
                                                       tmp_path: Path) -> None:
    require(host)
    put_binding(caches, binding("web"))
    ca_pem, cert_pem, key_pem = generate_serving_certificate(ip_addresses=[host])  # hostname check on the IP
    write_serving_files(tmp_path, cert_pem=cert_pem, key_pem=key_pem)
    webhook = WebhookServer(caches=caches, address=format_address(host, 0), cert_dir=tmp_path).start()
    try:
        status, response, health = exchange(host, webhook.port, ca_pem)
        assert status == 200 and health == 200
        assert json.loads(base64.b64decode(str(response["patch"]))) == [
            {"op": "add", "path": "/spec/readinessGates", "value": [{"conditionType": GATE + "web"}]}]
        assert webhook.outcomes["patched"] == 1
    finally:
        webhook.stop()


@LOOPBACKS
def test_start_webhook_takes_a_bracketed_address(host: str, caches: Caches) -> None:
    """What ``--webhook-addr [::1]:PORT`` hands over: a self-generated certificate served on that family."""
    require(host)
    webhook = start_webhook(caches=caches, address=format_address(host, 0), ip_addresses=[host])
    try:
        assert webhook.upkeep is not None
        status, response, health = exchange(host, webhook.port, webhook.upkeep.ca_pem)
        assert (status, health) == (200, 200) and response["allowed"] is True
    finally:
        webhook.stop()


def test_answers_are_counted_by_outcome(caches: Caches, pki: Any, tmp_path: Path) -> None:
    write_serving_files(tmp_path, cert_pem=pki[1], key_pem=pki[2])
    put_binding(caches, binding("web"))
    webhook = WebhookServer(caches=caches, address="127.0.0.1:0", cert_dir=tmp_path).start()
    try:
        assert post(webhook.port, pki[0], json.dumps(review()).encode())[0] == 200
        assert post(webhook.port, pki[0], json.dumps(review(labels={"app": "other"})).encode())[0] == 200
        assert post(webhook.port, pki[0], b"not json")[0] == 400
        assert webhook.outcomes == {"patched": 1, "allowed": 1, "error": 0, "invalid": 1}
    finally:
        webhook.stop()


def test_webhook_connections_have_nagle_disabled(caches: Caches, pki: Any, tmp_path: Path) -> None:
    write_serving_files(tmp_path, cert_pem=pki[1], key_pem=pki[2])
    webhook = WebhookServer(caches=caches, address="127.0.0.1:0", cert_dir=tmp_path).start()
    try:
        server = webhook._server
        assert server is not None
        accepted = spy_nodelay(server)
        assert post(webhook.port, pki[0], b"[]")[0] == 400
        assert accepted and accepted[0] != 0
    finally:
        webhook.stop()


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
