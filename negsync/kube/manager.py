"""The manager: one start/stop/readiness protocol for everything a controller process runs.

Borrowed from controller-runtime's ``pkg/manager`` (``runnable_group.go``, ``manager.go``):

* everything that runs is a :class:`Runnable` with ``start(stop)`` — it runs until ``stop`` is
  set, then cleans up and returns (controller-runtime's ``Runnable.Start(ctx)``);
* ``needs_leader`` (``LeaderElectionRunnable.NeedLeaderElection``) splits them into two groups:
  the always-on group (watchers, HTTP servers, webhook) starts at once, the leader group (the
  sync engine, the status writer) starts when this replica leads;
* the leader group starts only after every always-on runnable has ``started()`` — a cache has
  listed, a port is bound — as controller-runtime waits for ``WaitForCacheSync`` before leader
  election: never lead with cold caches;
* ``/readyz`` aggregates the runnables' ``not_ready()`` (``AddReadyzCheck``); a runnable that
  raises is recorded in :attr:`Manager.failure` (controller-runtime's error channel) and
  :func:`negsync.app.run` ends the process with exit 1;
* ``wake()`` is Python's stand-in for a cancelled context: blocking reads (a watch stream, a
  sleep on a condition) do not see an event being set, so the manager calls it after ``stop``;
* shutdown stops the leader group first (in reverse order: the engine finishes its in-flight
  calls, then the status writer sends what waits), then releases the Lease, then the always-on
  group in reverse order, so health and metrics answer until the end.

Where it differs, on purpose: controller-runtime exits the process when leadership is lost; here
the leader group is stopped and the replica stays a warm standby that may lead again (the
elector in :mod:`negsync.kube.leader` keeps running).  Hand-written because there is no Python
controller-runtime to depend on (kopf has no leader election or runnable groups); it is a few
threads and events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("negsync.manager")

NO_LEADER = "no leader known"


class Elector(Protocol):
    """Leader election as the manager drives it (:class:`negsync.kube.leader.LeaderElector`)."""

    @property
    def known(self) -> bool:
        """A leader (us or another) is known."""
        ...

    def run(self, stop: threading.Event) -> None:
        """Campaign until ``stop`` is set, calling back on gaining and losing; release on the way out."""
        ...

    def wake(self) -> None: ...


class Runnable(Protocol):
    """What the manager runs.  Subclass it to get the defaults (always on, started, ready)."""

    name: str

    @property
    def needs_leader(self) -> bool:
        """True: runs only while this replica leads (stopped when leadership is lost)."""
        return False

    def start(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then clean up and return; raising stops the process."""
        ...

    def wake(self) -> None:
        """Called after ``stop`` is set: unblock whatever ``start`` waits on (a watch stream, a sleep)."""
        return None

    def started(self) -> bool:
        """Start-up work done (a cache has listed, a port is bound); the leader group waits for it."""
        return True

    def not_ready(self) -> str | None:
        """Why ``/readyz`` should fail now, None when ready."""
        return None


@dataclass
class Background(Runnable):
    """A component that keeps its own threads: ``begin()`` and ``end()`` bracket the runnable's life."""

    name: str
    begin: Callable[[], object]
    end: Callable[[], object]
    readiness: Callable[[], str | None] = lambda: None
    leader_only: bool = False
    _up: threading.Event = field(default_factory=threading.Event)

    @property
    def needs_leader(self) -> bool:
        return self.leader_only

    def start(self, stop: threading.Event) -> None:
        self.begin()
        self._up.set()
        try:
            stop.wait()
        finally:
            self._up.clear()
            self.end()

    def started(self) -> bool:
        return self._up.is_set()

    def not_ready(self) -> str | None:
        return self.readiness()


class _Group:
    """Runnables started together, each on its own thread, and stopped one by one, last first."""

    def __init__(self, on_failure: Callable[[str, Exception], None]) -> None:
        self.runnables: list[Runnable] = []
        self.threads: list[threading.Thread] = []
        self._stops: list[threading.Event] = []
        self._on_failure = on_failure

    def start(self) -> None:
        self._stops = [threading.Event() for _ in self.runnables]
        self.threads = [self._launch(r, stop) for r, stop in zip(self.runnables, self._stops, strict=True)]

    def _launch(self, runnable: Runnable, stop: threading.Event) -> threading.Thread:
        def main() -> None:
            try:
                runnable.start(stop)
            except Exception as exc:
                log.exception("runnable failed", extra={"runnable": runnable.name})
                if not stop.is_set():  # an error while stopping is logged, not a failure of the run
                    self._on_failure(runnable.name, exc)

        thread = threading.Thread(target=main, name=runnable.name, daemon=True)
        thread.start()
        return thread

    def halt(self, *, timeout: float) -> None:
        """Stop every runnable, last started first, each joined before the next is stopped."""
        if not self.threads:
            return  # never started
        for runnable, stop, thread in reversed(list(zip(self.runnables, self._stops, self.threads, strict=True))):
            stop.set()
            runnable.wake()
            thread.join(timeout=timeout)
        self.threads, self._stops = [], []


class Manager:
    """Runs :class:`Runnable` s, leads (with an elector, or alone once synced) and aggregates readiness."""

    def __init__(self, *, elector: Elector | None = None, stop_timeout: float = 30.0) -> None:
        """``elector`` calls :meth:`start_leading` / :meth:`stop_leading`; None: lead alone once synced."""
        self._always = _Group(self._failed)
        self._leader = _Group(self._failed)
        self.elector = elector
        self._lock = threading.Lock()  # guards _leading
        self._transition = threading.Lock()  # one start/stop of the leader group at a time
        self._leading = False
        self._stopping = threading.Event()
        # Set only once the leader group has stopped: the elector releases the Lease after its
        # last status write, never before.
        self._stop_election = threading.Event()
        self._leadership: threading.Thread | None = None
        self._stop_timeout = stop_timeout
        self.failure: Exception | None = None

    # -- configuration -----------------------------------------------------------------------------
    def add(self, runnable: Runnable, *, first: bool = False) -> None:
        """Register before :meth:`start`; ``first`` puts it ahead of those added so far (servers)."""
        group = self._leader if runnable.needs_leader else self._always
        if first:
            group.runnables.insert(0, runnable)
        else:
            group.runnables.append(runnable)

    @property
    def runnables(self) -> list[Runnable]:
        return [*self._always.runnables, *self._leader.runnables]

    @property
    def threads(self) -> list[threading.Thread]:
        """The threads of the running runnables (always-on first), each named for its runnable."""
        return [*self._always.threads, *self._leader.threads]

    # -- state ---------------------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """Every always-on runnable has done its start-up work (caches listed, ports bound)."""
        return all(r.started() for r in self._always.runnables)

    @property
    def leading(self) -> bool:
        with self._lock:
            return self._leading

    @property
    def shutting_down(self) -> bool:
        return self._stopping.is_set()

    @property
    def stop_timeout(self) -> float:
        """How long one runnable may take to stop (the caller of :meth:`stop` may shorten it)."""
        return self._stop_timeout

    @property
    def ready(self) -> bool:
        """Synced, and we lead or know who does."""
        if not self.synced:
            return False
        return self.elector.known if self.elector is not None else self.leading

    def not_ready(self) -> str | None:
        """The first reason ``/readyz`` should fail: start-up first, then leadership, then any runnable."""
        for runnable in self._always.runnables:
            if not runnable.started():
                return runnable.not_ready() or f"{runnable.name} not started"
        if not self.ready:
            return NO_LEADER
        for runnable in self.runnables:
            problem = runnable.not_ready()
            if problem:
                return problem
        return None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._always.start()
        self._leadership = threading.Thread(target=self._lead, name="leader", daemon=True)
        self._leadership.start()

    def _lead(self) -> None:
        while not self.synced and not self._stopping.is_set() and self.failure is None:
            self._stopping.wait(0.05)  # never lead with cold caches
        if self._stopping.is_set() or self.failure is not None:
            return
        if self.elector is not None:
            self.elector.run(self._stop_election)
        else:
            self.start_leading()

    def start_leading(self) -> None:
        """Start the leader group (the elector's ``on_started_leading``)."""
        with self._transition:
            if self._stopping.is_set():
                return
            with self._lock:
                if self._leading:
                    return
                self._leading = True
            self._leader.start()

    def stop_leading(self) -> None:
        """Stop the leader group, last-started first (the elector's ``on_stopped_leading``)."""
        with self._transition:
            with self._lock:
                if not self._leading:
                    return
                self._leading = False
            self._leader.halt(timeout=self._stop_timeout)

    def _failed(self, name: str, exc: Exception) -> None:
        if self.failure is None:
            self.failure = exc

    def stop(self, *, timeout: float | None = None) -> None:
        """Stop the leader group (finishing in-flight work), release the Lease, then the rest."""
        if timeout is not None:
            self._stop_timeout = timeout
        self._stopping.set()
        self.stop_leading()
        self._stop_election.set()
        if self.elector is not None:
            self.elector.wake()  # its loop sees the stop and releases the Lease
        if self._leadership is not None:
            self._leadership.join(timeout=self._stop_timeout)
        self._always.halt(timeout=self._stop_timeout)


__all__ = ["NO_LEADER", "Background", "Elector", "Manager", "Runnable"]
