"""/readyz follows the API server's trust in this replica's webhook certificate.

An integration test, kept on purpose: the webhook (:mod:`negsync.kube.webhook`), its trust check
and the health server (:mod:`negsync.serving`) together against the API emulator.  The trust check
alone is tests/kube/webhook/certs/test_trust.py; the counted answers and TCP_NODELAY moved to
tests/kube/webhook/test_server.py.

The API server verifies the webhook's serving certificate against the configuration's
``caBundle`` (admissionregistration.k8s.io/v1 WebhookClientConfig.caBundle: "a PEM encoded CA
bundle which will be used to validate the webhook's server certificate"), so "trusted" here means:
the served leaf is directly signed by a certificate in that bundle.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from negsync.kube.caches import Caches
from negsync.kube.webhook import generate_serving_certificate, start_webhook
from negsync.serving import Servers
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.webhook.conftest import caches, pki  # noqa: F401  (fixtures)
from tests.kube.webhook.support import webhook_configuration

WEBHOOK = ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, "negsync")


class ReadyController:
    synced = True
    ready = True


def readyz(servers: Servers) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{servers.ports[0]}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def set_bundle(kube: KubeApiEmulator, pem: bytes) -> None:
    config = kube.get(*WEBHOOK)
    assert config is not None
    config["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(pem).decode()
    kube.update(config)


@pytest.fixture
def admission(api_client: client.ApiClient) -> Any:
    return client.AdmissionregistrationV1Api(api_client)


@pytest.fixture
def health() -> Iterator[Servers]:
    servers = Servers(controller=ReadyController(), health_addr="127.0.0.1:0", telemetry=None)
    servers.start()
    yield servers
    servers.stop()


def test_self_generated_replica_is_ready_only_while_its_ca_is_trusted(
        kube: KubeApiEmulator, admission: Any, caches: Caches, health: Servers) -> None:  # noqa: F811
    kube.create(webhook_configuration())
    webhook = start_webhook(caches=caches, address="127.0.0.1:0", admission_api=admission, leader_patch=True,
                            ip_addresses=["127.0.0.1"])
    try:
        assert webhook.trust is not None and webhook.upkeep is not None
        health.readiness_checks.append(webhook.trust)
        assert readyz(health)[0] == 200  # start-up patched its CA in
        # Someone re-applies the configuration with another CA (or evicts ours): the API server
        # would now refuse this replica's certificate, so it must leave the Service.
        set_bundle(kube, generate_serving_certificate()[0])
        webhook.upkeep.interval = webhook.upkeep.retry = 3600.0  # only the trust check's wake-up may repair it
        webhook.trust.invalidate()
        status, text = readyz(health)
        assert status == 503 and "webhook CA not in the caBundle" in text
        # The negative verdict woke the upkeep loop, which puts the CA back; readiness follows.
        deadline = time.monotonic() + 10
        while True:
            webhook.trust.invalidate()
            if readyz(health)[0] == 200:
                break
            assert time.monotonic() < deadline, "the CA was not put back"
            time.sleep(0.05)
    finally:
        webhook.stop()
