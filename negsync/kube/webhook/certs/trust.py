"""Is this replica trusted?  A readiness check against the caBundle the API server verifies with.

:class:`TrustCheck` answers "would the API server accept the certificate this replica serves
right now?": it reads the configuration (at most every ``ttl`` seconds) and verifies that the
served leaf is directly issued by a CA in every webhook's ``caBundle``.  It is one of
``/readyz``'s checks, so the Service sends admission calls (and drain-wait calls) only to replicas
the API server trusts; in self-generated mode a negative answer also wakes the upkeep loop
(:mod:`.self_signed`) to put this replica's CA back.  A configuration that does not exist (webhook
not installed) is no reason to be unready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from kubernetes.client.exceptions import ApiException

from negsync.kube.webhook.certs.ca_bundle import (
    WEBHOOK_CONFIGURATION,
    ca_bundle_of,
    read_configuration,
    split_pem_certificates,
)


def issued_by_any(leaf: x509.Certificate, cas: Iterable[x509.Certificate]) -> bool:
    """Whether ``leaf`` was signed by one of ``cas`` (the API server's verification, one level deep)."""
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


@dataclass(kw_only=True, eq=False)  # eq=False: compared and hashed by identity, as a check
class TrustCheck:
    """A readiness check: ``None`` while the API server trusts this replica's serving certificate, else why not.

    ``served`` returns the PEM of the certificate currently served.  The configuration is read
    at most every ``ttl`` seconds (``now`` is a monotonic clock); between reads the last verdict
    stands.  ``on_untrusted`` is called on each negative verdict (self-generated mode: wake the
    upkeep loop so it puts this replica's CA back without waiting for its next round).
    """

    admission_api: Any
    served: Callable[[], bytes]
    name: str = WEBHOOK_CONFIGURATION
    ttl: float = 30.0
    now: Callable[[], float] = time.monotonic
    on_untrusted: Callable[[], None] | None = None
    request_timeout: float = 5.0
    trusted: bool | None = field(default=None, init=False)  # None: unknown or nothing to be trusted by

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._verdict: str | None = "webhook trust not checked yet"

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = float("-inf")

    def __call__(self) -> str | None:
        with self._lock:
            if self.now() - self._checked_at < self.ttl:
                return self._verdict
            self._checked_at = self.now()
        verdict = self._check()
        with self._lock:
            self._verdict = verdict
        if verdict is not None and self.on_untrusted is not None and self.trusted is False:
            self.on_untrusted()
        return verdict

    def _check(self) -> str | None:
        try:
            config = read_configuration(self.admission_api, self.name, request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status == 404:
                self.trusted = None
                return None  # webhook not installed: no caller to be trusted by
            self.trusted = None
            return f"cannot read MutatingWebhookConfiguration {self.name} (HTTP {exc.status})"
        except Exception as exc:  # connection trouble: say so, the next probe retries
            self.trusted = None
            return f"cannot read MutatingWebhookConfiguration {self.name} ({type(exc).__name__})"
        try:
            leaf = x509.load_pem_x509_certificate(self.served())
        except (OSError, ValueError) as exc:
            self.trusted = False
            return f"serving certificate unreadable ({exc})"
        for webhook in config.get("webhooks") or []:
            if not issued_by_any(leaf, split_pem_certificates(ca_bundle_of(webhook))):
                self.trusted = False
                return f"webhook CA not in the caBundle of {self.name} ({webhook.get('name')})"
        self.trusted = True
        return None


__all__ = ["TrustCheck", "issued_by_any"]
