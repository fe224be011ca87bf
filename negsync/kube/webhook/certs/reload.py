"""TLS material read from ``tls.crt``/``tls.key``, rebuilt when the files change.

Both modes serve from files: cert-manager renews them in place through the Secret volume (a new
inode behind the ``..data`` symlink), the self-generated mode rewrites them on rotation.
:class:`TlsFiles` checks their identity at most every few seconds and rebuilds the server
``SSLContext``; the server swaps the new context in for new connections.  A reload that fails
(mid-rotation, broken files) keeps the previous context; a start that fails raises
:class:`WebhookCertificateError`, so a missing certificate is loud.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

log = logging.getLogger("negsync.webhook")


class WebhookCertificateError(RuntimeError):
    """The serving certificate cannot be loaded (cert-manager mode: missing or invalid files)."""


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


__all__ = ["TlsFiles", "WebhookCertificateError"]
