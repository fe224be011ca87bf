"""The one HTTP layer: address parsing, a threaded server, routing and replies.

Hand-written on the stdlib's ``http.server`` on purpose: the controller serves a handful of tiny
endpoints (``/healthz``, ``/readyz``, ``/metrics``, ``/drain-wait``) and one TLS admission
endpoint, and a framework would add a dependency (and an event loop) for nothing.  Both the plain
servers (:mod:`negsync.serving`) and the admission webhook (:mod:`negsync.kube.webhook.server`)
build on what is here, so they bind, route and reply alike:

* :func:`parse_address` reads ``host:port``, ``[v6-host]:port`` and ``:port`` (all IPv4
  interfaces), the way Go's ``net.SplitHostPort`` does for controller-runtime's bind flags: an
  IPv6 host goes in brackets.  :class:`ThreadedServer` picks the address family from the host, so
  ``[::]:8080`` listens on every interface (dual-stack where the kernel allows it).
* Every request gets its own daemon thread with a socket timeout: a slow client can never block
  the controller's own work.
* Accepted sockets get ``TCP_NODELAY``: a reply is written as headers then body, and with Nagle's
  algorithm the body waits for the client's delayed ACK (~40 ms on Linux) on every request.
* :class:`RouteHandler` answers ``GET`` from the server's route table (a route takes the parsed
  query string and returns a :data:`Reply`); a route that raises answers 500, an unknown path 404.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("negsync.http")

Query = dict[str, list[str]]
Reply = tuple[int, str, bytes]  # (status, content type, body)
Route = Callable[[Query], Reply]

TEXT = "text/plain; charset=utf-8"


def text_reply(status: int, message: str) -> Reply:
    """A one-line ``text/plain`` reply."""
    return status, TEXT, f"{message}\n".encode()


def json_reply(status: int, **body: Any) -> Reply:
    """A JSON object reply, one line."""
    return status, "application/json", (json.dumps(body) + "\n").encode()


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` → ``(host, port)``; an empty host is ``0.0.0.0``; IPv6 hosts come in brackets.

    Raises :class:`ValueError` naming the expected form.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be [host]:port, got {address!r}")
    if host.startswith("[") and host.endswith("]") and len(host) > 2:
        return host[1:-1], int(port)
    if any(c in host for c in ":[]"):
        raise ValueError(f"an IPv6 host goes in brackets, e.g. [::1]:{port}; got {address!r}")
    return (host or "0.0.0.0"), int(port)


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def no_delay(sock: socket.socket) -> None:
    """Disable Nagle on an accepted TCP socket (a no-op for other socket kinds)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ThreadedServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` on ``address`` (see :func:`parse_address`) with a route table.

    :meth:`start` serves on a daemon thread; :meth:`stop` shuts down, closes and joins.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, handler: type[BaseHTTPRequestHandler], *,
                 routes: Mapping[str, Route] | None = None) -> None:
        host, port = parse_address(address)
        # Per instance: the class attribute is AF_INET, and an IPv6 host bound on it fails.
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.routes: dict[str, Route] = dict(routes or {})
        self._thread: threading.Thread | None = None
        super().__init__((host, port), handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[Any, Any]:
        sock, peer = self.socket.accept()
        no_delay(sock)
        return sock, peer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The stdlib prints a traceback to stderr for every client that goes away mid-request.
        log.debug("http connection failed", exc_info=True, extra={"peer": str(client_address)})

    def start(self, *, name: str) -> ThreadedServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                                        name=name)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which must be running
            self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class RouteHandler(BaseHTTPRequestHandler):
    """Answers ``GET`` from ``server.routes``; :meth:`reply` survives a client that went away."""

    server: ThreadedServer
    timeout = 30  # per socket operation

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        route = self.server.routes.get(parts.path)
        if route is None:
            self.reply(*text_reply(404, "not found"))
            return
        try:
            status, content_type, body = route(parse_qs(parts.query, keep_blank_values=True))
        except Exception:
            log.exception("handler failed", extra={"path": parts.path})
            status, content_type, body = text_reply(500, "internal error")
        self.reply(status, content_type, body)

    def reply(self, status: int, content_type: str, body: bytes, *, close: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client went away (a preStop hook killed by its own timeout, a reset, a TLS error
            # or a socket timeout): nothing to answer.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"request": format % args})


__all__ = ["Query", "Reply", "Route", "RouteHandler", "ThreadedServer", "format_address", "json_reply",
           "no_delay", "parse_address", "text_reply"]
