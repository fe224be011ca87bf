"""Shared pieces of the fault suite: an emulated cluster, a provider wrapper, end-state checks.

Every fault test ends with :func:`assert_end_state`, which checks the three properties the suite
promises, against an oracle read straight from the API emulator (not from negsync's caches):

1. the target holds exactly the serving endpoints of the Service (ready, not terminating);
2. a target negsync does not own (:data:`FOREIGN`, pre-seeded) is untouched — same members, and
   not one call was made on it;
3. no terminating endpoint is attached.

Tests record their measured time-to-converge in :data:`TIMINGS` (printed at the end of the run;
docs/reliability.md quotes them — tests never write files).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from kubernetes import client

from negsync.app import Settings
from negsync.core.clock import RealClock
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

NS = "shop"
REF = TargetRef("memory", "local", "shop-web")
FOREIGN = TargetRef("memory", "local", "someone-elses-pool")
FOREIGN_MEMBERS = frozenset({TargetEndpoint("10.1.0.1", 8080), TargetEndpoint("10.99.0.1", 8080)})
SLICE = "web-abc"

#: fault name -> measured seconds from injecting the fault (or the change made under it) to convergence.
TIMINGS: dict[str, float] = {}


def record(name: str, seconds: float) -> float:
    TIMINGS[name] = round(seconds, 3)
    print(f"time-to-converge[{name}] = {seconds:.3f}s")
    return seconds


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "fault suite: time to converge")
        for name, seconds in sorted(TIMINGS.items()):
            terminalreporter.write_line(f"{name:55s} {seconds:8.3f} s")


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = dict(workers=2, sync_min_interval=0.0, health_poll_interval=0.1, resync_period=30.0,
                                identity="ctl-a", watch_timeout=5, lease_namespace="negsync-system")
    base.update(overrides)
    return Settings(**base)


# -- the cluster: `kube` and `api_client` come from tests/conftest.py -----------------------------


def slice_of(ips: Sequence[str], *, terminating: Sequence[str] = ()) -> dict[str, Any]:
    return endpoint_slice(SLICE, list(ips), terminating=tuple(terminating))


def set_slice(kube: KubeApiEmulator, ips: Sequence[str], *, terminating: Sequence[str] = ()) -> None:
    """Replace the Service's one slice: ``ips`` listed, ``terminating`` among them marked so."""
    kube.update(slice_of(ips, terminating=terminating))


def seed(kube: KubeApiEmulator, ips: Sequence[str], *, gate: bool = False) -> None:
    kube.create(service())
    kube.create(slice_of(ips))
    kube.create(binding(gate=gate))


def members(*ips: str) -> set[TargetEndpoint]:
    return {TargetEndpoint(ip, 8080) for ip in ips}


def oracle(kube: KubeApiEmulator) -> tuple[set[TargetEndpoint], set[TargetEndpoint]]:
    """(serving, terminating) endpoints of Service shop/web, read from the emulator itself."""
    serving: set[TargetEndpoint] = set()
    terminating: set[TargetEndpoint] = set()
    for obj in kube.list_objects("discovery.k8s.io/v1", "EndpointSlice", NS):
        if obj["metadata"].get("labels", {}).get("kubernetes.io/service-name") != "web":
            continue
        port = next(p["port"] for p in obj["ports"] if p["name"] == "http")
        for ep in obj["endpoints"]:
            conditions = ep.get("conditions") or {}
            for ip in ep["addresses"]:
                if conditions.get("terminating"):
                    terminating.add(TargetEndpoint(ip, port))
                elif conditions.get("ready", True):
                    serving.add(TargetEndpoint(ip, port))
    return serving, terminating - serving


# -- the cloud ----------------------------------------------------------------------------------
class Cloud:
    """One MemoryProvider is the cloud; each controller talks to it through its own :class:`Link`."""

    def __init__(self, **kwargs: Any) -> None:
        self.provider = MemoryProvider(**kwargs)
        self.provider.create_foreign(FOREIGN, FOREIGN_MEMBERS, owner=BindingKey("other-team", "their-binding"))
        self.links: list[Link] = []

    def link(self) -> Link:
        link = Link(self.provider)
        self.links.append(link)
        return link

    def members(self, ref: TargetRef = REF) -> set[TargetEndpoint]:
        return self.provider.members(ref)


class Link:
    """A controller's connection to the cloud: counts calls, and can hold membership calls in flight.

    ``hold()`` parks every attach/detach that starts from now on (a call sent, no answer yet) until
    ``release()`` — per controller, unlike :meth:`MemoryProvider.pause`, so an old leader's calls
    can stay in flight while a new leader's go through.
    """

    def __init__(self, inner: MemoryProvider) -> None:
        self._inner = inner
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self.log: list[tuple[str, TargetRef, tuple[TargetEndpoint, ...]]] = []
        self.held = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def max_batch_size(self) -> int:
        return self._inner.max_batch_size

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _note(self, op: str, ref: TargetRef, endpoints: Sequence[TargetEndpoint] = ()) -> None:
        with self._lock:
            self.log.append((op, ref, tuple(endpoints)))

    def count(self, op: str) -> int:
        with self._lock:
            return sum(1 for entry in self.log if entry[0] == op)

    def touched(self, ref: TargetRef) -> bool:
        with self._lock:
            return any(entry[1] == ref for entry in self.log)

    def ensure_target(self, ref: TargetRef, **kwargs: Any) -> None:
        self._note("ensure", ref)
        self._inner.ensure_target(ref, **kwargs)

    def list_endpoints(self, ref: TargetRef) -> Any:
        self._note("list", ref)
        return self._inner.list_endpoints(ref)

    def _membership(self, op: str, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self._note(op, ref, endpoints)
        if not self._open.is_set():
            with self._lock:
                self.held += 1
            self._open.wait(30)
        getattr(self._inner, op)(ref, endpoints)

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self._membership("attach", ref, endpoints)

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        self._membership("detach", ref, endpoints)

    def delete_target(self, ref: TargetRef, **kwargs: Any) -> bool:
        self._note("delete", ref)
        return bool(self._inner.delete_target(ref, **kwargs))


@pytest.fixture
def cloud() -> Cloud:
    return Cloud()


# -- clocks -------------------------------------------------------------------------------------
class JumpClock(RealClock):
    """Real time plus an offset a test changes mid-run: ``jump(+3600)`` or ``jump(-3600)``."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


# -- controllers --------------------------------------------------------------------------------
class Controllers:
    """Starts controllers and stops every one of them at teardown, whatever the test did."""

    def __init__(self) -> None:
        self.started: list[tuple[Controller, client.ApiClient | None]] = []

    def start(self, api: client.ApiClient, provider: Any, *, own_client: bool = False, clock: Any = None,
              **overrides: Any) -> Controller:
        ctl = Controller(api_client=api, provider=provider, settings=settings(**overrides), clock=clock)
        ctl.start()
        self.started.append((ctl, api if own_client else None))
        return ctl

    def stop_all(self) -> None:
        started, self.started = self.started, []
        for ctl, api in reversed(started):
            ctl.stop(timeout=2)
            if api is not None:
                api.close()


@pytest.fixture
def controllers() -> Iterator[Controllers]:
    made = Controllers()
    try:
        yield made
    finally:
        made.stop_all()


def threads_alive(ctl: Controller) -> bool:
    return all(t.is_alive() for t in ctl.manager.threads if t.name.startswith("watch-"))


# -- the three end-state properties -------------------------------------------------------------
def converged(kube: KubeApiEmulator, cloud: Cloud, ref: TargetRef = REF) -> bool:
    serving, terminating = oracle(kube)
    actual = cloud.members(ref)
    return actual == serving and not (actual & terminating)


def assert_end_state(kube: KubeApiEmulator, cloud: Cloud, ref: TargetRef = REF) -> None:
    serving, terminating = oracle(kube)
    actual = cloud.members(ref)
    assert actual == serving, f"desired != actual: missing {serving - actual}, extra {actual - serving}"
    assert not (actual & terminating), f"terminating endpoints still attached: {actual & terminating}"
    assert cloud.members(FOREIGN) == FOREIGN_MEMBERS, "a target negsync does not own was changed"
    assert not any(link.touched(FOREIGN) for link in cloud.links), "negsync called the API on a foreign target"


def converge(kube: KubeApiEmulator, cloud: Cloud, *, since: float, name: str, timeout: float = 15.0,
             ref: TargetRef = REF) -> float:
    """Wait for the end state, assert the three properties, record and return time-to-converge."""
    wait_for(lambda: converged(kube, cloud, ref), timeout=timeout, what=f"convergence after {name}")
    seconds = time.monotonic() - since
    assert_end_state(kube, cloud, ref)
    return record(name, seconds)
