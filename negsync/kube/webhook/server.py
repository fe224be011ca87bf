"""The webhook's HTTPS server: AdmissionReviews in, answers of :mod:`.admission` out.

Serving
    :class:`WebhookServer` is a :class:`negsync.core.httpserver.ThreadedServer` (the one HTTP
    layer, shared with the health and metrics ports: stdlib threads, ``[v6-host]:port``
    addresses, ``TCP_NODELAY``) speaking HTTP/1.1 over TLS 1.2+ on its own port.  The TLS
    handshake runs in the per-connection thread, not in ``accept()``: a client that connects and
    sends nothing can then hold one thread until its socket timeout, never the accept loop.
    Bodies are capped at :data:`MAX_BODY` (413 beyond).  The TLS context comes from
    :class:`.certs.TlsFiles` at each accept, so a renewed certificate serves new connections.

Latency
    Accepted sockets get ``TCP_NODELAY``: the reply goes out as headers then body, and with
    Nagle's algorithm the body waited for the API server's delayed ACK (~40 ms) on every pod
    creation (loopback, keep-alive, median of 30: 88 ms per call without it, 0.16 ms with it).

:func:`start_webhook` wires certificates, caBundle upkeep, trust check and server in one call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from negsync.core.httpserver import Query, Reply, RouteHandler, ThreadedServer, format_address, parse_address, text_reply
from negsync.kube.webhook.admission import MalformedReview, mutate, request_of
from negsync.kube.webhook.certs import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    SelfSignedCertificate,
    TlsFiles,
    TrustCheck,
)

log = logging.getLogger("negsync.webhook")

PATHS = ("/mutate-pods", "/mutate")
# The API server's own request-body cap (3 MiB; etcd stores at most 1.5 MiB per object): a review of
# any pod it would accept fits, so a 413 can only come from something that is not the API server.
MAX_BODY = 3 << 20
_DRAIN_LIMIT = 2 * MAX_BODY  # up to this much is read and discarded so the client sees the 413
OUTCOMES = ("patched", "allowed", "error", "invalid")


def _ok(query: Query) -> Reply:
    return text_reply(200, "ok")


class _Server(ThreadedServer):
    handshake_timeout = 10.0

    def __init__(self, address: str, *, tls: TlsFiles, answer: Callable[[Any], dict[str, Any]],
                 outcome: Callable[[str], None]) -> None:
        self.tls = tls
        self.answer = answer
        self.outcome = outcome
        super().__init__(address, _Handler, routes={"/healthz": _ok, "/readyz": _ok})

    def get_request(self) -> tuple[Any, Any]:
        # Wrap only; the handshake happens in the connection's own thread (see the module docstring).
        sock, peer = super().get_request()  # accepted, with TCP_NODELAY
        sock.settimeout(self.handshake_timeout)
        try:
            return self.tls.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), peer
        except Exception as exc:
            sock.close()
            # socketserver survives only OSError from get_request; anything else would end serve_forever.
            raise OSError(f"cannot wrap connection: {exc}") from exc


class _Handler(RouteHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses connections, a TLS handshake per pod is waste
    timeout = 15  # per socket operation: idle keep-alive connections and slow clients end here

    def setup(self) -> None:
        self.request.settimeout(self.server.handshake_timeout)
        self.request.do_handshake()  # failures (e.g. plain HTTP) end the connection via handle_error
        super().setup()

    def do_POST(self) -> None:
        started = time.monotonic()
        if self.path.split("?", 1)[0] not in PATHS:
            self._discard_body()
            self.reply(*text_reply(404, "not found"))
            return
        if self.headers.get("Transfer-Encoding"):
            self.reply(*text_reply(411, "Content-Length required"), close=True)
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self.reply(*text_reply(411, "Content-Length required"), close=True)
            return
        if length < 0 or length > MAX_BODY:
            self.server.outcome("invalid")
            # Drain a moderately oversized body (a client still writing would otherwise see a reset
            # instead of the 413); a huge one is not worth reading: close on it.
            if 0 < length <= _DRAIN_LIMIT:
                self._drain(length)
            self.reply(*text_reply(413, f"body larger than {MAX_BODY} bytes"), close=True)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return  # the client went away mid-body
        try:
            review = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self.server.outcome("invalid")
            self.reply(*text_reply(400, "body is not JSON"))
            return
        try:
            answer = self.server.answer(review)
        except MalformedReview as exc:
            self.server.outcome("invalid")
            self.reply(*text_reply(400, f"malformed AdmissionReview: {exc}"))
            return
        except Exception:  # mutate() guards itself once the uid is known; this is a last resort
            log.exception("webhook failed before a uid was known")
            self.server.outcome("error")
            self.reply(*text_reply(500, "internal error"))
            return
        self.reply(200, "application/json", json.dumps(answer, separators=(",", ":")).encode())
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
        parse_address(address)  # a bad address fails here, not at start
        self._address = address
        self._namespace_labels = namespace_labels
        self._provider = provider
        self.tls = TlsFiles(cert_dir, check_interval=reload_interval)
        self._server: _Server | None = None
        self._on_stop: list[Callable[[], None]] = []
        self.upkeep: SelfSignedCertificate | None = None  # set by start_webhook in self-generated mode

    def count(self, outcome: str) -> None:
        with self._outcome_lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def answer(self, review: Any) -> dict[str, Any]:
        labels = None
        if self._namespace_labels is not None:
            request = request_of(review)
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
        self._server.start(name=f"webhook-{self._address}")
        host = self._server.server_address[0]
        log.info("admission webhook serving", extra={"address": format_address(str(host), self.port)})
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("webhook server not started")
        return self._server.port

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._on_stop.append(callback)

    def stop(self) -> None:
        for callback in self._on_stop:
            callback()
        if self._server is not None:
            self._server.stop()


def start_webhook(*, caches: Any, address: str = ":9443", cert_dir: str | None = None, admission_api: Any | None = None,
                  leader_patch: bool = True, provider: str | None = None,
                  namespace_labels: Callable[[str], Mapping[str, str] | None] | None = None,
                  ip_addresses: Iterable[str] = (), service: str = DEFAULT_SERVICE,
                  namespace: str = DEFAULT_NAMESPACE) -> WebhookServer:
    """Certificates + caBundle + server, in one call; returns the started server.

    * ``cert_dir`` given (cert-manager mode): serve its ``tls.crt``/``tls.key`` (reloaded on
      renewal); the caBundle is not touched.  Missing files raise :class:`.certs.WebhookCertificateError`.
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


__all__ = ["MAX_BODY", "OUTCOMES", "PATHS", "WebhookServer", "start_webhook"]
