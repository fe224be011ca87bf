"""An in-memory load balancer: a product feature for demos, the simulator and tests.

It behaves like a slow cloud: a call takes ``call_latency``; an attached member is ``initial``
until its ``attach_delay`` passes (then ``healthy``, or ``no-health-check`` at once when health
checking is off); a detached member keeps receiving new requests until ``detach_delay`` passes
and stays ``draining`` for ``deregistration_delay`` before it disappears.  Every delay is a
:mod:`negsync.core.latency` distribution and every wait runs on an injected clock, so tests run
in virtual time and the controller can be demonstrated without a cloud account.
:class:`MemoryOwnershipStore` is the matching :class:`~negsync.core.ports.OwnershipStore` (the
controller keeps ownership in ConfigMaps, :mod:`negsync.kube.ownership`).

Test seams are part of the feature: :meth:`MemoryProvider.pause` holds calls in flight,
:meth:`MemoryProvider.fail_next` injects errors, :meth:`MemoryProvider.reject` makes batches
holding chosen members fail as a whole (like a 400 from the Compute API), and
:attr:`MemoryProvider.calls` records the most recent calls.  The record is a bounded deque
(``max_recorded_calls``, default 10,000) with exact per-operation counters beside it
(:meth:`MemoryProvider.count`, :attr:`MemoryProvider.calls_total`): a demo or soak running for
days makes millions of calls, and an unbounded list was the process's largest growth.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from negsync.core.bindings import TargetSpec
from negsync.core.clock import Clock, RealClock
from negsync.core.latency import Distribution, Fixed
from negsync.core.model import BindingKey, Endpoint, Health, TargetEndpoint, TargetRef
from negsync.errors import OwnershipConflict, ProviderError, RejectedError, TargetNotFound

_NEVER = float("inf")


class Call(NamedTuple):
    operation: str
    ref: TargetRef
    size: int
    started: float
    finished: float


@dataclass(slots=True)
class _Member:
    attached_at: float
    routed_at: float  # first new request routed (attach propagated)
    healthy_at: float
    detached_at: float = _NEVER
    unrouted_at: float = _NEVER  # last new request routed (detach propagated)
    gone_at: float = _NEVER  # draining ends


@dataclass
class _Pool:
    owner: BindingKey | None
    members: dict[TargetEndpoint, _Member] = field(default_factory=dict)
    in_use: bool = False


class MemoryProvider:
    """A :class:`~negsync.core.ports.TargetProvider` held in memory."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        call_latency: Distribution = Fixed(0.0),
        attach_delay: Distribution = Fixed(0.0),
        detach_delay: Distribution = Fixed(0.0),
        deregistration_delay: float = 0.0,
        health_checking: bool = True,
        max_batch_size: int = 500,
        zonal: bool = False,
        max_recorded_calls: int | None = 10_000,
    ) -> None:
        """``max_recorded_calls=None`` keeps every call (benchmarks that inspect each one)."""
        self._clock = clock or RealClock()
        self._rng = np.random.default_rng(seed)
        self.call_latency = call_latency
        self.attach_delay = attach_delay
        self.detach_delay = detach_delay
        self.deregistration_delay = deregistration_delay
        self.health_checking = health_checking
        self._max_batch = max_batch_size
        self._zonal = zonal
        self._lock = threading.RLock()
        self._pools: dict[TargetRef, _Pool] = {}
        self._by_name: dict[str, set[TargetRef]] = {}  # so a lookup by pool name is not a scan of every pool
        self._running = threading.Event()
        self._running.set()
        self._failures: list[tuple[str, ProviderError]] = []
        self._rejected: set[TargetEndpoint] = set()
        self.calls: deque[Call] = deque(maxlen=max_recorded_calls)
        self._counts: Counter[str] = Counter()

    # -- the provider protocol ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return "memory"

    @property
    def max_batch_size(self) -> int:
        return self._max_batch

    def _pool_name(self, binding: BindingKey, spec: TargetSpec) -> str:
        return getattr(spec, "name", "") or f"{binding.namespace}-{binding.name}"

    def targets_for(
        self, *, binding: BindingKey, spec: TargetSpec, endpoints: Iterable[Endpoint]
    ) -> dict[TargetRef, set[TargetEndpoint]]:
        name = self._pool_name(binding, spec)
        groups: dict[TargetRef, set[TargetEndpoint]] = {}
        for endpoint in endpoints:
            location = (endpoint.zone or "local") if self._zonal else "local"
            ref = TargetRef("memory", location, name)
            member = endpoint.target if self._zonal else TargetEndpoint(endpoint.ip, endpoint.port)
            groups.setdefault(ref, set()).add(member)
        return groups

    def existing_targets(self, *, binding: BindingKey, spec: TargetSpec) -> list[TargetRef]:
        name = self._pool_name(binding, spec)
        with self._lock:
            return sorted(ref for ref in self._by_name.get(name, ()) if self._pools[ref].owner in (binding, None))

    def ensure_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> None:
        with self._lock:
            pool = self._pool(ref, owner=None if spec.shared else binding)
            if not spec.shared and pool.owner not in (binding, None):
                raise OwnershipConflict(f"{ref} is owned by binding {pool.owner}")

    def list_endpoints(self, ref: TargetRef) -> dict[TargetEndpoint, Health]:
        self._enter("list", ref)
        now = self._clock.now()
        with self._lock:
            pool = self._pools.get(ref)
            if pool is None:
                raise TargetNotFound(f"{ref} does not exist")
            self._expire(pool, now)
            return {member: self._health(m, now) for member, m in pool.members.items()}

    def attach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        started = self._enter("attach", ref, endpoints)
        now = self._clock.now()
        with self._lock:
            pool = self._existing(ref)
            for member in endpoints:
                current = pool.members.get(member)
                if current is not None and current.detached_at == _NEVER:
                    continue  # attaching a present member is a no-op, as in both clouds
                delay = float(self.attach_delay.sample(self._rng))
                pool.members[member] = _Member(attached_at=now, routed_at=now + delay, healthy_at=now + delay)
            self._record(Call("attach", ref, len(endpoints), started, now))

    def detach(self, ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
        started = self._enter("detach", ref, endpoints)
        now = self._clock.now()
        with self._lock:
            pool = self._existing(ref)
            for member in endpoints:
                current = pool.members.get(member)
                if current is None or current.detached_at != _NEVER:
                    continue
                current.detached_at = now
                # A member whose attach had not propagated yet is simply never routed (routed_at >= unrouted_at).
                current.unrouted_at = now + float(self.detach_delay.sample(self._rng))
                current.gone_at = now + self.deregistration_delay
            self._expire(pool, now)
            self._record(Call("detach", ref, len(endpoints), started, now))

    def delete_target(self, ref: TargetRef, *, binding: BindingKey, spec: TargetSpec) -> bool:
        with self._lock:
            pool = self._pools.get(ref)
            if pool is None:
                return True
            if pool.in_use:
                return False
            if any(m.detached_at == _NEVER for m in pool.members.values()):
                raise ProviderError(f"{ref} still has members")
            del self._pools[ref]
            self._by_name.get(ref.name, set()).discard(ref)
            return True

    # -- the cloud's side, for tests, demos and the end-to-end checks -------------------------
    def routed(self, ref: TargetRef, *, at: float | None = None) -> set[TargetEndpoint]:
        """Members the load balancer sends new requests to at time ``at`` (default now)."""
        now = self._clock.now() if at is None else at
        with self._lock:
            pool = self._pools.get(ref)
            if pool is None:
                return set()
            return {e for e, m in pool.members.items() if m.routed_at <= now < m.unrouted_at}

    def members(self, ref: TargetRef) -> set[TargetEndpoint]:
        """Members attached and not detached: what a diff should converge to."""
        with self._lock:
            pool = self._pools.get(ref)
            return {e for e, m in pool.members.items() if m.detached_at == _NEVER} if pool else set()

    def targets(self) -> list[TargetRef]:
        with self._lock:
            return sorted(self._pools)

    def create_foreign(self, ref: TargetRef, members: Iterable[TargetEndpoint], *, owner: BindingKey | None) -> None:
        """A target (or members) that somebody else put there, for ownership tests."""
        now = self._clock.now()
        with self._lock:
            pool = self._pool(ref, owner=owner)
            for member in members:
                pool.members[member] = _Member(attached_at=now, routed_at=now, healthy_at=now)

    def set_in_use(self, ref: TargetRef, in_use: bool = True) -> None:
        with self._lock:
            self._pool(ref, owner=None).in_use = in_use

    def pause(self) -> None:
        """Hold every attach and detach that starts from now on until :meth:`resume`."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def fail_next(self, operation: str, error: ProviderError, *, count: int = 1) -> None:
        with self._lock:
            self._failures.extend([(operation, error)] * count)

    def reject(self, endpoints: Iterable[TargetEndpoint]) -> None:
        """Batches holding any of these fail as a whole, like a 400 from a cloud API."""
        with self._lock:
            self._rejected |= set(endpoints)

    def count(self, operation: str) -> int:
        """Completed calls of ``operation`` since start, including those no longer in :attr:`calls`."""
        with self._lock:
            return self._counts[operation]

    @property
    def calls_total(self) -> int:
        """Completed attach and detach calls since start."""
        with self._lock:
            return sum(self._counts.values())

    # -- internals ----------------------------------------------------------------------------
    def _record(self, call: Call) -> None:
        # Caller holds the lock.
        self.calls.append(call)
        self._counts[call.operation] += 1

    def _enter(self, operation: str, ref: TargetRef, endpoints: Sequence[TargetEndpoint] = ()) -> float:
        started = self._clock.now()
        if len(endpoints) > self._max_batch:
            raise RejectedError(f"{len(endpoints)} endpoints in one call; the limit is {self._max_batch}")
        self._clock.sleep(float(self.call_latency.sample(self._rng)))
        # Only membership calls are held: a paused list would stop the reconciler from diffing.
        while operation != "list" and not self._running.wait(0.05):
            pass
        with self._lock:
            for index, (op, error) in enumerate(self._failures):
                if op in (operation, "*"):
                    del self._failures[index]
                    raise error
            bad = self._rejected.intersection(endpoints)
        if bad and operation == "attach":
            raise RejectedError(f"invalid endpoint(s): {', '.join(sorted(map(str, bad)))}")
        return started

    def _pool(self, ref: TargetRef, *, owner: BindingKey | None) -> _Pool:
        pool = self._pools.get(ref)
        if pool is None:
            pool = self._pools[ref] = _Pool(owner=owner)
            self._by_name.setdefault(ref.name, set()).add(ref)
        return pool

    def _existing(self, ref: TargetRef) -> _Pool:
        pool = self._pools.get(ref)
        if pool is None:
            raise TargetNotFound(f"{ref} does not exist")
        return pool

    def _expire(self, pool: _Pool, now: float) -> None:
        for member in [e for e, m in pool.members.items() if m.gone_at <= now]:
            del pool.members[member]

    def _health(self, member: _Member, now: float) -> Health:
        if member.detached_at != _NEVER:
            return Health.DRAINING
        if not self.health_checking:
            return Health.NO_HEALTH_CHECK
        return Health.HEALTHY if member.healthy_at <= now else Health.INITIAL


class MemoryOwnershipStore:
    """An :class:`~negsync.core.ports.OwnershipStore` kept in a dict; the controller uses a ConfigMap-backed one."""

    def __init__(self) -> None:
        self._owned: dict[tuple[BindingKey, TargetRef], frozenset[TargetEndpoint]] = {}

    def owned(self, binding: BindingKey, ref: TargetRef) -> frozenset[TargetEndpoint]:
        return self._owned.get((binding, ref), frozenset())

    def remember(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None:
        self._owned[(binding, ref)] = self.owned(binding, ref) | frozenset(endpoints)

    def forget(self, binding: BindingKey, ref: TargetRef, endpoints: Iterable[TargetEndpoint]) -> None:
        self._owned[(binding, ref)] = self.owned(binding, ref) - frozenset(endpoints)
