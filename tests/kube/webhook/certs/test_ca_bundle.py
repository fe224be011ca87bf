"""The caBundle: read as the API server reads it, every replica's CA kept, written without losing a race.

Reading a bundle of several CAs uses cryptography's multi-certificate loader; the patch tests run
the real kubernetes client against the API emulator (:mod:`negsync.kube.webhook.certs.ca_bundle`).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography import x509
from kubernetes import client

from negsync.kube.webhook import (
    MAX_BUNDLE_CAS,
    generate_serving_certificate,
    merged_ca_bundle,
    patch_ca_bundle,
    split_pem_certificates,
)
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.webhook.support import webhook_configuration


def cas(n: int) -> list[bytes]:
    return [generate_serving_certificate()[0] for _ in range(n)]


def subjects(certificates: list[x509.Certificate]) -> list[str]:
    return [c.subject.rfc4514_string() for c in certificates]


def test_a_bundle_is_read_in_order_whatever_surrounds_the_certificates() -> None:
    first, second, third = cas(3)
    key_block = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
    bundle = b"# replica a\n" + first + key_block + second.replace(b"\n", b"\r\n") + b"trailing words\n" + third
    expected = subjects([x509.load_pem_x509_certificate(pem) for pem in (first, second, third)])
    assert subjects(split_pem_certificates(bundle)) == expected


def test_nothing_readable_is_an_empty_list() -> None:
    assert split_pem_certificates(b"") == []
    assert split_pem_certificates(b"garbage") == []


def test_a_broken_certificate_drops_only_itself() -> None:
    """Go's ``CertPool.AppendCertsFromPEM`` (the API server's reader) skips a block it cannot parse."""
    first, second, third = cas(3)
    header, body = second.split(b"\n", 1)
    broken = header + b"\n" + body.replace(body[40:80], b"A" * 40, 1)  # base64 still, DER no longer
    bundle = first + broken + third
    assert subjects(split_pem_certificates(bundle)) == subjects(split_pem_certificates(first + third))
    # A replica merging its CA in keeps the other replicas' CAs and sheds the broken block.
    ours = cas(1)[0]
    merged = merged_ca_bundle(bundle, ours)
    assert subjects(split_pem_certificates(merged)) == subjects(split_pem_certificates(first + third + ours))


def bundle_of(kube: KubeApiEmulator) -> list[x509.Certificate]:
    config = kube.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, "negsync")
    assert config is not None
    return split_pem_certificates(base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]))


def ca_cert(ca_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca_pem)


def patches(kube: KubeApiEmulator) -> int:
    return sum(1 for r in kube.requests if r.method == "PATCH")


def test_patch_ca_bundle_appends_each_replicas_ca(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(webhook_configuration())
    api = client.AdmissionregistrationV1Api(api_client)
    first, second = generate_serving_certificate()[0], generate_serving_certificate()[0]
    assert patch_ca_bundle(admission_api=api, ca_pem=first)
    assert bundle_of(kube) == [ca_cert(first)]
    assert patch_ca_bundle(admission_api=api, ca_pem=second)
    assert bundle_of(kube) == [ca_cert(first), ca_cert(second)]
    writes = patches(kube)
    assert patch_ca_bundle(admission_api=api, ca_pem=first) and patch_ca_bundle(admission_api=api, ca_pem=second)
    assert patches(kube) == writes  # idempotent: no write when already trusted
    assert next(r.content_type for r in kube.requests if r.method == "PATCH").startswith("application/json-patch+json")


def test_patch_ca_bundle_bounded(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(webhook_configuration(ca_bundle=base64.b64encode(b"garbage").decode()))
    api = client.AdmissionregistrationV1Api(api_client)
    cas = [generate_serving_certificate()[0] for _ in range(MAX_BUNDLE_CAS + 2)]
    for ca in cas:
        assert patch_ca_bundle(admission_api=api, ca_pem=ca)
    assert bundle_of(kube) == [ca_cert(ca) for ca in cas[-MAX_BUNDLE_CAS:]]
    # An evicted replica re-asserting puts itself back (evicting the oldest), as its upkeep loop does.
    assert patch_ca_bundle(admission_api=api, ca_pem=cas[0])
    assert bundle_of(kube) == [ca_cert(ca) for ca in [*cas[-MAX_BUNDLE_CAS + 1:], cas[0]]]


def test_patch_ca_bundle_retries_on_conflict(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    kube.create(webhook_configuration())
    kube.inject("PATCH", r"mutatingwebhookconfigurations/negsync", 409)
    ca = generate_serving_certificate()[0]
    assert patch_ca_bundle(admission_api=client.AdmissionregistrationV1Api(api_client), ca_pem=ca)
    assert bundle_of(kube) == [ca_cert(ca)]


def test_patch_ca_bundle_missing_configuration(kube: KubeApiEmulator, api_client: client.ApiClient) -> None:
    ca = generate_serving_certificate()[0]
    assert patch_ca_bundle(admission_api=client.AdmissionregistrationV1Api(api_client), ca_pem=ca) is False


def test_merged_bundle_prunes_expired() -> None:
    past = datetime.now(UTC) - timedelta(days=400)
    expired = generate_serving_certificate(days=30, now=past)[0]
    current = generate_serving_certificate()[0]
    merged = merged_ca_bundle(expired, current)
    assert split_pem_certificates(merged) == [ca_cert(current)]
