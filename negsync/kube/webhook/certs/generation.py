"""The self-generated serving certificate: a one-use CA and the leaf it signs, written atomically.

Each replica makes its own pair at start-up (and again when :mod:`.self_signed` rotates it): an
ECDSA P-256 CA whose key is thrown away once the leaf is signed, and a leaf for the Service's DNS
names.  Nothing is shared between replicas, so no Secret is needed (RBAC grants none); the API
server learns every replica's CA through the caBundle (:mod:`.ca_bundle`).  Files are written in
a private temp dir (the root FS is read-only; /tmp is an emptyDir) by rename, key first, so the
reloader (:mod:`.reload`) never pairs a new certificate with an old key.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVICE = "negsync"
DEFAULT_NAMESPACE = "negsync-system"


def service_dns_names(service: str = DEFAULT_SERVICE, namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def generate_serving_certificate(*, service: str = DEFAULT_SERVICE, namespace: str = DEFAULT_NAMESPACE,
                                 dns_names: Iterable[str] = (), ip_addresses: Iterable[str] = (), days: int = 365,
                                 now: datetime | None = None) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and a serving certificate it signed: ``(ca_pem, cert_pem, key_pem)``.

    ECDSA P-256: fast to generate (start-up and tests) and accepted by the API server.  The CA
    key is discarded once the leaf is signed: nothing else is ever signed with it, so it cannot
    leak.  ``dns_names``/``ip_addresses`` add SANs (tests use ``127.0.0.1``).
    """
    now = now or datetime.now(UTC)
    not_before, not_after = now - timedelta(minutes=5), now + timedelta(days=days)  # 5 min: clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"negsync-webhook-ca-{os.urandom(4).hex()}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys([*service_dns_names(service, namespace), *dns_names]))
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{service}.{namespace}.svc")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca.public_bytes(serialization.Encoding.PEM), leaf.public_bytes(serialization.Encoding.PEM), key_pem


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # Rename, so a connection accepted mid-rotation never reads a half-written or mismatched file.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def write_serving_files(directory: Path, *, cert_pem: bytes, key_pem: bytes) -> None:
    # Key before certificate: the reloader notices the certificate's change, by then both are new.
    _write_atomic(directory / "tls.key", key_pem, 0o600)
    _write_atomic(directory / "tls.crt", cert_pem, 0o644)


__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_SERVICE", "generate_serving_certificate", "service_dns_names",
           "write_serving_files"]
