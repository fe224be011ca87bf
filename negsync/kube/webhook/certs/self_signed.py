"""Self-generated mode's upkeep: keep this replica's CA in the caBundle, rotate before expiry.

Every replica (not only the leader) re-asserts its CA periodically (a replica evicted from the
bundle by restarts of the others puts itself back, at once when :class:`.trust.TrustCheck` wakes
it) and rotates its own certificate after two thirds of its life.  The new CA is added to the
bundle *before* the files are swapped, so the API server never sees a certificate it does not
trust.  In cert-manager mode none of this runs: cainjector owns the caBundle.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from negsync.kube.webhook.certs.ca_bundle import WEBHOOK_CONFIGURATION, patch_ca_bundle
from negsync.kube.webhook.certs.generation import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    generate_serving_certificate,
    write_serving_files,
)

log = logging.getLogger("negsync.webhook")


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


__all__ = ["SelfSignedCertificate"]
