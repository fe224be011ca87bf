"""Drain-wait: let a pod's preStop hook wait for its real detach instead of a guessed sleep.

``GET /drain-wait?pod=<namespace>/<name>&timeout=<seconds>`` answers ``200`` once every load
balancer target of that pod has let go of it *and* a propagation margin has passed, ``504`` at the
timeout.  Bad parameters are ``400``, an unknown pod ``404``, too many waiters ``429``.

How "let go" is decided, level-based like everything else: the pod's IPs must not be a member (or
an in-flight attach) of any target, as the leader's reconciler sees it.  A standby replica has no
reconciler, so it asks the provider directly through a small shared TTL cache — a read-only call.
The margin covers what the API cannot show: the load balancer's data plane still routing for a
while after the control plane accepted the detach.  By default it is the measured p99 of
detach-issued → detach-done for this provider (at least ``min_margin``); ``--drain-margin`` fixes it.

Waiters sleep on a condition in their own HTTP threads and are woken when a detach completes; a
semaphore caps how many wait at once, so drain-wait can never take threads or locks from the
controller's own work.  A second cap per namespace (of the pod being drained) keeps one
namespace's mass rollout from taking the whole pool: its surplus callers get ``429`` and fall back
to their hook's sleep while other namespaces still get answers.  Answers are counted by status
(:attr:`DrainWait.answers`) and the waiters in flight are :attr:`DrainWait.waiting`; telemetry
exports both.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cachetools

from negsync.core.clock import Clock, RealClock
from negsync.core.httpserver import Query, Reply, json_reply
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef

log = logging.getLogger("negsync.draining")

_POD = re.compile(r"^(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/(?P<name>[a-z0-9]([-.a-z0-9]*[a-z0-9])?)$")
MAX_TIMEOUT = 3600.0


class DrainTracker:
    """Remembers detach completions and their latency; an :class:`Observer` of the reconciler.

    A detach time is kept exactly as long as it can answer a ``/drain-wait``: while a pod in the
    pod cache holds the IP (``/drain-wait`` answers 404 for any other pod).  The controller reports
    every change of the cached pods' IPs (:meth:`pod_ips_changed`); a detach time goes when the pod
    that had the IP leaves the cache, and when a pod newly takes the IP — a reused IP must not
    inherit an older pod's detach, or that pod's margin would be counted from the wrong moment.
    Forgetting errs on the safe side: a waiter without a detach time counts the margin from when it
    first sees the IP clear, i.e. later, never earlier.  So what is kept is bounded by the live pods
    that were detached — level-based, like the rest of the controller (issue 18 soak); ``max_ips``
    and ``ttl`` remain as a last cap only.
    """

    def __init__(self, *, clock: Clock | None = None, samples: int = 512, max_ips: int = 200_000,
                 ttl: float = 3600.0) -> None:
        self._clock = clock or RealClock()
        self._cond = threading.Condition()
        self._latencies: deque[float] = deque(maxlen=samples)
        # IP → detach completion, oldest first (a re-detached IP moves to the end).  A plain dict in
        # insertion order, pruned from the front: ~70 B per IP where a TTLCache took ~260 B.
        self._detached_at: dict[str, float] = {}
        # IP → how many cached pods hold it (more than one only while a reused IP changes hands).
        self._pods: dict[str, int] = {}
        self._max_ips = max_ips
        self._ttl = ttl

    def pod_ips_changed(self, before: Sequence[str], after: Sequence[str]) -> None:
        """A cached pod's IPs changed: ``before=()`` for a pod that appeared, ``after=()`` for one deleted."""
        gone, new = set(before) - set(after), set(after) - set(before)
        if not gone and not new:
            return
        with self._cond:
            for ip in gone:
                left = self._pods.get(ip, 0) - 1
                if left > 0:
                    self._pods[ip] = left
                else:
                    self._pods.pop(ip, None)
                self._detached_at.pop(ip, None)  # the pod it described is gone
            for ip in new:
                self._pods[ip] = self._pods.get(ip, 0) + 1
                self._detached_at.pop(ip, None)  # an earlier detach is not this pod's

    def __len__(self) -> int:
        """Detach times kept."""
        with self._cond:
            return len(self._detached_at)

    # Observer interface ----------------------------------------------------------------------
    def call_finished(self, *, ref: TargetRef, operation: str, size: int, seconds: float, outcome: str) -> None:
        return None

    def submitted(self, *, key: BindingKey, ref: TargetRef, detach: int, attach: int, at: float) -> None:
        return None

    def became_healthy(self, *, ref: TargetRef, endpoint: TargetEndpoint, seconds: float) -> None:
        return None

    def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float, done_at: float) -> None:
        with self._cond:
            if endpoints:
                self._latencies.append(max(0.0, done_at - issued_at))
            for member in endpoints:
                self._detached_at.pop(member.ip, None)
                if member.ip in self._pods:  # no cached pod holds it: no /drain-wait can ask
                    self._detached_at[member.ip] = done_at
            self._prune(self._clock.now())
            self._cond.notify_all()

    def _prune(self, now: float) -> None:
        # Caller holds the condition.  Completion times arrive (nearly) in order, so the front is oldest.
        entries = self._detached_at
        while entries:
            ip = next(iter(entries))
            if len(entries) <= self._max_ips and now - entries[ip] < self._ttl:
                break
            del entries[ip]

    # Queries ---------------------------------------------------------------------------------
    def detached_at(self, ip: str) -> float | None:
        with self._cond:
            at = self._detached_at.get(ip)
            return at if at is not None and self._clock.now() - at < self._ttl else None

    def p99(self) -> float | None:
        with self._cond:
            values = sorted(self._latencies)
        if len(values) < 5:
            return None
        return values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._clock.wait(self._cond, timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class DrainWait:
    """The ``/drain-wait`` route; ``holds(namespace, pod, ip)`` says whether a target still holds the IP."""

    def __init__(
        self,
        *,
        pod_ips: Callable[[str, str], Sequence[str] | None],
        holds: Callable[[str, str, str], bool],
        tracker: DrainTracker,
        clock: Clock | None = None,
        margin: float | None = None,
        min_margin: float = 2.0,
        fallback_margin: float = 10.0,
        max_waiters: int = 256,
        max_waiters_per_namespace: int | None = 64,
        poll_interval: float = 1.0,
    ) -> None:
        self._pod_ips = pod_ips
        self._holds = holds
        self._tracker = tracker
        self._clock = clock or RealClock()
        self._margin = margin
        self._min_margin = min_margin
        self._fallback_margin = fallback_margin
        self._slots = threading.BoundedSemaphore(max_waiters)
        self._poll = poll_interval
        self._per_namespace_limit = max_waiters_per_namespace
        self._per_namespace: dict[str, int] = {}
        self.waiting = 0
        self.answers: dict[int, int] = {}
        self._count_lock = threading.Lock()

    def margin(self) -> float:
        """Seconds to wait after the detach is seen done."""
        if self._margin is not None:
            return self._margin
        measured = self._tracker.p99()
        return max(self._min_margin, measured) if measured is not None else self._fallback_margin

    def __call__(self, query: Query) -> Reply:
        reply = self._answer(query)
        with self._count_lock:
            self.answers[reply[0]] = self.answers.get(reply[0], 0) + 1
        return reply

    def _answer(self, query: Query) -> Reply:
        pods = query.get("pod") or []
        if len(pods) != 1 or not _POD.match(pods[0]):
            return json_reply(400, error="pod must be given once as <namespace>/<name>")
        timeouts = query.get("timeout") or ["30"]
        try:
            timeout = float(timeouts[0])
        except ValueError:
            return json_reply(400, error=f"timeout must be a number of seconds, got {timeouts[0]!r}")
        if len(timeouts) != 1 or not 0 < timeout <= MAX_TIMEOUT:
            return json_reply(400, error=f"timeout must be > 0 and <= {MAX_TIMEOUT:.0f} seconds")
        namespace, name = pods[0].split("/", 1)
        ips = self._pod_ips(namespace, name)
        if ips is None:
            return json_reply(404, error=f"pod {namespace}/{name} is not known to negsync")
        with self._count_lock:
            if self._per_namespace_limit is not None and \
                    self._per_namespace.get(namespace, 0) >= self._per_namespace_limit:
                return json_reply(429, error=f"too many drain waiters in namespace {namespace} "
                                             f"(limit {self._per_namespace_limit}); fall back to a sleep")
            if not self._slots.acquire(blocking=False):
                return json_reply(429, error="too many drain waiters; fall back to a sleep")
            self.waiting += 1
            self._per_namespace[namespace] = self._per_namespace.get(namespace, 0) + 1
        try:
            return self._wait(namespace, name, list(ips), timeout)
        finally:
            with self._count_lock:
                self.waiting -= 1
                left = self._per_namespace[namespace] - 1
                if left:
                    self._per_namespace[namespace] = left
                else:
                    del self._per_namespace[namespace]
            self._slots.release()

    def _wait(self, namespace: str, name: str, ips: list[str], timeout: float) -> Reply:
        progress = DrainProgress(started=self._clock.now(), deadline=self._clock.now() + timeout)
        while True:
            reply = self.step(namespace, name, ips, progress)
            if reply is not None:
                return reply
            self._tracker.wait(max(0.001, progress.wake_in))

    def step(self, namespace: str, name: str, ips: Sequence[str], progress: DrainProgress) -> Reply | None:
        """One look at the pod's detach state: a reply when done or timed out, else None.

        Kept separate from the waiting so a virtual-time test can drive it one instant at a time.
        """
        now = self._clock.now()
        if any(self._holds(namespace, name, ip) for ip in ips):
            progress.clear_since = None
        else:
            if progress.clear_since is None:
                # When we know the detach completion time, count the margin from there.
                known = [t for t in (self._tracker.detached_at(ip) for ip in ips) if t is not None]
                progress.clear_since = min([now, *known]) if known else now
            margin = self.margin()
            if now - progress.clear_since >= margin:
                waited = now - progress.started
                log.info("drain complete", extra={"pod": f"{namespace}/{name}", "waited": round(waited, 3),
                                                  "margin": margin})
                return json_reply(200, pod=f"{namespace}/{name}", detached=True, waited_seconds=round(waited, 3),
                                  margin_seconds=margin)
        if now >= progress.deadline:
            timeout = progress.deadline - progress.started
            return json_reply(504, pod=f"{namespace}/{name}", detached=False,
                              error=f"still attached (or within the propagation margin) after {timeout:.0f}s")
        wake_in = min(self._poll, progress.deadline - now)
        if progress.clear_since is not None:
            wake_in = min(wake_in, max(0.0, progress.clear_since + self.margin() - now))
        progress.wake_in = wake_in
        return None


@dataclass
class DrainProgress:
    """What one waiter knows between looks."""

    started: float
    deadline: float
    clear_since: float | None = None
    wake_in: float = 0.0


class ProviderMembership:
    """``holds`` for a standby replica: asks the provider (read-only) through a shared TTL cache."""

    def __init__(self, *, provider: Any, targets_of_pod: Callable[[str, str], Sequence[TargetRef]],
                 ttl: float = 2.0) -> None:
        self._provider = provider
        self._targets_of_pod = targets_of_pod
        self._cache: cachetools.TTLCache[TargetRef, frozenset[str]] = cachetools.TTLCache(
            maxsize=10_000, ttl=ttl, timer=time.monotonic)
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str, ip: str) -> bool:
        try:
            refs = self._targets_of_pod(namespace, name)
        except Exception:
            log.warning("targets of pod unknown", extra={"pod": f"{namespace}/{name}"})
            return True  # unknown counts as still attached: never release early
        for ref in refs:
            with self._lock:
                ips = self._cache.get(ref)
            if ips is None:
                try:
                    members = self._provider.list_endpoints(ref)
                except Exception:
                    log.warning("membership check failed", extra={"target": str(ref)})
                    return True
                ips = frozenset(m.ip for m, h in members.items() if h.counts_as_present)
                with self._lock:
                    self._cache[ref] = ips
            if ip in ips:
                return True
        return False
