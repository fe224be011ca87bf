"""The trust check: is the served leaf directly issued by a CA in every webhook's caBundle?

The API server verifies the webhook's serving certificate against the configuration's
``caBundle`` (admissionregistration.k8s.io/v1 WebhookClientConfig.caBundle: "a PEM encoded CA
bundle which will be used to validate the webhook's server certificate"), so "trusted" here means:
the served leaf is directly signed by a certificate in that bundle.  /readyz wiring is tested in
tests/kube/test_webhook_trust.py.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from negsync.kube.webhook import TrustCheck, generate_serving_certificate, write_serving_files
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.webhook.support import webhook_configuration


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
                                                               pki: Any, tmp_path: Path) -> None:
    write_serving_files(tmp_path, cert_pem=pki[1], key_pem=pki[2])
    check = TrustCheck(admission_api=admission, served=(tmp_path / "tls.crt").read_bytes, ttl=0)
    assert check() is None and check.trusted is None  # webhook not installed: nothing to be trusted by

    class Forbidden:
        def read_mutating_webhook_configuration(self, *args: Any, **kwargs: Any) -> Any:
            raise client.ApiException(status=403, reason="Forbidden")

    denied = TrustCheck(admission_api=Forbidden(), served=(tmp_path / "tls.crt").read_bytes, ttl=0)
    assert denied() == "cannot read MutatingWebhookConfiguration negsync (HTTP 403)"


def test_trust_is_cached_for_its_ttl(kube: KubeApiEmulator, admission: Any, pki: Any, tmp_path: Path) -> None:
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
