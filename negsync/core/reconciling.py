"""The level-based reconciler: one binding key in, cloud calls out, a status record back.

``reconcile(key)`` never asks what changed.  It recomputes the desired members of every target
from the caches (through ``source``), reads the actual members from its member cache, diffs them,
and *submits* the plan as a transaction to a small pool of call threads.  It does not wait for the
calls.

The member cache is kept the way the GKE transaction syncer keeps its endpoint state: a completed
attach/detach is applied to it, so negsync's own writes cost no read.  The provider is listed only
when the entry is older than the resync period, after a call failed or its outcome is uncertain
(the entry is dropped), and for gate health polls — at most once per target per poll interval.
A listing that a write overtook (a transaction finished while it was in flight) is used once and
never cached, and a plan computed from it is not sent.

The decision a reader must know — coalescing, after the GKE NEG "transaction syncer": while a
transaction is in flight on a target, the members it carries are excluded from further diffs and
no new attach goes out on that target; changes pile up in the caches, and when the transaction
completes the key is re-queued, so everything that arrived meanwhile leaves in the fewest calls
(``ceil(n / max_batch_size)``), all batches at once.  Detaches are the exception that proves the
rule: a detach-only transaction may overtake an attach in flight on the same target, because a
terminating pod must leave the load balancer as early as possible.

Within a transaction detaches go first.  A batch the API rejects as invalid (one bad member
fails the whole call) is bisected until the bad members are isolated; they are reported on the
status and left out of later attaches — not for good: each is tried again after its own back-off
(``isolated_retry_base`` doubling to ``isolated_retry_max``, 5 min → 1 h), and at once when what it
was computed from changes (its Endpoint record — pod, node, readiness — or the binding's spec).
Transient failures back off per target with a delay drawn from [d, 2d] (d doubling from
``retry_base`` up to ``retry_max``).  A target that turns out to be gone (TargetNotFound) is ensured
again — re-created by a provider that manages its lifecycle — on the next pass.  Members are
re-listed at least every ``member_list_period``, so endpoints the cloud removed by itself (a VM
stopped or deleted) are noticed and re-attached while still desired.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from negsync.core.attach_times import AttachTimes
from negsync.core.backoff import Backoff
from negsync.core.batching import chunks, halves
from negsync.core.bindings import BindingSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.diffs import Plan, diff
from negsync.core.endpoints import Skipped
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.errors import (
    OwnershipConflict,
    ProviderError,
    QuotaExceeded,
    RejectedError,
    TargetNotFound,
    TransientError,
)
from negsync.providers.base import OwnershipStore, TargetProvider

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class DesiredBinding:
    """Everything a reconcile needs to know about one binding, read from the caches."""

    key: BindingKey
    spec: BindingSpec
    endpoints: tuple[Endpoint, ...] = ()
    terminating: tuple[Endpoint, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    deleting: bool = False
    # What an endpoint was computed from beyond its own record (its pod's and node's state), for
    # retrying an isolated endpoint at once when they change; None: the Endpoint record alone.
    inputs: Callable[[Endpoint], object] | None = None


@dataclass(frozen=True, slots=True)
class TargetStatus:
    ref: TargetRef
    desired: int
    registered: int
    healthy: int
    draining: int
    pending: int  # members in flight or waiting for a call
    error: str = ""


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    key: BindingKey
    targets: tuple[TargetStatus, ...] = ()
    health: Mapping[TargetEndpoint, Health] = field(default_factory=dict)
    rejected: Mapping[TargetEndpoint, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    requeue_after: float | None = None
    urgent: bool = False  # a detach is waiting (min interval or back-off): re-queue in the priority lane
    finalized: bool = False
    retained: tuple[TargetRef, ...] = ()  # targets left in place on deletion (still in use)
    quota_exceeded: tuple[str, ...] = ()  # a resource quota stops progress: waiting alone won't help

    @property
    def synced(self) -> bool:
        return not self.errors and not self.conflicts and all(t.pending == 0 for t in self.targets)

    def count(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.targets)


class Observer(Protocol):
    """Where the reconciler reports what it did; telemetry, drain tracking and the timeline log listen.

    Every method is a no-op here, so an observer subclasses this and overrides only what it needs
    (a class that matches the shape without subclassing still type-checks: it is a Protocol).
    """

    def call_finished(self, *, ref: TargetRef, operation: str, size: int, seconds: float, outcome: str) -> None:
        """A cloud call ended (``outcome``: ok, error, rejected or conflict), ``seconds`` after it started."""
        return None

    def submitted(self, *, key: BindingKey, ref: TargetRef, detach: int, attach: int, at: float) -> None:
        """A transaction left for the cloud: the end of "endpoint change → call issued"."""
        return None

    def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float, done_at: float) -> None:
        """A detach of ``endpoints`` issued at ``issued_at`` completed at ``done_at``."""
        return None

    def became_healthy(self, *, ref: TargetRef, endpoint: TargetEndpoint, seconds: float) -> None:
        """First healthy report for a member, ``seconds`` after its attach call completed."""
        return None


class NullObserver(Observer):
    """Hears everything, does nothing: the reconciler's default."""


class Observers:
    """Fan one observer slot out to several (telemetry and drain tracking both listen)."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def call_finished(self, *, ref: TargetRef, operation: str, size: int, seconds: float, outcome: str) -> None:
        for observer in self._observers:
            observer.call_finished(ref=ref, operation=operation, size=size, seconds=seconds, outcome=outcome)

    def submitted(self, *, key: BindingKey, ref: TargetRef, detach: int, attach: int, at: float) -> None:
        for observer in self._observers:
            observer.submitted(key=key, ref=ref, detach=detach, attach=attach, at=at)

    def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float, done_at: float) -> None:
        for observer in self._observers:
            observer.detached(ref=ref, endpoints=endpoints, issued_at=issued_at, done_at=done_at)

    def became_healthy(self, *, ref: TargetRef, endpoint: TargetEndpoint, seconds: float) -> None:
        for observer in self._observers:
            observer.became_healthy(ref=ref, endpoint=endpoint, seconds=seconds)


@dataclass(slots=True)
class _Rejection:
    """An endpoint bisection isolated: left out of attaches until ``retry_at`` or a change."""

    reason: str
    retry_at: float
    fingerprint: int | None = None  # of what the member was computed from; None until next seen


@dataclass
class _Target:
    """Mutable per-target bookkeeping; guarded by the reconciler's lock."""

    attaching: frozenset[TargetEndpoint] = frozenset()
    detaching: frozenset[TargetEndpoint] = frozenset()
    last_call: float = float("-inf")
    not_before: float = float("-inf")
    failures: int = 0
    error: str = ""
    ensured: bool = False
    rejected: dict[TargetEndpoint, _Rejection] = field(default_factory=dict)
    strikes: dict[TargetEndpoint, int] = field(default_factory=dict)  # rejections in a row
    quota: str = ""

    @property
    def busy(self) -> bool:
        return bool(self.attaching or self.detaching)


class Reconciler:
    def __init__(
        self,
        *,
        provider: TargetProvider,
        source: Callable[[BindingKey], DesiredBinding | None],
        enqueue: Callable[[BindingKey, float, bool], None],
        clock: Clock | None = None,
        ownership: OwnershipStore | None = None,
        observer: Observer | None = None,
        call_workers: int = 4,
        min_interval: float = 0.0,
        resync_period: float = 300.0,
        health_poll_interval: float = 5.0,
        retry_base: float = 5.0,
        retry_max: float = 600.0,
        isolated_retry_base: float = 300.0,
        isolated_retry_max: float = 3600.0,
        member_list_period: float = 60.0,
        seed: int | None = None,
    ) -> None:
        """``enqueue(key, delay, priority)`` puts a key back on the work queue."""
        self._provider = provider
        self._source = source
        self._enqueue = enqueue
        self._clock = clock or RealClock()
        self._ownership = ownership
        self._observer: Observer = observer or NullObserver()
        self._min_interval = min_interval
        self._resync = resync_period
        self._poll = health_poll_interval
        self._retry = Backoff(base=retry_base, cap=retry_max, jitter=1.0)
        self._retry_max = retry_max
        # Not jittered: a member is isolated alone, there is no herd to spread.
        self._isolation = Backoff(base=isolated_retry_base, cap=isolated_retry_max)
        self._list_period = member_list_period
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        # Keyed by binding too: two bindings naming one target must each prove ownership.
        self._targets: dict[tuple[BindingKey, TargetRef], _Target] = {}
        self._known: dict[BindingKey, set[TargetRef]] = {}
        # ref → (listed at, members).  A plain dict, not a TTLCache: applying our own writes must
        # not restart the entry's age, or a busy target would never be listed again.
        self._actual: dict[TargetRef, tuple[float, Mapping[TargetEndpoint, Health]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=call_workers, thread_name_prefix="negsync-call")
        self._futures: set[Future[None]] = set()
        self._closed = False
        # Attach completion times, per call, until a listing can time them (attach → healthy).
        self._attach_times = AttachTimes()
        self._writes: dict[TargetRef, int] = {}  # completed transactions per target

    # -- the level-based entry point ----------------------------------------------------------
    def reconcile(self, key: BindingKey) -> ReconcileResult:
        desired = self._source(key)
        if desired is None:
            self._forget(key)
            return ReconcileResult(key=key, finalized=True)
        spec = desired.spec
        groups: dict[TargetRef, set[TargetEndpoint]] = (
            {}
            if desired.deleting
            else self._provider.targets_for(binding=key, spec=spec.target, endpoints=desired.endpoints)
        )
        errors: list[str] = []
        conflicts: list[str] = []
        refs = self._targets_of(key, spec, groups, errors)
        statuses: list[TargetStatus] = []
        health: dict[TargetEndpoint, Health] = {}
        rejected: dict[TargetEndpoint, str] = {}
        requeue: list[float] = [self._resync]
        if refs:
            requeue.append(self._list_period)
        urgent: list[bool] = []
        quota: list[str] = []
        sources = {(e.ip, e.port): e for e in desired.endpoints}

        def fingerprint(member: TargetEndpoint) -> int:
            endpoint = sources.get((member.ip, member.port))
            inputs = desired.inputs(endpoint) if desired.inputs is not None and endpoint is not None else None
            return hash((spec, endpoint, member, repr(inputs)))

        now = self._clock.now()
        for ref in sorted(refs):
            want = groups.get(ref, set())
            status = self._sync_target(key, spec, ref, want, now, health, rejected, requeue, errors, conflicts, urgent,
                                       quota, fingerprint)
            statuses.append(status)
        gates_pending = spec.readiness_gate and any(not h.lets_gate_pass for h in health.values())
        if gates_pending:
            requeue.append(max((self._poll_for(ref) for ref in refs), default=self._poll))
        finalized = False
        retained: tuple[TargetRef, ...] = ()
        if desired.deleting and not errors and not conflicts and all(s.registered == 0 and s.pending == 0 for s in statuses):
            finalized, retained = self._delete_targets(key, spec, refs, errors)
        return ReconcileResult(
            key=key,
            targets=tuple(statuses),
            health=health,
            rejected=rejected,
            errors=tuple(errors),
            conflicts=tuple(conflicts),
            requeue_after=min(requeue),
            urgent=bool(urgent),
            finalized=finalized,
            retained=retained,
            quota_exceeded=tuple(quota),
        )

    def _targets_of(
        self, key: BindingKey, spec: BindingSpec, groups: Mapping[TargetRef, set[TargetEndpoint]], errors: list[str]
    ) -> set[TargetRef]:
        with self._lock:
            known = self._known.get(key)
        if known is None:
            # First sight of this binding since start: adopt targets it owns from an earlier run,
            # so a zone that lost all endpoints while we were down still gets emptied.
            try:
                known = set(self._provider.existing_targets(binding=key, spec=spec.target))
            except ProviderError as exc:
                errors.append(f"listing existing targets: {exc}")
                known = set()
            with self._lock:
                self._known[key] = known
        with self._lock:
            known |= set(groups)
            return set(known)

    def _sync_target(
        self,
        key: BindingKey,
        spec: BindingSpec,
        ref: TargetRef,
        want: set[TargetEndpoint],
        now: float,
        health: dict[TargetEndpoint, Health],
        rejected: dict[TargetEndpoint, str],
        requeue: list[float],
        errors: list[str],
        conflicts: list[str],
        urgent: list[bool],
        quota: list[str],
        fingerprint: Callable[[TargetEndpoint], int],
    ) -> TargetStatus:
        with self._lock:
            state = self._targets.setdefault((key, ref), _Target())
            self._review_rejections(state, want, fingerprint, now, rejected, requeue)
            want = want - set(state.rejected)
            seen = self._writes.get(ref, 0)
        members: Mapping[TargetEndpoint, Health] = {}
        try:
            if not state.ensured:
                self._timed("ensure", ref, lambda: self._provider.ensure_target(ref, binding=key, spec=spec.target))
                with self._lock:
                    state.ensured = True
                    if state.error.startswith("conflict:"):
                        state.error = ""
            members = self._members(ref, fresh=spec.readiness_gate and bool(want))
        except OwnershipConflict as exc:
            with self._lock:
                state.error = f"conflict: {exc}"
            conflicts.append(f"{ref}: {exc}")
            return TargetStatus(ref, len(want), 0, 0, 0, len(want), error=str(exc))
        except ProviderError as exc:
            errors.append(f"{ref}: {exc}")
            with self._lock:
                self._note_failure(state, exc)
                if state.quota:
                    quota.append(f"{ref}: {state.quota}")
            requeue.append(self._backoff(state, exc))
            return TargetStatus(ref, len(want), 0, 0, 0, len(want), error=str(exc))
        present = {m for m, h in members.items() if h.counts_as_present}
        # A provider whose listed DRAINING endpoints are still members (GCE NEGs) must not see
        # them attached again; they are not detached again either (already leaving).
        listed_draining = (
            {m for m, h in members.items() if h is Health.DRAINING}
            if getattr(self._provider, "draining_is_member", False) else set()
        )
        for member in want:
            health[member] = members.get(member, Health.INITIAL) if member in present else Health.INITIAL
        owned = self._ownership.owned(key, ref) if (spec.target.shared and self._ownership) else None
        with self._lock:
            in_flight = state.attaching | state.detaching
            plan = diff(want, present, in_flight, owned=owned)
            if listed_draining & plan.attach:
                plan = Plan(plan.detach, plan.attach - listed_draining)
            # A transaction finished after we listed: our list predates it, so the plan could repeat
            # it.  Send nothing; that transaction re-queued the key and the next pass lists afresh.
            stale = self._writes.get(ref, 0) != seen
            if plan and not self._closed and not stale:
                # A clock that stepped backwards must not park the target for the size of the step.
                state.last_call = min(state.last_call, now)
                state.not_before = min(state.not_before, now + self._retry_max)
                wait = max(state.not_before, state.last_call + self._min_interval) - now
                if wait > 0:
                    requeue.append(wait)
                    if plan.detach:
                        urgent.append(True)
                elif state.busy:
                    # Coalesce: only a detach may overtake a call in flight; attaches wait for it.
                    if plan.detach and not state.detaching:
                        self._submit(key, spec, ref, state, Plan(plan.detach, frozenset()), now)
                else:
                    self._submit(key, spec, ref, state, plan, now)
            pending = len(plan.detach) + len(plan.attach) + len(state.attaching) + len(state.detaching)
            error = state.error
            if error:
                (conflicts if error.startswith("conflict:") else errors).append(f"{ref}: {error}")
            if state.quota:
                quota.append(f"{ref}: {state.quota}")
        registered = sum(1 for m in present if m in want)
        healthy = sum(1 for m in want if health.get(m, Health.INITIAL).lets_gate_pass)
        draining = sum(1 for h in members.values() if h is Health.DRAINING)
        return TargetStatus(ref, len(want), registered, healthy, draining, pending, error=error)

    def _members(self, ref: TargetRef, *, fresh: bool) -> Mapping[TargetEndpoint, Health]:
        now = self._clock.now()
        with self._lock:
            cached = self._actual.get(ref)
        if cached is not None:
            listed_at, members = cached
            age = now - listed_at
            # age < 0: the clock stepped back; the entry is as old as we can tell, i.e. expired.
            expired = age >= min(self._resync, self._list_period) or age < 0
            stale_health = fresh and age >= self._poll_for(ref) and any(not h.lets_gate_pass for h in members.values())
            if not expired and not stale_health:
                return members
        with self._lock:
            version = self._writes.get(ref, 0)
        listed = self._timed("list", ref, lambda: self._provider.list_endpoints(ref))
        members = listed
        with self._lock:
            # A write that finished while we listed makes this list stale: use it once, never cache it.
            if self._writes.get(ref, 0) == version:
                self._actual[ref] = (now, members)
            healthy_now = self._attach_times.listed(ref, members, now=now)
        for member, seconds in healthy_now:
            self._observer.became_healthy(ref=ref, endpoint=member, seconds=seconds)
        return members

    def _poll_for(self, ref: TargetRef) -> float:
        # A provider with a shared API budget (AWS: Describe* per account) may stretch the health
        # poll interval so that every target being polled fits into it.
        spacing = getattr(self._provider, "health_poll_interval", None)
        return max(self._poll, float(spacing(ref))) if callable(spacing) else self._poll

    def _timed(self, operation: str, ref: TargetRef, call: Callable[[], _T]) -> _T:
        """A read or set-up call, reported like attach/detach so failed reads show in the call metrics."""
        started = self._clock.now()
        try:
            value = call()
        except ProviderError as exc:
            outcome = "conflict" if isinstance(exc, OwnershipConflict) else "error"
            self._observer.call_finished(ref=ref, operation=operation, size=0, seconds=self._clock.now() - started,
                                         outcome=outcome)
            raise
        self._observer.call_finished(ref=ref, operation=operation, size=0, seconds=self._clock.now() - started,
                                     outcome="ok")
        return value

    # -- transactions -------------------------------------------------------------------------
    def _submit(self, key: BindingKey, spec: BindingSpec, ref: TargetRef, state: _Target, plan: Plan, now: float) -> None:
        state.attaching |= plan.attach
        state.detaching |= plan.detach
        state.last_call = now
        self._observer.submitted(key=key, ref=ref, detach=len(plan.detach), attach=len(plan.attach), at=now)
        future = self._pool.submit(self._transaction, key, spec, ref, plan)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _transaction(self, key: BindingKey, spec: BindingSpec, ref: TargetRef, plan: Plan) -> None:
        state = self._targets[(key, ref)]
        shared = spec.target.shared and self._ownership is not None
        delay = 0.0
        detached: list[TargetEndpoint] = []
        attached: list[TargetEndpoint] = []
        certain = False  # every call answered: the cache may take the outcome instead of a listing
        try:
            if plan.detach:
                issued = self._clock.now()
                done = detached = self._send("detach", ref, sorted(plan.detach), state)
                if shared and self._ownership is not None:
                    self._ownership.forget(key, ref, done)
                with self._lock:
                    self._attach_times.detached(ref, done)
                self._observer.detached(ref=ref, endpoints=done, issued_at=issued, done_at=self._clock.now())
            if plan.attach:
                if shared and self._ownership is not None:
                    # Recorded before the call: a lost response must not leak an unrecorded member.
                    self._ownership.remember(key, ref, plan.attach)
                attached = self._send("attach", ref, sorted(plan.attach), state)
                done_at = self._clock.now()
                with self._lock:
                    self._attach_times.attached(ref, attached, done_at=done_at)
                    if state.strikes:
                        for member in attached:
                            state.strikes.pop(member, None)
            with self._lock:
                state.failures = 0
                state.error = ""
                state.quota = ""
            certain = True
        except OwnershipConflict as exc:
            with self._lock:
                state.error = f"conflict: {exc}"
            delay = self._retry_max
        except ProviderError as exc:
            with self._lock:
                state.error = str(exc)
                self._note_failure(state, exc)
            delay = self._backoff(state, exc)
        except Exception as exc:  # a provider bug must not wedge the target forever
            with self._lock:
                state.error = f"unexpected {type(exc).__name__}: {exc}"
            delay = self._backoff(state, exc)
        finally:
            with self._lock:
                state.attaching -= plan.attach
                state.detaching -= plan.detach
                self._writes[ref] = self._writes.get(ref, 0) + 1
                if certain:
                    self._apply_own_write(ref, detached=detached, attached=attached)
                else:
                    self._actual.pop(ref, None)  # an error or an unknown outcome: list next time
                closed = self._closed
            if not closed:
                self._enqueue(key, delay, bool(plan.detach) and delay == 0)

    def _apply_own_write(
        self, ref: TargetRef, *, detached: Sequence[TargetEndpoint], attached: Sequence[TargetEndpoint]
    ) -> None:
        """Fold a completed transaction into the member cache (caller holds the lock).

        A new mapping replaces the entry (readers may be iterating the old one), keeping the
        listing's timestamp so the resync period still forces a real listing.
        """
        cached = self._actual.get(ref)
        if cached is None:
            return  # nothing cached: the next reconcile lists anyway
        listed_at, members = cached
        updated = dict(members)
        for member in detached:
            updated.pop(member, None)
        for member in attached:
            updated.setdefault(member, Health.INITIAL)
        self._actual[ref] = (listed_at, updated)

    def _send(self, operation: str, ref: TargetRef, members: Sequence[TargetEndpoint], state: _Target) -> list[TargetEndpoint]:
        """Send in chunks; bisect rejected chunks.  Returns the members that went through."""
        call = self._provider.attach if operation == "attach" else self._provider.detach
        done: list[TargetEndpoint] = []
        pending = [list(batch) for batch in chunks(members, limit=self._provider.max_batch_size)]
        while pending:
            batch = pending.pop(0)
            started = self._clock.now()
            try:
                call(ref, batch)
            except RejectedError as exc:
                self._observer.call_finished(
                    ref=ref, operation=operation, size=len(batch), seconds=self._clock.now() - started, outcome="rejected"
                )
                known_bad = set(getattr(exc, "endpoints", None) or ()) & set(batch)
                if known_bad:
                    with self._lock:
                        for member in known_bad:
                            self._isolate(state, member, str(exc))
                    rest = [m for m in batch if m not in known_bad]
                    if rest:
                        pending.insert(0, rest)
                elif len(batch) == 1:
                    with self._lock:
                        self._isolate(state, batch[0], str(exc))
                else:
                    left, right = halves(batch)
                    pending[:0] = [list(left), list(right)]
                continue
            except ProviderError:
                self._observer.call_finished(
                    ref=ref, operation=operation, size=len(batch), seconds=self._clock.now() - started, outcome="error"
                )
                raise
            self._observer.call_finished(
                ref=ref, operation=operation, size=len(batch), seconds=self._clock.now() - started, outcome="ok"
            )
            done.extend(batch)
        return done

    def _isolate(self, state: _Target, member: TargetEndpoint, reason: str) -> None:
        """Leave an isolated member out for a capped, doubling back-off (5 min → 1 h by default)."""
        strikes = state.strikes.get(member, 0) + 1
        state.strikes[member] = strikes
        delay = self._isolation.delay(strikes)
        state.rejected[member] = _Rejection(reason, self._clock.now() + delay)

    def _review_rejections(
        self,
        state: _Target,
        want: set[TargetEndpoint],
        fingerprint: Callable[[TargetEndpoint], int],
        now: float,
        rejected: dict[TargetEndpoint, str],
        requeue: list[float],
    ) -> None:
        """Release isolated members whose back-off ran out or whose inputs changed; report the rest."""
        for member in [m for m in state.strikes if m not in want]:
            del state.strikes[member]  # left the desired set: a later comeback starts afresh
        for member, rejection in list(state.rejected.items()):
            current = fingerprint(member)
            if rejection.fingerprint is None:
                rejection.fingerprint = current
            if member not in want or rejection.fingerprint != current:
                del state.rejected[member]  # its pod, node or binding changed: try it at once
                state.strikes.pop(member, None)
            elif now >= rejection.retry_at:
                del state.rejected[member]  # back-off over: one more try (strikes kept)
            else:
                wait = rejection.retry_at - now
                requeue.append(wait)
                rejected[member] = f"{rejection.reason} (retried in {wait:.0f}s, or at once when its pod, " \
                                   "node or the binding changes)"

    @staticmethod
    def _note_failure(state: _Target, exc: ProviderError) -> None:
        """Caller holds the lock.  A missing target is ensured (re-created) on the next pass."""
        if isinstance(exc, TargetNotFound):
            state.ensured = False
        state.quota = str(exc) if isinstance(exc, QuotaExceeded) else ""

    def _backoff(self, state: _Target, exc: Exception) -> float:
        with self._lock:
            state.failures += 1
            delay = self._retry.delay(state.failures, rng=self._random)
            hint = getattr(exc, "retry_after", None) if isinstance(exc, TransientError) else None
            if hint:
                delay = max(delay, float(hint))
            delay = min(delay, self._retry_max)
            state.not_before = self._clock.now() + delay
            return delay

    def _delete_targets(
        self, key: BindingKey, spec: BindingSpec, refs: set[TargetRef], errors: list[str]
    ) -> tuple[bool, tuple[TargetRef, ...]]:
        retained: list[TargetRef] = []
        for ref in sorted(refs):
            try:
                if not self._provider.delete_target(ref, binding=key, spec=spec.target):
                    retained.append(ref)
            except ProviderError as exc:
                errors.append(f"deleting {ref}: {exc}")
        if errors:
            return False, tuple(retained)
        with self._lock:
            for ref in refs:
                self._actual.pop(ref, None)
        self._forget(key)
        return True, tuple(retained)

    def _forget(self, key: BindingKey) -> None:
        """Drop a gone binding's per-key state (bindings come and go for the life of the process).

        A target still in flight keeps its entry until a later pass; per-target counters go once no
        binding names the target any more.
        """
        with self._lock:
            self._known.pop(key, None)
            for pair in [p for p, state in self._targets.items() if p[0] == key and not state.busy]:
                del self._targets[pair]
            named = {ref for _, ref in self._targets} | {ref for refs in self._known.values() for ref in refs}
            for ref in [r for r in self._writes if r not in named]:
                del self._writes[ref]
            self._attach_times.forget([r for r in self._attach_times.targets() if r not in named])

    # -- queries for drain-wait and shutdown ---------------------------------------------------
    def holds(self, ip: str, *, keys: Iterable[BindingKey] | None = None) -> bool:
        """Whether a target of these bindings (default: all) holds, or is being given, this IP.

        Reads the member cache and lists a target whose entry expired or was dropped by a write,
        so "not held" is never answered from a missing cache entry.  A target that cannot be read
        counts as holding the IP: callers use this to release draining pods, never too early.
        """
        with self._lock:
            wanted = set(keys) if keys is not None else set(self._known)
            if any(key not in self._known for key in wanted):
                return True  # a binding not reconciled yet (e.g. just after a leader change): unknown
            refs = {ref for key in wanted for ref in self._known.get(key, ())}
            for (key, _), state in self._targets.items():
                if key in wanted and any(m.ip == ip for m in state.attaching | state.detaching):
                    return True
        for ref in refs:
            try:
                members = self._members(ref, fresh=False)
            except ProviderError:
                return True
            if any(m.ip == ip and h.counts_as_present for m, h in members.items()):
                return True
        return False

    def busy(self) -> bool:
        """Whether any transaction is still running (including its re-enqueue)."""
        with self._lock:
            return any(not f.done() for f in self._futures)

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(s.attaching) + len(s.detaching) for s in self._targets.values())

    def invalidate(self, ref: TargetRef | None = None) -> None:
        with self._lock:
            if ref is None:
                self._actual.clear()
            else:
                self._actual.pop(ref, None)

    def close(self, *, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Stop submitting calls; with ``wait``, let the calls in flight finish."""
        with self._lock:
            self._closed = True
        if wait:
            for future in list(self._futures):
                with contextlib.suppress(Exception):
                    future.result(timeout=timeout)
        self._pool.shutdown(wait=wait)
