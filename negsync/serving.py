"""The controller's HTTP endpoints: ``/healthz``, ``/readyz`` (health port) and ``/metrics``.

Served by :class:`negsync.core.httpserver.ThreadedServer` (the one HTTP layer, shared with the
webhook: stdlib threads, ``TCP_NODELAY``, ``[v6-host]:port`` addresses) on daemon threads, so a
slow client can never block the controller's own work.  The drain-wait endpoint
(``/drain-wait``) is served on the health port too, by :mod:`negsync.draining` when present.

``/healthz`` (liveness) fails when a watcher or worker loop missed its heartbeat deadline
(``controller.wedged()``, see :mod:`negsync.core.heartbeat`): the kubelet restarts a wedged
process, not only a dead one.  ``/readyz`` fails until the caches have synced and a leader is
known, and while any extra readiness check (the webhook's "is this replica's CA trusted")
names a reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from negsync.core.httpserver import Query, Reply, Route, RouteHandler, ThreadedServer, parse_address, text_reply

log = logging.getLogger("negsync.serving")

Check = Callable[[], str | None]  # None when fine, else the reason to report


class Servers:
    """The health port (``/healthz``, ``/readyz``, extra routes) and, on its own port, ``/metrics``."""

    def __init__(self, *, controller: Any, health_addr: str, telemetry: Any, metrics_addr: str = "",
                 extra_routes: dict[str, Route] | None = None, readiness_checks: list[Check] | None = None) -> None:
        self._controller = controller
        self._telemetry = telemetry
        self.readiness_checks: list[Check] = list(readiness_checks or [])
        health_routes: dict[str, Route] = {"/healthz": self._healthz, "/readyz": self._readyz, **(extra_routes or {})}
        self._specs: list[tuple[str, dict[str, Route]]] = [(health_addr, health_routes)]
        metrics_routes: dict[str, Route] = {"/metrics": self._metrics}
        if metrics_addr and parse_address(metrics_addr)[1] != 0 and metrics_addr != health_addr:
            self._specs.append((metrics_addr, metrics_routes))
        else:
            health_routes.update(metrics_routes)
        self.servers: list[ThreadedServer] = []

    def start(self) -> None:
        for address, routes in self._specs:
            self.servers.append(ThreadedServer(address, RouteHandler, routes=routes).start(name=f"http-{address}"))

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def _healthz(self, query: Query) -> Reply:
        wedged = list(getattr(self._controller, "wedged", lambda: [])())
        if wedged:
            log.error("liveness failing: loop wedged", extra={"wedged": wedged})
            return text_reply(500, f"wedged: {', '.join(wedged)}")
        return text_reply(200, "ok")

    def _readyz(self, query: Query) -> Reply:
        if not self._controller.ready:
            reason = "caches not synced" if not self._controller.synced else "no leader known"
            return text_reply(503, f"not ready: {reason}")
        for check in self.readiness_checks:
            problem = check()
            if problem:
                return text_reply(503, f"not ready: {problem}")
        return text_reply(200, "ok")

    def _metrics(self, query: Query) -> Reply:
        self._telemetry.sample(self._controller)
        return 200, "text/plain; version=0.0.4; charset=utf-8", self._telemetry.exposition()
