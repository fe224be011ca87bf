"""/readyz follows the API server's trust in this replica's webhook certificate; answers counted; no Nagle stall.

The API server verifies the webhook's serving certificate against the configuration's
``caBundle`` (admissionregistration.k8s.io/v1 WebhookClientConfig.caBundle: "a PEM encoded CA
bundle which will be used to validate the webhook's server certificate"), so "trusted" here means:
the served leaf is directly signed by a certificate in that bundle.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from negsync.kube.caches import Caches
from negsync.kube.webhook import TrustCheck, WebhookServer, generate_serving_certificate, start_webhook, write_serving_files
from negsync.serving import Servers
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding
from tests.kube.test_webhook import caches, pki, post, put_binding, review, webhook_configuration  # noqa: F401
from tests.support.loopback import spy_nodelay

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


class Ca:
    """A CA that keeps its key, to issue several leaves (what cert-manager's CA issuer does)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-root")])
        now = datetime.now(UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                     .not_valid_after(now + timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def leaf(self) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "negsync.negsync-system.svc")]))
                .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("negsync.negsync-system.svc")]), critical=False)
                .sign(self.key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return leaf.public_bytes(serialization.Encoding.PEM), key_pem


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


def test_cert_manager_leaf_renewal_under_one_ca_keeps_trust(kube: KubeApiEmulator, admission: Any,
                                                            tmp_path: Path) -> None:
    ca = Ca()
    cert, key = ca.leaf()
    write_serving_files(tmp_path, cert_pem=cert, key_pem=key)
    kube.create(webhook_configuration(ca_bundle=base64.b64encode(ca.pem).decode()))
    check = TrustCheck(admission_api=admission, served=(tmp_path / "tls.crt").read_bytes, ttl=0)
    assert check() is None and check.trusted is True
    renewed, renewed_key = ca.leaf()  # cert-manager renews the leaf; the caBundle stays the root
    write_serving_files(tmp_path, cert_pem=renewed, key_pem=renewed_key)
    assert check() is None
    self_signed = generate_serving_certificate()  # a leaf from another CA (the old self-signed setup)
    write_serving_files(tmp_path, cert_pem=self_signed[1], key_pem=self_signed[2])
    verdict = check()
    assert verdict is not None and "not in the caBundle" in verdict and check.trusted is False


def test_trust_check_without_a_configuration_or_without_access(kube: KubeApiEmulator, admission: Any,
                                                               pki: Any, tmp_path: Path) -> None:  # noqa: F811
    write_serving_files(tmp_path, cert_pem=pki[1], key_pem=pki[2])
    check = TrustCheck(admission_api=admission, served=(tmp_path / "tls.crt").read_bytes, ttl=0)
    assert check() is None and check.trusted is None  # webhook not installed: nothing to be trusted by

    class Forbidden:
        def read_mutating_webhook_configuration(self, *args: Any, **kwargs: Any) -> Any:
            raise client.ApiException(status=403, reason="Forbidden")

    denied = TrustCheck(admission_api=Forbidden(), served=(tmp_path / "tls.crt").read_bytes, ttl=0)
    assert denied() == "cannot read MutatingWebhookConfiguration negsync (HTTP 403)"


def test_trust_is_cached_for_its_ttl(kube: KubeApiEmulator, admission: Any, pki: Any, tmp_path: Path) -> None:  # noqa: F811
    write_serving_files(tmp_path, cert_pem=pki[1], key_pem=pki[2])
    kube.create(webhook_configuration(ca_bundle=base64.b64encode(pki[0]).decode()))
    now = [0.0]
    check = TrustCheck(admission_api=admission, served=(tmp_path / "tls.crt").read_bytes, ttl=30, now=lambda: now[0])
    kube.clear_requests()
    assert check() is None and check() is None
    assert len(kube.requests) == 1  # readiness probes every 5s must not each read the API
    now[0] = 31.0
    check()
    assert len(kube.requests) == 2


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
