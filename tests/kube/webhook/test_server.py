"""The webhook's HTTPS server (:mod:`negsync.kube.webhook.server`): both address families, answers counted, no Nagle.

``--webhook-addr [::]:9443`` binds either family; each answer is counted by outcome (the
webhook-requests metric); accepted connections have TCP_NODELAY set.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from pathlib import Path
from typing import Any

from negsync.core.httpserver import format_address
from negsync.kube.caches import Caches
from negsync.kube.webhook import WebhookServer, generate_serving_certificate, start_webhook, write_serving_files
from tests.kube.conftest import binding
from tests.kube.test_webhook import caches, pki, post  # noqa: F401  (fixtures)
from tests.kube.webhook.reviews import GATE, put_binding, review
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
def test_the_webhook_answers_on_both_address_families(host: str, caches: Caches,  # noqa: F811
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
def test_start_webhook_takes_a_bracketed_address(host: str, caches: Caches) -> None:  # noqa: F811
    """What ``--webhook-addr [::1]:PORT`` hands over: a self-generated certificate served on that family."""
    require(host)
    webhook = start_webhook(caches=caches, address=format_address(host, 0), ip_addresses=[host])
    try:
        assert webhook.upkeep is not None
        status, response, health = exchange(host, webhook.port, webhook.upkeep.ca_pem)
        assert (status, health) == (200, 200) and response["allowed"] is True
    finally:
        webhook.stop()


def test_answers_are_counted_by_outcome(caches: Caches, pki: Any, tmp_path: Path) -> None:  # noqa: F811
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


def test_webhook_connections_have_nagle_disabled(caches: Caches, pki: Any, tmp_path: Path) -> None:  # noqa: F811
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
