"""The webhook's serving certificate: generation, caBundle patching, reload, and the trust check.

Certificates
    * Self-generated (default): :func:`generate_serving_certificate` creates a CA and a leaf for
      the Service's DNS names at start-up, in a private temp dir (the root FS is read-only; /tmp
      is an emptyDir), and :func:`patch_ca_bundle` adds the CA to the webhook configuration's
      ``caBundle``.  Each replica has its own CA and there is no shared Secret (RBAC grants none),
      so the bundle holds several concatenated CA certificates: each replica *appends* its CA when
      absent, expired CAs are pruned and at most :data:`MAX_BUNDLE_CAS` are kept, newest last.
      The API server then trusts whichever replica the Service picks.  Every replica (not only
      the leader) re-asserts its CA periodically (a replica evicted from the bundle by restarts of
      the others puts itself back) and rotates its own certificate after two thirds of its life
      (:class:`SelfSignedCertificate`).  The write is a JSON patch guarded by a ``test`` of
      ``metadata.resourceVersion``, retried on conflict, so two replicas starting together cannot
      drop each other's CA.
    * cert-manager (``cert_dir`` given): ``tls.crt``/``tls.key`` are served from that directory
      and the caBundle is left alone (cainjector owns it).  See docs/webhook.md.

    Either way :class:`TlsFiles` re-reads the files when they change (cert-manager renews them in
    place through the Secret volume), checked at most every few seconds, and the server swaps the
    new context in for new connections.  A bundle of several certificates is read with
    ``cryptography``'s multi-certificate PEM loader.

Trust and readiness
    :class:`TrustCheck` answers "would the API server accept the certificate this replica serves
    right now?": it reads the configuration (at most every ``ttl`` seconds) and verifies that the
    served leaf is directly issued by a CA in every webhook's ``caBundle``.  It is one of
    ``/readyz``'s checks, so the Service sends admission calls (and drain-wait calls) only to
    replicas the API server trusts; in self-generated mode a negative answer also wakes the
    upkeep loop to put this replica's CA back.  A configuration that does not exist (webhook
    not installed) is no reason to be unready.

One module (over 450 lines) for the certificate's whole life: generation, bundle, reload and trust
read the same PEM and the same configuration, and split apart they would import each other.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("negsync.webhook")

WEBHOOK_CONFIGURATION = "negsync"
MAX_BUNDLE_CAS = 4  # 2 replicas + a rollout's surge pod + one spare for a restart in flight
DEFAULT_SERVICE = "negsync"
DEFAULT_NAMESPACE = "negsync-system"
_PEM_END = b"-----END CERTIFICATE-----"


class WebhookCertificateError(RuntimeError):
    """The serving certificate cannot be loaded (cert-manager mode: missing or invalid files)."""


# ---------------------------------------------------------------------------------------------
# Generation and the caBundle
# ---------------------------------------------------------------------------------------------


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


def split_pem_certificates(bundle: bytes) -> list[x509.Certificate]:
    """The parseable certificates of a PEM bundle, in order; other blocks, text and broken certificates are dropped.

    Read with ``cryptography``'s multi-certificate loader.  The loader is all-or-nothing, while
    the API server builds its trust pool with Go's ``x509.CertPool.AppendCertsFromPEM`` (through
    client-go's ``transport.rootCertPool``), which skips a block that does not parse and keeps
    the rest: so when the whole bundle fails, each certificate block is loaded on its own, and a
    hand-broken block cannot make the other replicas' CAs vanish from the merged bundle.
    """
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        pass
    certificates: list[x509.Certificate] = []
    for piece in bundle.split(_PEM_END)[:-1]:  # each piece ends where one certificate block ends
        try:
            certificates.extend(x509.load_pem_x509_certificates(piece + _PEM_END))
        except ValueError:
            continue
    return certificates


def read_configuration(admission_api: Any, name: str, *, request_timeout: float) -> dict[str, Any]:
    """MutatingWebhookConfiguration ``name`` as raw JSON (the client's models would drop unknown fields)."""
    response = admission_api.read_mutating_webhook_configuration(
        name, _preload_content=False, _request_timeout=request_timeout)
    try:
        config = json.loads(response.data)
    finally:
        response.release_conn()
    return config if isinstance(config, dict) else {}


def ca_bundle_of(webhook: Mapping[str, Any]) -> bytes:
    """One webhook's decoded ``clientConfig.caBundle``; empty when absent or not base64."""
    encoded = str((webhook.get("clientConfig") or {}).get("caBundle") or "")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return b""


def merged_ca_bundle(existing: bytes, ca_pem: bytes, *, now: datetime | None = None,
                     limit: int = MAX_BUNDLE_CAS) -> bytes:
    """``existing`` with ``ca_pem`` appended unless present; expired CAs pruned; at most ``limit``, newest last."""
    now = now or datetime.now(UTC)
    ours = split_pem_certificates(ca_pem)
    if not ours:
        raise ValueError("ca_pem holds no certificate")
    kept: list[x509.Certificate] = []
    for cert in split_pem_certificates(existing):
        if cert.not_valid_after_utc > now and cert not in kept:
            kept.append(cert)
    if ours[0] not in kept:
        kept.append(ours[0])
    while len(kept) > limit:  # drop the oldest, but never our own (it may sit anywhere once present)
        kept.pop(next(i for i, c in enumerate(kept) if c != ours[0]))
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in kept)


def patch_ca_bundle(*, admission_api: Any, ca_pem: bytes, name: str = WEBHOOK_CONFIGURATION, attempts: int = 5,
                    request_timeout: float = 10.0) -> bool:
    """Make every webhook of MutatingWebhookConfiguration ``name`` trust ``ca_pem``; True when it does.

    ``admission_api`` is a ``kubernetes.client.AdmissionregistrationV1Api``.  No write when the
    bundles already hold the CA.  404 (configuration not installed) logs a warning and returns
    False; other API errors are logged and return False too (the caller retries later).
    """
    for _ in range(attempts):
        try:
            config = read_configuration(admission_api, name, request_timeout=request_timeout)
        except ApiException as exc:
            if exc.status == 404:
                log.warning("MutatingWebhookConfiguration not found; caBundle not patched", extra={"configuration": name})
            else:
                log.warning("reading MutatingWebhookConfiguration failed", extra={"configuration": name, "status": exc.status})
            return False
        version = str((config.get("metadata") or {}).get("resourceVersion") or "")
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
        for index, webhook in enumerate(config.get("webhooks") or []):
            client_config = webhook.get("clientConfig")
            current = ca_bundle_of(webhook)  # garbage in the field reads as empty: replaced
            bundle = merged_ca_bundle(current, ca_pem)
            if bundle == current:
                continue
            encoded = base64.b64encode(bundle).decode()
            # The name test pins the index: the list could have been reordered since our read.
            ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.get("name")})
            if isinstance(client_config, Mapping):
                ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded})
            else:
                ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig", "value": {"caBundle": encoded}})
        if len(ops) == 1:
            return True  # already trusted everywhere: no write
        try:
            admission_api.patch_mutating_webhook_configuration(
                name, ops, _content_type="application/json-patch+json", _request_timeout=request_timeout)
        except ApiException as exc:
            if exc.status in (409, 422):
                continue  # another replica wrote in between (the resourceVersion test failed): re-read
            if exc.status == 404:
                log.warning("MutatingWebhookConfiguration not found; caBundle not patched", extra={"configuration": name})
            else:
                log.warning("patching the caBundle failed", extra={"configuration": name, "status": exc.status})
            return False
        log.info("webhook caBundle now trusts this replica's CA", extra={"configuration": name})
        return True
    log.warning("caBundle patch kept conflicting; will retry", extra={"configuration": name})
    return False



# ---------------------------------------------------------------------------------------------
# Is this replica trusted?
# ---------------------------------------------------------------------------------------------


def issued_by_any(leaf: x509.Certificate, cas: Iterable[x509.Certificate]) -> bool:
    """Whether ``leaf`` was signed by one of ``cas`` (the API server's verification, one level deep)."""
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


class TrustCheck:
    """A readiness check: ``None`` while the API server trusts this replica's serving certificate, else why not.

    ``served`` returns the PEM of the certificate currently served.  The configuration is read
    at most every ``ttl`` seconds (``now`` is a monotonic clock); between reads the last verdict
    stands.  ``on_untrusted`` is called on each negative verdict (self-generated mode: wake the
    upkeep loop so it puts this replica's CA back without waiting for its next round).
    """

    def __init__(self, *, admission_api: Any, served: Callable[[], bytes], name: str = WEBHOOK_CONFIGURATION,
                 ttl: float = 30.0, now: Callable[[], float] = time.monotonic,
                 on_untrusted: Callable[[], None] | None = None, request_timeout: float = 5.0) -> None:
        self._api = admission_api
        self._served = served
        self._name = name
        self._ttl = ttl
        self._now = now
        self._on_untrusted = on_untrusted
        self._timeout = request_timeout
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._verdict: str | None = "webhook trust not checked yet"
        self.trusted: bool | None = None  # None: unknown or nothing to be trusted by

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = float("-inf")

    def __call__(self) -> str | None:
        with self._lock:
            if self._now() - self._checked_at < self._ttl:
                return self._verdict
            self._checked_at = self._now()
        verdict = self._check()
        with self._lock:
            self._verdict = verdict
        if verdict is not None and self._on_untrusted is not None and self.trusted is False:
            self._on_untrusted()
        return verdict

    def _check(self) -> str | None:
        try:
            config = read_configuration(self._api, self._name, request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 404:
                self.trusted = None
                return None  # webhook not installed: no caller to be trusted by
            self.trusted = None
            return f"cannot read MutatingWebhookConfiguration {self._name} (HTTP {exc.status})"
        except Exception as exc:  # connection trouble: say so, the next probe retries
            self.trusted = None
            return f"cannot read MutatingWebhookConfiguration {self._name} ({type(exc).__name__})"
        try:
            leaf = x509.load_pem_x509_certificate(self._served())
        except (OSError, ValueError) as exc:
            self.trusted = False
            return f"serving certificate unreadable ({exc})"
        for webhook in config.get("webhooks") or []:
            if not issued_by_any(leaf, split_pem_certificates(ca_bundle_of(webhook))):
                self.trusted = False
                return f"webhook CA not in the caBundle of {self._name} ({webhook.get('name')})"
        self.trusted = True
        return None


# ---------------------------------------------------------------------------------------------
# TLS material with reload
# ---------------------------------------------------------------------------------------------


class TlsFiles:
    """A server SSLContext built from ``tls.crt``/``tls.key`` in a directory, rebuilt when they change."""

    def __init__(self, directory: str | Path, *, check_interval: float = 5.0) -> None:
        self.directory = Path(directory)
        self._interval = check_interval
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._signature: tuple[Any, ...] = ()
        self._context = self._build()  # raises WebhookCertificateError: a bad start must be loud
        self._signature = self._stat()

    @property
    def cert_path(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key_path(self) -> Path:
        return self.directory / "tls.key"

    def _stat(self) -> tuple[Any, ...]:
        # Follows the Secret volume's ..data symlink: a renewal shows up as a new inode.
        signature: list[Any] = []
        for path in (self.cert_path, self.key_path):
            try:
                st = path.stat()
                signature.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                signature.append(None)
        return tuple(signature)

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])  # the API server offers h2 too; we speak HTTP/1.1 only
        try:
            context.load_cert_chain(str(self.cert_path), str(self.key_path))
        except (OSError, ssl.SSLError) as exc:
            raise WebhookCertificateError(f"cannot load {self.cert_path} / {self.key_path}: {exc}") from exc
        return context

    def context(self) -> ssl.SSLContext:
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self._interval:
                return self._context
            self._checked = now
            signature = self._stat()
            if signature != self._signature:
                try:
                    self._context = self._build()
                    log.info("webhook serving certificate reloaded", extra={"path": str(self.cert_path)})
                except WebhookCertificateError as exc:
                    # Mid-rotation or broken: keep serving the previous certificate, try again later.
                    log.warning("webhook certificate reload failed; keeping the previous one", extra={"error": str(exc)})
                self._signature = signature
            return self._context

    def not_after(self) -> datetime:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes()).not_valid_after_utc


# ---------------------------------------------------------------------------------------------
# Self-generated certificate upkeep
# ---------------------------------------------------------------------------------------------


@dataclass
class SelfSignedCertificate:
    """This replica's generated CA + serving certificate, kept trusted and renewed in the background.

    :meth:`tick` (the loop's body, callable directly in tests): rotate when less than a third of
    the lifetime is left (the new CA is added to the bundle *before* the files are swapped, so the
    API server never sees a certificate it does not trust), then re-assert the current CA.
    """

    directory: Path
    ca_pem: bytes
    admission_api: Any | None
    name: str = WEBHOOK_CONFIGURATION
    days: int = 365
    ip_addresses: tuple[str, ...] = ()
    service: str = DEFAULT_SERVICE
    namespace: str = DEFAULT_NAMESPACE
    interval: float = 300.0
    retry: float = 15.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.trusted = False

    @classmethod
    def create(cls, *, admission_api: Any | None, directory: Path | None = None, days: int = 365,
               ip_addresses: Iterable[str] = (), name: str = WEBHOOK_CONFIGURATION, service: str = DEFAULT_SERVICE,
               namespace: str = DEFAULT_NAMESPACE) -> SelfSignedCertificate:
        # mkdtemp: 0700 and unique, so two processes sharing /tmp (tests) never read each other's key.
        path = directory or Path(tempfile.mkdtemp(prefix="negsync-webhook-"))
        ips = tuple(ip_addresses)
        ca_pem, cert_pem, key_pem = generate_serving_certificate(service=service, namespace=namespace, days=days,
                                                                 ip_addresses=ips)
        write_serving_files(path, cert_pem=cert_pem, key_pem=key_pem)
        return cls(directory=path, ca_pem=ca_pem, admission_api=admission_api, name=name, days=days, ip_addresses=ips,
                   service=service, namespace=namespace)

    def tick(self, *, now: datetime | None = None) -> bool:
        """One upkeep pass; True when the bundle trusts the serving certificate's CA."""
        now = now or datetime.now(UTC)
        cert = x509.load_pem_x509_certificate((self.directory / "tls.crt").read_bytes())
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        if cert.not_valid_after_utc - now < lifetime / 3:
            ca_pem, cert_pem, key_pem = generate_serving_certificate(
                service=self.service, namespace=self.namespace, days=self.days, ip_addresses=self.ip_addresses, now=now)
            added = self.admission_api is None or patch_ca_bundle(admission_api=self.admission_api, ca_pem=ca_pem,
                                                                  name=self.name)
            # Swap only once the new CA is trusted, unless the old certificate is about to expire anyway.
            if added or cert.not_valid_after_utc - now < timedelta(days=1):
                write_serving_files(self.directory, cert_pem=cert_pem, key_pem=key_pem)
                self.ca_pem = ca_pem
                log.info("webhook serving certificate rotated", extra={"dir": str(self.directory)})
        if self.admission_api is None:
            self.trusted = False
            return False
        self.trusted = patch_ca_bundle(admission_api=self.admission_api, ca_pem=self.ca_pem, name=self.name)
        return self.trusted

    def wake(self) -> None:
        """Run the next upkeep pass now (the trust check saw this replica's CA missing)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval if self.trusted or self.admission_api is None else self.retry)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:
                log.exception("webhook certificate upkeep failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="webhook-cert")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE",
    "MAX_BUNDLE_CAS",
    "WEBHOOK_CONFIGURATION",
    "SelfSignedCertificate",
    "TlsFiles",
    "TrustCheck",
    "WebhookCertificateError",
    "generate_serving_certificate",
    "issued_by_any",
    "merged_ca_bundle",
    "patch_ca_bundle",
    "service_dns_names",
    "split_pem_certificates",
    "write_serving_files",
]
