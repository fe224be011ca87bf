"""Loopback for tests: the server lifecycle every fake shares, and the hosts a server under test binds.

:class:`LoopbackServer` — a subclass says how requests are answered (:meth:`LoopbackServer.handler`);
this base binds ``127.0.0.1`` (or the host given) on a port the OS picks, serves from a daemon thread,
and stops by shutting the server down, closing its socket and joining the thread — bounded, so a
stuck handler cannot hang a test run.  Handlers reach their fake through ``self.server.fake``.

``LOOPBACKS`` parametrizes a test over ``127.0.0.1`` and ``::1``; :func:`require` skips the IPv6
case at run time (not at collection) when the machine has no IPv6 loopback, e.g. a container
started with IPv6 disabled.  :func:`url_host` brackets an IPv6 host for a URL or an address flag.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

LOOPBACKS = pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def require(host: str) -> str:
    """``host``, after skipping the test when it is IPv6 and the machine has no IPv6 loopback."""
    if ":" in host and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    return host


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def spy_nodelay(server: Any) -> list[int]:
    """TCP_NODELAY of every socket ``server`` accepts from now on (a reply must not wait for a delayed ACK)."""
    accepted: list[int] = []
    original = server.get_request

    def spy() -> tuple[Any, Any]:
        request = original()
        accepted.append(request[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return request

    server.get_request = spy
    return accepted


class LoopbackServer:
    """Start/stop/``with`` for a ``ThreadingHTTPServer`` whose handler a subclass supplies."""

    #: Name of the serving thread (shows in thread dumps of a hung test).
    thread_name = "loopback-server"
    _host = "127.0.0.1"
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        server = ThreadingHTTPServer((self._host, 0), self.handler())
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return int(self._server.server_address[1])
