"""Reading a caBundle of several CAs, as the API server does (cryptography's multi-certificate loader)."""

from __future__ import annotations

from cryptography import x509

from negsync.kube.webhook import generate_serving_certificate, merged_ca_bundle, split_pem_certificates


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
