"""The manager's protocol with fake runnables and a fake elector: no API server, no threads left behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from negsync.kube.manager import NO_LEADER, Background, Manager, Runnable
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, entry: str) -> None:
        with self._lock:
            self.log.append(entry)


class Probe(Runnable):
    """A runnable that records its start and stop; ``ready``/``up`` are set by the test."""

    def __init__(self, name: str, record: Recorder, *, leader: bool = False, up: bool = True) -> None:
        self.name = name
        self._record = record
        self._leader = leader
        self.up = threading.Event()
        if up:
            self.up.set()
        self.problem: str | None = None
        self.running = threading.Event()

    @property
    def needs_leader(self) -> bool:
        return self._leader

    def start(self, stop: threading.Event) -> None:
        self._record(f"start {self.name}")
        self.running.set()
        stop.wait()
        self.running.clear()
        self._record(f"stop {self.name}")

    def started(self) -> bool:
        return self.up.is_set()

    def not_ready(self) -> str | None:
        return self.problem if self.up.is_set() else f"{self.name} cold"


class FakeElector:
    """Leads when told to: the test plays the Lease."""

    def __init__(self, record: Recorder | None = None) -> None:
        self._record = record or Recorder()
        self.known = False
        self.on_start: Callable[[], None] = lambda: None
        self.on_stop: Callable[[], None] = lambda: None
        self.campaigning = threading.Event()
        self.released = threading.Event()
        self._wake = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self.campaigning.set()
        while not stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
        self.on_stop()
        self._record("release the Lease")
        self.released.set()

    def wake(self) -> None:
        self._wake.set()


@pytest.fixture
def record() -> Recorder:
    return Recorder()


@pytest.fixture
def elected(record: Recorder) -> Iterator[tuple[Manager, FakeElector, Probe, Probe, Probe]]:
    elector = FakeElector(record)
    manager = Manager(elector=elector, stop_timeout=5)
    elector.on_start, elector.on_stop = manager.start_leading, manager.stop_leading
    cache = Probe("cache", record, up=False)
    engine = Probe("engine", record, leader=True)
    writer = Probe("writer", record, leader=True)
    for runnable in (cache, writer, engine):
        manager.add(runnable)
    manager.start()
    try:
        yield manager, elector, cache, writer, engine
    finally:
        manager.stop()
    assert not any(t.is_alive() for t in manager.threads)


def test_a_leader_runnable_starts_on_leading_and_stops_on_losing(elected: tuple[Manager, FakeElector, Probe,
                                                                                    Probe, Probe],
                                                                 record: Recorder) -> None:
    manager, elector, cache, writer, engine = elected
    assert wait_for(cache.running.is_set, what="the always-on runnable running")
    assert not elector.campaigning.wait(0.2)  # never campaign with cold caches
    cache.up.set()
    assert elector.campaigning.wait(5)
    assert not engine.running.is_set() and not manager.leading
    elector.on_start()  # the Lease is ours
    wait_for(lambda: engine.running.is_set() and writer.running.is_set(), what="the leader group running")
    assert manager.leading
    elector.on_stop()  # renewal failed: a standby again, the always-on group keeps running
    assert not engine.running.is_set() and not writer.running.is_set() and not manager.leading
    assert cache.running.is_set()
    # Last started, first stopped: the engine finishes before the status writer.
    assert record.log[-2:] == ["stop engine", "stop writer"]
    elector.on_start()  # and may lead again
    wait_for(engine.running.is_set, what="the leader group running again")


def test_shutdown_stops_the_leader_group_before_the_lease_is_released_and_the_rest_last(
        elected: tuple[Manager, FakeElector, Probe, Probe, Probe], record: Recorder) -> None:
    manager, elector, cache, _writer, engine = elected
    cache.up.set()
    assert elector.campaigning.wait(5)
    elector.on_start()
    wait_for(engine.running.is_set, what="leading")
    manager.stop()
    # The engine finishes its calls, the writer sends what waits, and only then is the Lease let go.
    assert record.log[-4:] == ["stop engine", "stop writer", "release the Lease", "stop cache"]
    assert manager.shutting_down


def test_readiness_is_aggregated_from_the_runnables(record: Recorder) -> None:
    elector = FakeElector()
    manager = Manager(elector=elector, stop_timeout=5)
    cache = Probe("cache", record, up=False)
    webhook = Probe("webhook", record)
    engine = Probe("engine", record, leader=True)
    for runnable in (webhook, cache, engine):
        manager.add(runnable)
    assert manager.not_ready() == "cache cold"  # start-up work first, whatever else is wrong
    webhook.problem = "webhook CA not in the caBundle"
    assert manager.not_ready() == "cache cold"
    cache.up.set()
    assert manager.synced and not manager.ready
    assert manager.not_ready() == NO_LEADER
    elector.known = True  # another replica leads: a standby is ready
    assert manager.ready and manager.not_ready() == "webhook CA not in the caBundle"
    webhook.problem = None
    engine.problem = "engine says no"  # a leader runnable is asked too
    assert manager.not_ready() == "engine says no"
    engine.problem = None
    assert manager.not_ready() is None


def test_without_an_elector_it_leads_once_synced(record: Recorder) -> None:
    manager = Manager(stop_timeout=5)
    cache = Probe("cache", record, up=False)
    engine = Probe("engine", record, leader=True)
    manager.add(cache)
    manager.add(engine)
    manager.start()
    try:
        assert not engine.running.wait(0.2)
        cache.up.set()
        assert engine.running.wait(5)
        assert manager.leading and manager.ready
    finally:
        manager.stop()
    assert record.log == ["start cache", "start engine", "stop engine", "stop cache"]


def test_a_runnable_that_fails_is_reported_and_never_leads(record: Recorder) -> None:
    def bind() -> None:
        raise OSError("address already in use")

    manager = Manager(stop_timeout=5)
    http = Background(name="http", begin=bind, end=lambda: None)
    engine = Probe("engine", record, leader=True)
    manager.add(engine)
    manager.add(http, first=True)
    assert [r.name for r in manager.runnables] == ["http", "engine"]
    manager.start()
    try:
        wait_for(lambda: manager.failure is not None, what="the failure reported")
        assert isinstance(manager.failure, OSError)
        assert not manager.synced and manager.not_ready() == "http not started"
        assert not engine.running.wait(0.2)
    finally:
        manager.stop()


def test_background_brackets_a_component_with_its_own_threads() -> None:
    calls: list[str] = []
    runnable = Background(name="servers", begin=lambda: calls.append("begin"), end=lambda: calls.append("end"),
                          readiness=lambda: "not trusted")
    stop = threading.Event()
    thread = threading.Thread(target=runnable.start, args=(stop,))
    thread.start()
    wait_for(runnable.started, what="begun")
    assert calls == ["begin"] and runnable.not_ready() == "not trusted" and not runnable.needs_leader
    stop.set()
    thread.join(5)
    assert calls == ["begin", "end"] and not runnable.started()
