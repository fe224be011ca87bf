"""A loopback HTTP proxy in front of moto that injects ELBv2 faults the way AWS shows them.

Faults are per action (``RegisterTargets``, ``DescribeTargetHealth``...):

* :meth:`ElbProxy.fail_next` answers the next calls with an error (status, code, optional
  ``Retry-After`` header) — 429 Throttling, 503 ServiceUnavailable;
* :meth:`ElbProxy.slow_next` forwards the next calls to moto and then delays the response, so the
  change *is applied* but the client times out — the ambiguous case a retry must survive;
* :meth:`ElbProxy.reject_ips` answers 400 ``InvalidTarget`` to every RegisterTargets naming one of
  the IPs — a partial batch failure the reconciler must bisect;
* :meth:`ElbProxy.hold` parks RegisterTargets calls (after the first ``pass_first``) until released.

Every request is recorded with its time, action and targets.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class Call:
    at: float
    action: str
    targets: tuple[tuple[str, int], ...]
    status: int = 200


def targets_of(params: dict[str, list[str]]) -> tuple[tuple[str, int], ...]:
    found: dict[str, dict[str, str]] = {}
    for key, values in params.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "Targets":
            found.setdefault(parts[2], {})[parts[3]] = values[0]
    return tuple(sorted((t["Id"], int(t.get("Port", 0))) for t in found.values() if "Id" in t))


@dataclass
class ElbProxy:
    upstream: str
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _faults: dict[str, list[tuple[int, str, int | None]]] = field(default_factory=dict)
    _slow: dict[str, list[float]] = field(default_factory=dict)
    _rejected: set[str] = field(default_factory=set)
    _held: threading.Event = field(default_factory=threading.Event)
    _pass_first: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- controls --------------------------------------------------------------------------------
    def fail_next(self, action: str, count: int, *, status: int, code: str, retry_after: int | None = None) -> None:
        with self.lock:
            self._faults.setdefault(action, []).extend([(status, code, retry_after)] * count)

    def slow_next(self, action: str, count: int, seconds: float) -> None:
        with self.lock:
            self._slow.setdefault(action, []).extend([seconds] * count)

    def reject_ips(self, ips: set[str]) -> None:
        with self.lock:
            self._rejected = set(ips)

    def hold(self, *, pass_first: int = 0) -> None:
        """Park RegisterTargets calls after the next ``pass_first`` until :meth:`release`."""
        with self.lock:
            self._pass_first = pass_first
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def actions(self, action: str, *, status: int | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.action == action and (status is None or c.status == status)]

    # -- server ----------------------------------------------------------------------------------
    def start(self) -> ElbProxy:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _decide(self, action: str, targets: tuple[tuple[str, int], ...]) -> tuple[tuple[int, str, int | None] | None, float]:
        with self.lock:
            pending = self._faults.get(action)
            fault = pending.pop(0) if pending else None
            if fault is None and action == "RegisterTargets" and self._rejected & {ip for ip, _ in targets}:
                fault = (400, "InvalidTarget", None)
            slow = self._slow.get(action)
            delay = slow.pop(0) if slow and fault is None else 0.0
        return fault, delay

    def _wait_if_held(self, action: str) -> None:
        if action != "RegisterTargets":
            return
        with self.lock:
            if self._pass_first > 0:
                self._pass_first -= 1
                return
        deadline = time.monotonic() + 30
        while self._held.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)


def _error_body(code: str) -> bytes:
    return (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>injected {code}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


def _handler(proxy: ElbProxy) -> type[http.server.BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(proxy.upstream)
    host, port = upstream.hostname or "127.0.0.1", upstream.port

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
            try:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                self.close_connection = True  # the client gave up (time-out): fine

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            params = urllib.parse.parse_qs(body.decode(errors="replace"), keep_blank_values=True)
            action = (params.get("Action") or [""])[0]
            targets = targets_of(params)
            fault, delay = proxy._decide(action, targets)
            call = Call(time.monotonic(), action, targets, fault[0] if fault else 200)
            with proxy.lock:
                proxy.calls.append(call)
            if fault is not None:
                status, code, retry_after = fault
                headers = [("Content-Type", "text/xml")]
                if retry_after is not None:
                    headers.append(("Retry-After", str(retry_after)))
                self._reply(status, headers, _error_body(code))
                return
            proxy._wait_if_held(action)
            connection = http.client.HTTPConnection(host, port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                kept = [(k, v) for k, v in response.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")]
            finally:
                connection.close()
            if delay:
                time.sleep(delay)  # applied upstream, answered too late
            self._reply(response.status, kept, payload)

        do_POST = _relay
        do_GET = _relay

    return Handler
