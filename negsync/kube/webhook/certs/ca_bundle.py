"""The webhook configuration's caBundle: every live replica's CA in it, each replica putting its own back.

Each replica has its own CA (:mod:`.generation`), so the ``caBundle`` of every webhook in the
MutatingWebhookConfiguration holds several concatenated CA certificates: a replica *appends* its
CA when absent, expired CAs are pruned and at most :data:`MAX_BUNDLE_CAS` are kept, newest last
(never dropping the writer's own).  The API server then trusts whichever replica the Service
picks.  The write is a JSON patch guarded by a ``test`` of ``metadata.resourceVersion`` (and of
each patched webhook's name, pinning its index), retried on conflict, so two replicas starting
together cannot drop each other's CA.  The bundle is read as the API server reads it: a block that
does not parse is skipped, the others kept (:func:`split_pem_certificates`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("negsync.webhook")


WEBHOOK_CONFIGURATION = "negsync"
MAX_BUNDLE_CAS = 4  # 2 replicas + a rollout's surge pod + one spare for a restart in flight
_PEM_END = b"-----END CERTIFICATE-----"


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


__all__ = ["MAX_BUNDLE_CAS", "WEBHOOK_CONFIGURATION", "ca_bundle_of", "merged_ca_bundle", "patch_ca_bundle",
           "read_configuration", "split_pem_certificates"]
