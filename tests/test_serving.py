"""/healthz fails on a wedged loop, /readyz runs its extra checks, and replies leave without a Nagle stall."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from negsync.app import Settings
from negsync.core.httpserver import format_address
from negsync.core.latency import Fixed
from negsync.draining import DrainTracker, DrainWait
from negsync.kube.controller import Controller
from negsync.kube.watching import Watcher
from negsync.providers.memory import MemoryProvider
from negsync.serving import Servers
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, pod, service
from tests.support.loopback import LOOPBACKS, require, spy_nodelay, url_host
from tests.support.waiting import wait_for
from tests.telemetry.harness import ControllerProcess, free_port, http_get


def get(port: int, path: str, *, host: str = "127.0.0.1") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{url_host(host)}:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class FakeController:
    synced = True
    ready = True

    def __init__(self) -> None:
        self.problems: list[str] = []

    def wedged(self) -> list[str]:
        return self.problems


@pytest.fixture
def fake() -> Iterator[tuple[FakeController, Servers]]:
    controller = FakeController()
    servers = Servers(controller=controller, health_addr="127.0.0.1:0", telemetry=None)
    servers.start()
    try:
        yield controller, servers
    finally:
        servers.stop()


# -- the endpoints -----------------------------------------------------------------------------


def test_healthz_fails_while_a_loop_is_wedged(fake: tuple[FakeController, Servers]) -> None:
    controller, servers = fake
    assert get(servers.ports[0], "/healthz") == (200, "ok\n")
    controller.problems = ["negsync-worker-1 (no progress for 400s)"]
    status, text = get(servers.ports[0], "/healthz")
    assert status == 500 and "negsync-worker-1" in text


def test_readyz_runs_every_extra_check(fake: tuple[FakeController, Servers]) -> None:
    _, servers = fake
    verdict: list[str | None] = [None]
    servers.readiness_checks.append(lambda: verdict[0])
    assert get(servers.ports[0], "/readyz")[0] == 200
    verdict[0] = "webhook CA not in the caBundle of negsync"
    assert get(servers.ports[0], "/readyz") == (503, "not ready: webhook CA not in the caBundle of negsync\n")


def test_accepted_sockets_have_nagle_disabled(fake: tuple[FakeController, Servers]) -> None:
    """The headers-then-body reply must not wait for the client's delayed ACK (REVIEW-FINDINGS: ~46 ms per call)."""
    _, servers = fake
    server = servers.servers[0]
    accepted = spy_nodelay(server)
    assert get(servers.ports[0], "/healthz")[0] == 200
    assert accepted and accepted[0] != 0


# -- a real controller -------------------------------------------------------------------------


@pytest.fixture
def running(kube: KubeApiEmulator, api_client: client.ApiClient) -> Iterator[tuple[Controller, Servers]]:
    provider = MemoryProvider(call_latency=Fixed(0.0))
    settings = Settings(workers=1, sync_min_interval=0.0, health_poll_interval=0.1, identity="t", watch_timeout=5)
    controller = Controller(api_client=api_client, provider=provider, settings=settings)
    servers = Servers(controller=controller, health_addr="127.0.0.1:0", telemetry=None)
    yield controller, servers
    servers.stop()
    controller.stop(timeout=5)


def seed(kube: KubeApiEmulator) -> None:
    kube.create(service())
    kube.create(pod("web-0", ip="10.1.0.1"))
    kube.create(endpoint_slice("web-abc", ["10.1.0.1"], pods={"10.1.0.1": "web-0"}))
    kube.create(binding(gate=False))


def test_a_worker_stuck_in_one_reconcile_fails_liveness(kube: KubeApiEmulator,
                                                        running: tuple[Controller, Servers]) -> None:
    controller, servers = running
    release = threading.Event()
    entered = threading.Event()
    real = controller.reconcile

    def stuck(key: Any) -> Any:
        entered.set()
        release.wait(10)  # a call without a timeout, a deadlock: the worker never takes the next key
        return real(key)

    controller.reconcile = stuck  # type: ignore[method-assign]
    controller.reconcile_deadline = 0.3
    controller.start()
    servers.start()
    port = servers.ports[0]
    try:
        seed(kube)
        assert entered.wait(10)
        assert get(port, "/healthz")[0] == 200  # within its deadline: busy, not wedged
        _status, text = wait_for(lambda: (r := get(port, "/healthz"))[0] == 500 and r)
        assert "negsync-worker-0" in text
    finally:
        release.set()
    wait_for(lambda: get(port, "/healthz")[0] == 200)  # it recovered: idle workers are healthy


def test_a_watcher_stuck_in_its_handler_fails_liveness(kube: KubeApiEmulator, running: tuple[Controller, Servers],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    controller, servers = running
    release = threading.Event()
    (pods,) = [w for w in controller.watchers if w.kind.name == "pods"]
    # A short deadline for the pod watcher only: the others' healthy streams last up to watch_timeout.
    monkeypatch.setattr(Watcher, "step_deadline", property(lambda self: 0.3 if self is pods else 60.0))
    real_step = pods.step
    calls = [0]

    def step(stop: Any = None) -> None:
        calls[0] += 1
        if calls[0] == 2:  # the first list works (caches sync), then an event handler hangs
            release.wait(10)
        real_step(stop)

    pods.step = step  # type: ignore[method-assign]
    controller.start()
    servers.start()
    port = servers.ports[0]
    try:
        _status, text = wait_for(lambda: (r := get(port, "/healthz"))[0] == 500 and r)
        assert text.startswith("wedged: watch-pods (no progress for ")
    finally:
        release.set()


# -- addresses: both families, and the CLI's flags -----------------------------------------------


class FakeTelemetry:
    def sample(self, controller: Any) -> None:
        return None

    def exposition(self) -> bytes:
        return b"negsync_up 1\n"


@LOOPBACKS
def test_health_metrics_and_drain_wait_serve_on_both_address_families(host: str) -> None:
    require(host)
    drain = DrainWait(pod_ips=lambda namespace, name: None, holds=lambda namespace, name, ip: False,
                      tracker=DrainTracker())
    servers = Servers(controller=FakeController(), health_addr=format_address(host, 0), telemetry=FakeTelemetry(),
                      extra_routes={"/drain-wait": drain})
    servers.start()
    try:
        (health,) = servers.ports
        assert get(health, "/healthz", host=host) == (200, "ok\n")
        assert get(health, "/readyz", host=host) == (200, "ok\n")
        assert get(health, "/drain-wait?pod=shop/web-0&timeout=1", host=host)[0] == 404  # the pod is unknown
        assert get(health, "/metrics", host=host) == (200, "negsync_up 1\n")  # no metrics port: on the health port
    finally:
        servers.stop()


@LOOPBACKS
def test_a_separate_metrics_port_binds_the_same_family(host: str) -> None:
    require(host)
    port = free_port() if ":" not in host else _free_port6()
    servers = Servers(controller=FakeController(), health_addr=format_address(host, 0), telemetry=FakeTelemetry(),
                      metrics_addr=format_address(host, port))
    servers.start()
    try:
        health, metrics = servers.ports
        assert metrics == port
        assert get(metrics, "/metrics", host=host) == (200, "negsync_up 1\n")
        assert get(health, "/metrics", host=host)[0] == 404
    finally:
        servers.stop()


def _free_port6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::1", 0))
        return int(sock.getsockname()[1])


def test_the_cli_serves_health_on_every_interface_with_an_ipv6_wildcard(kube: KubeApiEmulator) -> None:
    """``--health-addr [::]:PORT`` as a dual-stack Deployment would set it (it failed: the brackets were kept)."""
    require("::1")
    ctl = ControllerProcess(kube, "--provider", "memory")
    ctl.argv += ["--health-addr", f"[::]:{ctl.health_port}"]  # the last occurrence of a flag wins
    ctl.start()
    try:
        ctl.wait_ready()  # through 127.0.0.1: the IPv6 wildcard takes IPv4 too (dual-stack socket)
        assert http_get(f"http://[::1]:{ctl.health_port}/healthz")[0] == 200
        assert http_get(f"http://[::1]:{ctl.health_port}/readyz")[0] == 200
        assert ctl.terminate() == 0
    finally:
        ctl.stop()


@pytest.mark.parametrize("flag", ["--health-addr", "--metrics-addr", "--webhook-addr"])
def test_an_unbracketed_ipv6_address_is_a_usage_error(flag: str) -> None:
    result = subprocess.run([sys.executable, "-m", "negsync", "controller", flag, "::1:8080"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert flag in result.stderr and "an IPv6 host goes in brackets" in result.stderr
    assert "Traceback" not in result.stderr
