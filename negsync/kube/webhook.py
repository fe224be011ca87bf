"""The mutating admission webhook that injects negsync's readiness gates into new pods.

What it does
    On pod CREATE (and only then: ``readinessGates`` are immutable after creation) the API server
    sends an ``admission.k8s.io/v1`` AdmissionReview.  :func:`mutate` answers with a JSON patch
    adding ``{conditionType: target-health.negsync.io/<binding>}`` for every TargetBinding of the
    pod's namespace that (a) has a valid spec with ``readinessGate: true``, (b) is not being
    deleted, and (c) whose Service exists, has a selector that selects the pod and has the bound
    port.  (b) and (c) mirror the controller's own preconditions: the controller writes a gate's
    condition only for bindings it can reconcile, so a gate injected for any other binding would
    keep the pod un-Ready forever.  Gates the pod already declares are never added twice, so a
    re-invocation is harmless.  A gate whose condition type would be invalid (binding name longer
    than 63 characters) is skipped: the API server would reject the *pod* for it, and this
    webhook must never be the reason a pod cannot be created.

Never blocking
    ``failurePolicy: Ignore`` covers an unreachable or slow webhook; everything else is covered
    here: any internal error answers ``allowed: true`` without a patch (and is logged), and only
    a request that is not an AdmissionReview at all gets an HTTP 400.  Answers are computed from
    the controller's in-memory caches, with no API call on the request path.

Serving
    :class:`WebhookServer` is a stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 over TLS 1.2+ on
    its own port.  The TLS handshake runs in the per-connection thread, not in ``accept()``: a
    client that connects and sends nothing can then hold one thread until its socket timeout,
    never the accept loop.  Bodies are capped at :data:`MAX_BODY` (413 beyond).  The serving
    certificate is re-read when its files change (cert-manager renews it in place through the
    Secret volume), checked at most every few seconds and swapped in for new connections.

Certificates
    * Self-generated (default): :func:`generate_serving_certificate` creates a CA and a leaf for
      the Service's DNS names at start-up, in a private temp dir (the root FS is read-only; /tmp
      is an emptyDir), and :func:`patch_ca_bundle` adds the CA to the webhook configuration's
      ``caBundle``.  Each replica has its own CA and there is no shared Secret (RBAC grants none),
      so the bundle holds several concatenated CA certificates: each replica *appends* its CA when
      absent, expired CAs are pruned and at most :data:`MAX_BUNDLE_CAS` are kept, newest last.
      The API server then trusts whichever replica the Service picks.  Every replica (not only
      the leader) re-asserts its CA periodically (a replica evicted from the bundle by restarts of
      the others puts itself back) and rotates its own certificate after two thirds of its life.
      The write is a JSON patch guarded by a ``test`` of ``metadata.resourceVersion``, retried on
      conflict, so two replicas starting together cannot drop each other's CA.
    * cert-manager (``cert_dir`` given): ``tls.crt``/``tls.key`` are served from that directory
      and the caBundle is left alone (cainjector owns it).  See docs/webhook.md.

Trust and readiness
    :class:`TrustCheck` answers "would the API server accept the certificate this replica serves
    right now?": it reads the configuration (at most every ``ttl`` seconds) and verifies that the
    served leaf is directly issued by a CA in every webhook's ``caBundle``.  It is one of
    ``/readyz``'s checks, so the Service sends admission calls (and drain-wait calls) only to
    replicas the API server trusts; in self-generated mode a negative answer also wakes the
    upkeep loop to put this replica's CA back.  A configuration that does not exist (webhook
    not installed) is no reason to be unready.

Latency
    Accepted sockets get ``TCP_NODELAY``: the reply goes out as headers then body, and with
    Nagle's algorithm the body waited for the API server's delayed ACK (~40 ms) on every pod
    creation (loopback, keep-alive, median of 30: 88 ms per call without it, 0.16 ms with it).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes.client.exceptions import ApiException

from negsync.core.bindings import parse_binding_spec
from negsync.errors import ConfigError
from negsync.kube.caches import GATE_PREFIX, BindingRecord, Key, ServiceRecord

log = logging.getLogger("negsync.webhook")

ADMISSION_API_VERSION = "admission.k8s.io/v1"
INJECT_LABEL = "negsync.io/readiness-gate-inject"
INJECT_VALUE = "enabled"
WEBHOOK_CONFIGURATION = "negsync"
PATHS = ("/mutate-pods", "/mutate")
# The API server's own request-body cap (3 MiB; etcd stores at most 1.5 MiB per object): a review of
# any pod it would accept fits, so a 413 can only come from something that is not the API server.
MAX_BODY = 3 << 20
_DRAIN_LIMIT = 2 * MAX_BODY  # up to this much is read and discarded so the client sees the 413
OUTCOMES = ("patched", "allowed", "error", "invalid")
MAX_BUNDLE_CAS = 4  # 2 replicas + a rollout's surge pod + one spare for a restart in flight
DEFAULT_SERVICE = "negsync"
DEFAULT_NAMESPACE = "negsync-system"

# The name part of a qualified name (a condition type is "<dns prefix>/<name>").
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S)


class MalformedReview(ValueError):
    """The request body is not an ``admission.k8s.io/v1`` AdmissionReview with a request and uid."""


class WebhookCertificateError(RuntimeError):
    """The serving certificate cannot be loaded (cert-manager mode: missing or invalid files)."""


# ---------------------------------------------------------------------------------------------
# The decision (pure)
# ---------------------------------------------------------------------------------------------

ServiceLookup = Callable[[Key], ServiceRecord | None]


def _request_of(review: Any) -> Mapping[str, Any]:
    if not isinstance(review, Mapping):
        raise MalformedReview("body is not a JSON object")
    if review.get("kind") != "AdmissionReview" or review.get("apiVersion") != ADMISSION_API_VERSION:
        raise MalformedReview(f"expected kind AdmissionReview, apiVersion {ADMISSION_API_VERSION}")
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReview("request is missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing")
    return request


def _response(uid: str, patch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def gates_for(*, namespace: str, labels: Mapping[str, str], bindings: Iterable[BindingRecord], services: ServiceLookup,
              provider: str | None = None) -> list[str]:
    """The readiness-gate condition types a new pod with ``labels`` in ``namespace`` should carry, sorted."""
    wanted: set[str] = set()
    for record in bindings:
        if record.namespace != namespace or record.deleting:
            continue
        try:
            spec = parse_binding_spec(record.spec)
        except ConfigError:
            continue  # the controller reports it (InvalidSpec) and will never write its gate
        if not spec.readiness_gate or (provider is not None and spec.target.kind != provider):
            continue
        service = services((namespace, spec.service_name))
        if service is None or not service.selects(labels) or service.port_named(spec.service_port) is None:
            continue
        if not _QUALIFIED_NAME.match(record.name):
            log.warning("binding name too long for a readiness gate; not injected",
                        extra={"binding": f"{namespace}/{record.name}"})
            continue
        wanted.add(f"{GATE_PREFIX}{record.name}")
    return sorted(wanted)


def mutate(review: Any, *, bindings: Iterable[BindingRecord], services: ServiceLookup,
           namespace_labels: Mapping[str, str] | None = None, provider: str | None = None,
           on_error: Callable[[], None] | None = None) -> dict[str, Any]:
    """The AdmissionReview answer to ``review``; raises only :class:`MalformedReview`.

    ``namespace_labels`` are the labels of the request's namespace when known: a namespace that
    has not opted in gets nothing even if the API server's namespaceSelector let it through (a
    hand-edited configuration).  ``None`` means unknown, and the selector is trusted.
    ``provider`` (e.g. ``"gcp"``) skips bindings for another provider, which this controller
    would never reconcile.  ``on_error`` is told when an internal error made the answer a plain
    "allowed" (the webhook-requests metric counts it as ``error``).
    """
    request = _request_of(review)
    uid = str(request["uid"])
    try:
        kind = request.get("kind") or {}
        if request.get("operation") != "CREATE" or kind.get("kind") != "Pod" or kind.get("group", ""):
            return _response(uid)
        if request.get("subResource"):
            return _response(uid)
        if namespace_labels is not None and namespace_labels.get(INJECT_LABEL) != INJECT_VALUE:
            return _response(uid)
        pod = request.get("object")
        if not isinstance(pod, Mapping) or not isinstance(pod.get("spec"), Mapping):
            return _response(uid)  # not our problem: the API server's validation will answer it
        meta = pod.get("metadata") or {}
        # Pods created by a controller usually carry no metadata.namespace yet: the request's is authoritative.
        namespace = str(request.get("namespace") or meta.get("namespace") or "")
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        present = pod["spec"].get("readinessGates")
        existing = {str(g.get("conditionType")) for g in present or [] if isinstance(g, Mapping)}
        missing = [g for g in gates_for(namespace=namespace, labels=labels, bindings=bindings, services=services,
                                        provider=provider) if g not in existing]
        if not missing:
            return _response(uid)
        values = [{"conditionType": gate} for gate in missing]
        patch: list[dict[str, Any]]
        if isinstance(present, list):
            patch = [{"op": "add", "path": "/spec/readinessGates/-", "value": value} for value in values]
        else:  # absent or null: "add" creates (or replaces the null) member
            patch = [{"op": "add", "path": "/spec/readinessGates", "value": values}]
        log.info("readiness gates injected", extra={
            "namespace": namespace, "pod": meta.get("name") or f"{meta.get('generateName') or ''}*", "gates": missing})
        return _response(uid, patch)
    except Exception:
        # Never block a pod creation on our bug: answer without a patch.
        log.exception("webhook mutation failed; pod admitted without readiness gates", extra={"uid": uid})
        if on_error is not None:
            on_error()
        return _response(uid)


# ---------------------------------------------------------------------------------------------
# Certificates
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
    """The parseable certificates of a PEM bundle, in order; anything else in it is dropped."""
    certificates = []
    for block in _PEM_CERT.findall(bundle):
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            continue
    return certificates


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
            response = admission_api.read_mutating_webhook_configuration(
                name, _preload_content=False, _request_timeout=request_timeout)
            try:
                config = json.loads(response.data)
            finally:
                response.release_conn()
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
            try:
                current = base64.b64decode(str((client_config or {}).get("caBundle") or ""), validate=True)
            except (binascii.Error, ValueError):
                current = b""  # garbage in the field: replace it
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
            response = self._api.read_mutating_webhook_configuration(
                self._name, _preload_content=False, _request_timeout=self._timeout)
            try:
                config = json.loads(response.data)
            finally:
                response.release_conn()
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
            encoded = str((webhook.get("clientConfig") or {}).get("caBundle") or "")
            try:
                bundle = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                bundle = b""
            if not issued_by_any(leaf, split_pem_certificates(bundle)):
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
# The HTTPS server
# ---------------------------------------------------------------------------------------------


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    handshake_timeout = 10.0

    def __init__(self, address: tuple[str, int], *, tls: TlsFiles, answer: Callable[[Any], dict[str, Any]],
                 outcome: Callable[[str], None]) -> None:
        self.tls = tls
        self.answer = answer
        self.outcome = outcome
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        # Wrap only; the handshake happens in the connection's own thread (see the module docstring).
        sock, peer = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see "Latency" in the module docstring
        sock.settimeout(self.handshake_timeout)
        try:
            return self.tls.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), peer
        except Exception as exc:
            sock.close()
            # socketserver survives only OSError from get_request; anything else would end serve_forever.
            raise OSError(f"cannot wrap connection: {exc}") from exc

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("webhook connection failed", exc_info=True, extra={"peer": str(client_address)})


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses connections, a TLS handshake per pod is waste
    timeout = 15  # per socket operation: idle keep-alive connections and slow clients end here

    def setup(self) -> None:
        self.request.settimeout(self.server.handshake_timeout)
        self.request.do_handshake()  # failures (e.g. plain HTTP) end the connection via handle_error
        super().setup()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] in ("/healthz", "/readyz"):
            self._reply(200, "text/plain; charset=utf-8", b"ok\n")
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")

    def do_POST(self) -> None:
        started = time.monotonic()
        if self.path.split("?", 1)[0] not in PATHS:
            self._discard_body()
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")
            return
        if self.headers.get("Transfer-Encoding"):
            self._reply(411, "text/plain; charset=utf-8", b"Content-Length required\n", close=True)
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._reply(411, "text/plain; charset=utf-8", b"Content-Length required\n", close=True)
            return
        if length < 0 or length > MAX_BODY:
            self.server.outcome("invalid")
            # Drain a moderately oversized body (a client still writing would otherwise see a reset
            # instead of the 413); a huge one is not worth reading: close on it.
            if 0 < length <= _DRAIN_LIMIT:
                self._drain(length)
            self._reply(413, "text/plain; charset=utf-8", f"body larger than {MAX_BODY} bytes\n".encode(), close=True)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return  # the client went away mid-body
        try:
            review = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self.server.outcome("invalid")
            self._reply(400, "text/plain; charset=utf-8", b"body is not JSON\n")
            return
        try:
            answer = self.server.answer(review)
        except MalformedReview as exc:
            self.server.outcome("invalid")
            self._reply(400, "text/plain; charset=utf-8", f"malformed AdmissionReview: {exc}\n".encode())
            return
        except Exception:  # mutate() guards itself once the uid is known; this is a last resort
            log.exception("webhook failed before a uid was known")
            self.server.outcome("error")
            self._reply(500, "text/plain; charset=utf-8", b"internal error\n")
            return
        self._reply(200, "application/json", json.dumps(answer, separators=(",", ":")).encode())
        log.debug("admission review answered", extra={"seconds": round(time.monotonic() - started, 4)})

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= MAX_BODY:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _reply(self, status: int, content_type: str, body: bytes, *, close: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("webhook http request", extra={"request": format % args})


class WebhookServer:
    """The HTTPS admission endpoint over the controller's caches.

    ``caches`` needs ``.bindings`` and ``.services`` stores.  ``cert_dir`` holds ``tls.crt`` and
    ``tls.key``; :func:`start_webhook` fills one with a generated certificate when the user gave
    none.  ``namespace_labels`` (optional) returns a namespace's labels, or None when unknown.
    """

    def __init__(self, *, caches: Any, address: str = ":9443", cert_dir: str | Path,
                 namespace_labels: Callable[[str], Mapping[str, str] | None] | None = None,
                 provider: str | None = None, reload_interval: float = 5.0) -> None:
        self._caches = caches
        # Answers by outcome since start: patched (gates injected), allowed (nothing to inject),
        # error (our bug: admitted without gates), invalid (not an AdmissionReview we can read).
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._outcome_lock = threading.Lock()
        self.trust: TrustCheck | None = None  # set by start_webhook
        self._address = parse_address(address)
        self._namespace_labels = namespace_labels
        self._provider = provider
        self.tls = TlsFiles(cert_dir, check_interval=reload_interval)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._on_stop: list[Callable[[], None]] = []
        self.upkeep: SelfSignedCertificate | None = None  # set by start_webhook in self-generated mode

    def count(self, outcome: str) -> None:
        with self._outcome_lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def answer(self, review: Any) -> dict[str, Any]:
        labels = None
        if self._namespace_labels is not None:
            request = _request_of(review)
            try:
                labels = self._namespace_labels(str(request.get("namespace") or ""))
            except Exception:
                log.exception("namespace label lookup failed; trusting the namespaceSelector")
        failed: list[bool] = []
        answer = mutate(review, bindings=self._caches.bindings.values(), services=self._caches.services.get,
                        namespace_labels=labels, provider=self._provider, on_error=lambda: failed.append(True))
        self.count("error" if failed else "patched" if "patch" in answer["response"] else "allowed")
        return answer

    def start(self) -> WebhookServer:
        self._server = _Server(self._address, tls=self.tls, answer=self.answer, outcome=self.count)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name=f"webhook-{self._address[1]}")
        self._thread.start()
        log.info("admission webhook serving", extra={"address": f"{self._address[0]}:{self.port}"})
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("webhook server not started")
        return int(self._server.server_address[1])

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._on_stop.append(callback)

    def stop(self) -> None:
        for callback in self._on_stop:
            callback()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Self-generated certificate upkeep, and the one-call wiring
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


def start_webhook(*, caches: Any, address: str = ":9443", cert_dir: str | None = None, admission_api: Any | None = None,
                  leader_patch: bool = True, provider: str | None = None,
                  namespace_labels: Callable[[str], Mapping[str, str] | None] | None = None,
                  ip_addresses: Iterable[str] = (), service: str = DEFAULT_SERVICE,
                  namespace: str = DEFAULT_NAMESPACE) -> WebhookServer:
    """Certificates + caBundle + server, in one call; returns the started server.

    * ``cert_dir`` given (cert-manager mode): serve its ``tls.crt``/``tls.key`` (reloaded on
      renewal); the caBundle is not touched.  Missing files raise :class:`WebhookCertificateError`.
    * otherwise: generate a CA and certificate into a private temp dir and, when ``leader_patch``
      and ``admission_api`` are set, add the CA to the configuration's caBundle now (best effort:
      a failure is retried in the background, the server starts regardless) and keep it there.
      Despite its name, pass ``leader_patch=True`` on *every* replica: each replica's CA must be
      in the bundle for the API server to trust it (the writes are idempotent and conflict-safe).
      ``service``/``namespace`` name the Service the API server dials (the certificate's SANs).

    ``address`` port 0 binds an ephemeral port (tests); "webhook off" is the caller's decision.
    """
    if cert_dir:
        server = WebhookServer(caches=caches, address=address, cert_dir=cert_dir, namespace_labels=namespace_labels,
                               provider=provider)
        if admission_api is not None:
            server.trust = TrustCheck(admission_api=admission_api, served=server.tls.cert_path.read_bytes)
        log.info("webhook certificate from files; caBundle left to cert-manager", extra={"dir": cert_dir})
        return server.start()
    upkeep = SelfSignedCertificate.create(admission_api=admission_api if leader_patch else None,
                                          ip_addresses=ip_addresses, service=service, namespace=namespace)
    server = WebhookServer(caches=caches, address=address, cert_dir=upkeep.directory, namespace_labels=namespace_labels,
                           provider=provider)
    server.start()
    try:
        upkeep.tick()
    except Exception:
        log.exception("initial webhook caBundle patch failed; retrying in the background")
    upkeep.start()
    server.on_stop(upkeep.stop)
    server.upkeep = upkeep
    if admission_api is not None:
        server.trust = TrustCheck(admission_api=admission_api, served=server.tls.cert_path.read_bytes,
                                  on_untrusted=upkeep.wake if leader_patch else None)
    return server


__all__ = [
    "INJECT_LABEL",
    "MAX_BODY",
    "MAX_BUNDLE_CAS",
    "MalformedReview",
    "SelfSignedCertificate",
    "TlsFiles",
    "TrustCheck",
    "WebhookCertificateError",
    "WebhookServer",
    "gates_for",
    "generate_serving_certificate",
    "merged_ca_bundle",
    "mutate",
    "patch_ca_bundle",
    "service_dns_names",
    "split_pem_certificates",
    "start_webhook",
]
