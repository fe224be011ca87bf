"""Serving files re-read when they change (:mod:`negsync.kube.webhook.certs.reload`).

cert-manager renews ``tls.crt``/``tls.key`` in place through the Secret volume; the server asks
:class:`TlsFiles` for its context at each accept.  Served end to end in tests/kube/webhook/test_webhook.py.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509

from negsync.kube.webhook import TlsFiles, WebhookCertificateError, generate_serving_certificate, write_serving_files


def serve_new_pair(directory: Path) -> bytes:
    _, cert_pem, key_pem = generate_serving_certificate()
    write_serving_files(directory, cert_pem=cert_pem, key_pem=key_pem)
    return cert_pem


def test_missing_files_are_a_clear_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(WebhookCertificateError, match=r"tls\.crt"):
        TlsFiles(tmp_path)


def test_a_renewal_builds_a_new_context_and_an_unchanged_pair_does_not(tmp_path: Path) -> None:
    serve_new_pair(tmp_path)
    files = TlsFiles(tmp_path, check_interval=0)
    first = files.context()
    assert isinstance(first, ssl.SSLContext) and files.context() is first
    serve_new_pair(tmp_path)
    assert files.context() is not first


def test_a_broken_renewal_keeps_serving_the_previous_certificate(tmp_path: Path) -> None:
    serve_new_pair(tmp_path)
    files = TlsFiles(tmp_path, check_interval=0)
    first = files.context()
    (tmp_path / "tls.crt").write_bytes(b"half-written")
    assert files.context() is first
    renewed = serve_new_pair(tmp_path)
    assert files.context() is not first
    assert files.not_after() == x509.load_pem_x509_certificate(renewed).not_valid_after_utc
