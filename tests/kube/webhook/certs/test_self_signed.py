"""Self-generated mode's upkeep: rotation adds the new CA before swapping, and re-asserts the current one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from kubernetes import client

from negsync.kube.webhook import SelfSignedCertificate
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.webhook.certs.test_ca_bundle import bundle_of, ca_cert
from tests.kube.webhook.support import webhook_configuration


def test_rotation_adds_new_ca_before_swapping(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(webhook_configuration())
    upkeep = SelfSignedCertificate.create(admission_api=client.AdmissionregistrationV1Api(api_client), days=30)
    old_ca = upkeep.ca_pem
    assert upkeep.tick()
    assert upkeep.ca_pem == old_ca  # young: nothing rotated
    assert upkeep.tick(now=datetime.now(UTC) + timedelta(days=25))
    assert upkeep.ca_pem != old_ca
    assert bundle_of(kube) == [ca_cert(old_ca), ca_cert(upkeep.ca_pem)]
    leaf = x509.load_pem_x509_certificate((upkeep.directory / "tls.crt").read_bytes())
    assert leaf.issuer == ca_cert(upkeep.ca_pem).subject


def test_rotation_waits_for_the_new_ca_to_be_trusted_unless_expiry_is_near(
        kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    # No configuration: the new CA cannot be added, so swapping would serve an untrusted certificate.
    upkeep = SelfSignedCertificate.create(admission_api=client.AdmissionregistrationV1Api(api_client), days=30)
    old_ca, old_leaf = upkeep.ca_pem, (upkeep.directory / "tls.crt").read_bytes()
    assert upkeep.tick(now=datetime.now(UTC) + timedelta(days=25)) is False
    assert upkeep.ca_pem == old_ca and (upkeep.directory / "tls.crt").read_bytes() == old_leaf
    # Less than a day left: an untrusted new certificate beats an expired one.
    assert upkeep.tick(now=datetime.now(UTC) + timedelta(days=29, hours=12)) is False
    assert upkeep.ca_pem != old_ca
    leaf = x509.load_pem_x509_certificate((upkeep.directory / "tls.crt").read_bytes())
    assert leaf.issuer == ca_cert(upkeep.ca_pem).subject and upkeep.trusted is False
