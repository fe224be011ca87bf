"""Fixtures for provider tests: moto in server mode on a loopback port, and a fault-injecting proxy.

The AWS provider is tested through real boto3 clients speaking HTTP to moto's
``ThreadedMotoServer`` (started here on 127.0.0.1 with a port the OS picks), so signing, the
query protocol, botocore's retry handler and the provider's ``before-send`` pacing hook all run
for real.  moto is reset once when it starts; tests then create their own uniquely named
resources instead of resetting again (a reset makes moto rebuild its EC2 backend on the next
call, about half a second per test).  Credentials are dummies set through the environment, and
the machine's AWS configuration is hidden, so nothing can reach AWS.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials through the default chain; the machine's AWS config is out of reach."""
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto(moto_server: str, aws_env: None) -> str:
    """The moto endpoint URL, with dummy credentials in the environment."""
    return moto_server


@dataclass
class Call:
    action: str
    params: dict[str, list[str]]


@dataclass
class FaultProxy:
    """A loopback HTTP proxy in front of moto that records calls and can answer with errors.

    ``faults[action]`` is a list of (status, code) answered — one per call — before calls of that
    action are forwarded again.  ``calls`` records every request (faulted ones too) in order.
    """

    upstream: str
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def actions(self, action: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.action == action]

    def fail_next(self, action: str, times: int, *, status: int = 400, code: str = "Throttling") -> None:
        with self.lock:
            self.faults.setdefault(action, []).extend([(status, code)] * times)

    def _next_fault(self, action: str) -> tuple[int, str] | None:
        with self.lock:
            pending = self.faults.get(action)
            return pending.pop(0) if pending else None


def _error_body(code: str) -> bytes:
    # The ELBv2 (query protocol) error shape.
    return (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>Rate exceeded</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


def _handler(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(proxy.upstream)
    host, port = upstream.hostname or "127.0.0.1", upstream.port

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            params = urllib.parse.parse_qs(body.decode(errors="replace"), keep_blank_values=True)
            action = (params.get("Action") or [""])[0]
            with proxy.lock:
                proxy.calls.append(Call(action, params))
            fault = proxy._next_fault(action)
            if fault is not None:
                status, code = fault
                payload = _error_body(code)
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            connection = http.client.HTTPConnection(host, port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            finally:
                connection.close()

        do_POST = _relay
        do_GET = _relay

    return Handler


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` on a free loopback port in front of the moto server."""
    fault_proxy = FaultProxy(upstream=moto)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fault_proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fault_proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fault_proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
