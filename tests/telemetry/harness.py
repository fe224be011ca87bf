"""Run the real ``negsync controller`` CLI as a subprocess against the Kubernetes API emulator.

Everything stays on loopback: the emulator and (for AWS) moto listen on 127.0.0.1 ports the OS
picks, and the controller's health and metrics servers get free loopback ports too.  Every wait
is bounded, and :meth:`ControllerProcess.stop` always ends the child (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
GATE = "target-health.negsync.io/web"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with NO_PROXY.open(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def seed(kube: Any, ips: Sequence[str], *, target: dict[str, Any], gate: bool = True, not_ready: bool = True) -> None:
    """Service shop/web, the binding, one pod per IP (carrying the gate when ``gate``), one EndpointSlice."""
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    kube.create(service())
    kube.create(binding(target=target, gate=gate))  # before its gated pods, as the webhook requires
    for i, ip in enumerate(ips):
        kube.create(pod(f"web-{i}", ip=ip, gates=[GATE] if gate else []))
    pods = {ip: f"web-{i}" for i, ip in enumerate(ips)}
    kube.create(endpoint_slice("web-abc", list(ips), pods=pods, not_ready=tuple(ips) if not_ready else ()))


class ControllerProcess:
    """``python -m negsync controller ...`` with stdout/stderr drained into memory by threads."""

    def __init__(self, kube: Any, *args: str, env: dict[str, str] | None = None,
                 kubeconfig: Path | None = None) -> None:
        self.health_port = free_port()
        self.metrics_port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="negsync-telemetry-")
        self.kubeconfig = kubeconfig or kube.write_kubeconfig(Path(self._dir.name) / "kubeconfig")
        self.argv = [sys.executable, "-m", "negsync", "controller", "--kubeconfig", str(self.kubeconfig),
                     "--health-addr", f"127.0.0.1:{self.health_port}",
                     "--metrics-addr", f"127.0.0.1:{self.metrics_port}", *args]
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTEL_", "GOOGLE_"))}
        base.update({"PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                     "POD_NAMESPACE": "negsync-system", "PYTHONWARNINGS": "ignore"})
        base.update(env or {})
        self.env = base
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []

    def start(self) -> ControllerProcess:
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            thread = threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            thread.start()
            self._readers.append(thread)
        return self

    @staticmethod
    def _drain(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def url(self, path: str, *, metrics: bool = False) -> str:
        return f"http://127.0.0.1:{self.metrics_port if metrics else self.health_port}{path}"

    def tail(self, lines: int = 40) -> str:
        return "".join(self.stderr[-lines:])

    def wait_ready(self, timeout: float = 15.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                return http_get(self.url("/readyz"), timeout=1.0)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=timeout, what="/readyz 200", describe=self.tail)

    def metrics(self) -> str:
        status, body = http_get(self.url("/metrics", metrics=True))
        assert status == 200, body
        return body

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code (raises if the process outlives ``timeout``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for thread in self._readers:
            thread.join(timeout=5)
        self._dir.cleanup()
