"""The controller's HTTP endpoints: ``/healthz``, ``/readyz`` (health port) and ``/metrics``.

Stdlib ``ThreadingHTTPServer``s on daemon threads: a slow client can never block the
controller's own work, and every request gets its own thread with a socket timeout.  The
drain-wait endpoint (``/drain-wait``) is served on the health port too, by
:mod:`negsync.draining` when present.

``/healthz`` (liveness) fails when a watcher or worker loop missed its heartbeat deadline
(``controller.wedged()``, see :mod:`negsync.core.heartbeat`): the kubelet restarts a wedged
process, not only a dead one.  ``/readyz`` fails until the caches have synced and a leader is
known, and while any extra readiness check (the webhook's "is this replica's CA trusted")
names a reason.

Accepted sockets get ``TCP_NODELAY``: a reply is written as headers then body, and with Nagle's
algorithm the body waits for the client's delayed ACK (~40 ms on Linux) on every request.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("negsync.serving")

Route = Any  # callable(query: dict[str, list[str]]) -> (status, content_type, body)
Check = Callable[[], str | None]  # None when fine, else the reason to report


def no_delay(sock: socket.socket) -> None:
    """Disable Nagle on an accepted TCP socket (a no-op for other socket kinds)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "0.0.0.0"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], routes: dict[str, Route]) -> None:
        self.routes = routes
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, peer = self.socket.accept()
        no_delay(sock)
        return sock, peer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        route = self.server.routes.get(parts.path)
        if route is None:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            status, content_type, body = route(parse_qs(parts.query, keep_blank_values=True))
        except Exception:
            log.exception("handler failed", extra={"path": parts.path})
            status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self._reply(status, content_type, body)

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (e.g. a preStop hook killed by its own timeout)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"request": format % args})


class Servers:
    def __init__(self, *, controller: Any, health_addr: str, telemetry: Any, metrics_addr: str = "",
                 extra_routes: dict[str, Route] | None = None, readiness_checks: list[Check] | None = None) -> None:
        self._controller = controller
        self._telemetry = telemetry
        self.readiness_checks: list[Check] = list(readiness_checks or [])
        health_routes: dict[str, Route] = {"/healthz": self._healthz, "/readyz": self._readyz, **(extra_routes or {})}
        self._specs: list[tuple[str, dict[str, Route]]] = [(health_addr, health_routes)]
        metrics_routes = {"/metrics": self._metrics}
        if metrics_addr and parse_address(metrics_addr)[1] != 0 and metrics_addr != health_addr:
            self._specs.append((metrics_addr, metrics_routes))
        else:
            health_routes.update(metrics_routes)
        self.servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    def add_route(self, path: str, route: Route) -> None:
        self._specs[0][1][path] = route

    def start(self) -> None:
        for address, routes in self._specs:
            server = _Server(parse_address(address), routes)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                                      name=f"http-{address}")
            thread.start()
            self.servers.append(server)
            self._threads.append(thread)

    @property
    def ports(self) -> list[int]:
        return [int(s.server_address[1]) for s in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _healthz(self, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        wedged = list(getattr(self._controller, "wedged", lambda: [])())
        if wedged:
            log.error("liveness failing: loop wedged", extra={"wedged": wedged})
            return 500, "text/plain; charset=utf-8", f"wedged: {', '.join(wedged)}\n".encode()
        return 200, "text/plain; charset=utf-8", b"ok\n"

    def _readyz(self, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if not self._controller.ready:
            reason = "caches not synced" if not self._controller.synced else "no leader known"
            return 503, "text/plain; charset=utf-8", f"not ready: {reason}\n".encode()
        for check in self.readiness_checks:
            problem = check()
            if problem:
                return 503, "text/plain; charset=utf-8", f"not ready: {problem}\n".encode()
        return 200, "text/plain; charset=utf-8", b"ok\n"

    def _metrics(self, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        self._telemetry.sample(self._controller)
        return 200, "text/plain; version=0.0.4; charset=utf-8", self._telemetry.exposition()
