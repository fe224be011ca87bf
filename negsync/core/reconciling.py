"""The level-based reconciler: one binding key in, cloud calls out, a status record back.

``reconcile(key, desired)`` never asks what changed.  Its caller recomputes the desired state
from the caches on every pass and hands it in; the reconciler reads the actual members from its
member cache, diffs them, and *submits* the plan as a transaction to a small pool of call threads.
It does not wait for the calls.

The member cache (:mod:`negsync.core.member_cache`) takes negsync's own completed writes, so they
cost no read; a plan computed from a listing that a write overtook is not sent.  Per-target
bookkeeping — in flight, back-off, isolated members — is :mod:`negsync.core.target_state`.

The decision a reader must know — coalescing, after the GKE NEG "transaction syncer": while a
transaction is in flight on a target, the members it carries are excluded from further diffs and
no new attach goes out on that target; changes pile up in the caches, and when the transaction
completes the key is re-queued, so everything that arrived meanwhile leaves in the fewest calls
(``ceil(n / max_batch_size)``), all batches at once.  Detaches are the exception that proves the
rule: a detach-only transaction may overtake an attach in flight on the same target, because a
terminating pod must leave the load balancer as early as possible.

Within a transaction detaches go first.  A batch the API rejects as invalid is bisected
(:func:`~negsync.core.batching.send_bisecting`); its bad members are reported on the status and
left out of attaches for their own back-off (``isolated_retry_base`` doubling to
``isolated_retry_max``, 5 min → 1 h), or until what they were computed from (pod, node,
readiness, the binding's spec) changes.  Transient failures back off per target (d doubling from
``retry_base`` to ``retry_max``, drawn from [d, 2d]).  A target that turns out to be gone
(TargetNotFound) is ensured — re-created by a provider that manages it — on the next pass.
Members are re-listed at least every ``member_list_period``, so endpoints the cloud removed by
itself (a VM stopped or deleted) are noticed and re-attached while still desired.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from negsync.core.attach_times import AttachTimes
from negsync.core.backoff import Backoff
from negsync.core.batching import send_bisecting
from negsync.core.bindings import BindingSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.diffs import Plan, diff
from negsync.core.member_cache import MemberCache
from negsync.core.model import BindingKey, Health, TargetEndpoint, TargetRef
from negsync.core.observers import NullObserver, Observer, Observers, observed_call
from negsync.core.ports import OwnershipStore, TargetProvider
from negsync.core.records import DesiredBinding, ReconcileResult, TargetStatus
from negsync.core.target_state import TargetState
from negsync.errors import OwnershipConflict, ProviderError, RejectedError

# The records and observers had their home here; importers written against it keep working.
__all__ = ["DesiredBinding", "Observer", "Observers", "ReconcileResult", "Reconciler", "TargetStatus"]

_T = TypeVar("_T")


class Reconciler:
    """One binding key and its desired state in, coalesced cloud calls out, a result back."""

    def __init__(
        self,
        *,
        provider: TargetProvider,
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
        self._targets: dict[tuple[BindingKey, TargetRef], TargetState] = {}
        self._known: dict[BindingKey, set[TargetRef]] = {}
        self._cache = MemberCache(lock=self._lock, max_age=min(resync_period, member_list_period))
        self._pool = ThreadPoolExecutor(max_workers=call_workers, thread_name_prefix="negsync-call")
        self._futures: set[Future[None]] = set()
        self._closed = False
        # Attach completion times, per call, until a listing can time them (attach → healthy).
        self._attach_times = AttachTimes()

    # -- the level-based entry point ----------------------------------------------------------
    def reconcile(self, key: BindingKey, desired: DesiredBinding | None) -> ReconcileResult:
        """Drive ``key``'s targets toward ``desired`` (None: the binding is gone, forget it).

        ``desired`` must be fresh: the completion of a transaction only re-queues the key, and the
        next pass must see what changed meanwhile, so callers compute it for every call.
        """
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
            key=key, targets=tuple(statuses), health=health, rejected=rejected, errors=tuple(errors),
            conflicts=tuple(conflicts), requeue_after=min(requeue), urgent=bool(urgent), finalized=finalized,
            retained=retained, quota_exceeded=tuple(quota),
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

    def _sync_target(  # the lists and dicts collect this target's share of the pass's result
        self, key: BindingKey, spec: BindingSpec, ref: TargetRef, want: set[TargetEndpoint], now: float,
        health: dict[TargetEndpoint, Health], rejected: dict[TargetEndpoint, str], requeue: list[float],
        errors: list[str], conflicts: list[str], urgent: list[bool], quota: list[str],
        fingerprint: Callable[[TargetEndpoint], int],
    ) -> TargetStatus:
        with self._lock:
            state = self._targets.setdefault((key, ref), TargetState())
            state.review_rejections(want=want, fingerprint=fingerprint, now=now, rejected=rejected, requeue=requeue)
            want = want - set(state.rejected)
            seen = self._cache.version(ref)
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
                state.note_failure(exc)
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
            stale = self._cache.version(ref) != seen
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
        cached = self._cache.fresh(ref, now=now, health_poll=(lambda: self._poll_for(ref)) if fresh else None)
        if cached is not None:
            return cached
        version = self._cache.version(ref)
        members = self._timed("list", ref, lambda: self._provider.list_endpoints(ref))
        with self._lock:
            self._cache.store(ref, members, version=version, listed_at=now)
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
        return observed_call(self._observer, self._clock, call, ref=ref, operation=operation,
                             outcome_of=lambda exc: "conflict" if isinstance(exc, OwnershipConflict) else "error")

    # -- transactions -------------------------------------------------------------------------
    def _submit(self, key: BindingKey, spec: BindingSpec, ref: TargetRef, state: TargetState, plan: Plan, now: float) -> None:
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
                state.note_failure(exc)
            delay = self._backoff(state, exc)
        except Exception as exc:  # a provider bug must not wedge the target forever
            with self._lock:
                state.error = f"unexpected {type(exc).__name__}: {exc}"
            delay = self._backoff(state, exc)
        finally:
            with self._lock:
                state.attaching -= plan.attach
                state.detaching -= plan.detach
                # An error or an unknown outcome drops the cached members: the next pass lists.
                self._cache.wrote(ref, detached=detached, attached=attached, certain=certain)
                closed = self._closed
            if not closed:
                self._enqueue(key, delay, bool(plan.detach) and delay == 0)

    def _send(
        self, operation: str, ref: TargetRef, members: Sequence[TargetEndpoint], state: TargetState
    ) -> list[TargetEndpoint]:
        """Send in chunks; bisect rejected chunks.  Returns the members that went through."""
        call = self._provider.attach if operation == "attach" else self._provider.detach

        def attempt(batch: list[TargetEndpoint]) -> None:
            observed_call(self._observer, self._clock, lambda: call(ref, batch), ref=ref, operation=operation,
                          size=len(batch), outcome_of=lambda exc: "rejected" if isinstance(exc, RejectedError) else "error")

        def isolate(member: TargetEndpoint, reason: str) -> None:
            with self._lock:
                state.isolate(member, reason, policy=self._isolation, now=self._clock.now())

        return send_bisecting(members, limit=self._provider.max_batch_size, call=attempt, isolate=isolate)

    def _backoff(self, state: TargetState, exc: Exception) -> float:
        with self._lock:
            return state.back_off(exc, policy=self._retry, cap=self._retry_max, rng=self._random, now=self._clock.now())

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
        for ref in refs:
            self._cache.drop(ref)
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
            self._cache.keep_versions(named)
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
        self._cache.drop(ref)

    def close(self, *, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Stop submitting calls; with ``wait``, let the calls in flight finish."""
        with self._lock:
            self._closed = True
        if wait:
            for future in list(self._futures):
                with contextlib.suppress(Exception):
                    future.result(timeout=timeout)
        self._pool.shutdown(wait=wait)
