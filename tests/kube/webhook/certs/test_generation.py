"""The self-generated CA and leaf (:mod:`negsync.kube.webhook.certs.generation`)."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from negsync.kube.webhook import generate_serving_certificate, write_serving_files


def test_generated_certificate_names() -> None:
    ca_pem, cert_pem, _ = generate_serving_certificate(ip_addresses=["127.0.0.1"], dns_names=["localhost"])
    ca, leaf = x509.load_pem_x509_certificate(ca_pem), x509.load_pem_x509_certificate(cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert leaf.issuer == ca.subject
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"negsync", "negsync.negsync-system", "negsync.negsync-system.svc",
            "negsync.negsync-system.svc.cluster.local", "localhost"} <= set(sans.get_values_for_type(x509.DNSName))
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_serving_files_are_replaced_whole_and_the_key_is_private(tmp_path: Path) -> None:
    _, cert_pem, key_pem = generate_serving_certificate()
    (tmp_path / "tls.crt").write_bytes(b"old")
    write_serving_files(tmp_path, cert_pem=cert_pem, key_pem=key_pem)
    assert (tmp_path / "tls.crt").read_bytes() == cert_pem and (tmp_path / "tls.key").read_bytes() == key_pem
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tls.crt", "tls.key"]  # no temp file left behind
