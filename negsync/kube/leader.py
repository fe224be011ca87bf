"""Leader election on a ``coordination.k8s.io/v1`` Lease, with controller-runtime's defaults.

Hand-written rather than the kubernetes client's ``leaderelection`` package: that one blocks its
caller in a loop timed on the wall clock (``time.time()`` in ``renew_loop``: a clock jump stretches
or cuts the renew deadline) and never releases the Lease on shutdown.

Only the leader writes to clouds or the API; standby replicas keep their caches warm.  The
algorithm is client-go's: every ``retry_period`` try to acquire or renew the Lease with an
optimistic-concurrency update (the API answers 409 when someone else wrote first); a holder that
has not renewed for ``lease_duration`` may be replaced; a leader that cannot renew within
``renew_deadline`` steps down *before* its lease can expire, so two leaders never overlap as long
as clocks advance at the same rate.  On clean shutdown the Lease is released (holder cleared) so
a standby takes over at once instead of after a full lease duration.

Expiry never compares another process's timestamp with ours.  As client-go's
``tools/leaderelection`` ("only acts on timestamps captured locally"), we remember the last
Lease record we saw and *when we saw it change*, on our own monotonic clock; a holder has
expired when the record has not changed for ``leaseDurationSeconds`` of our time.  The
``renewTime`` a holder writes is only a change marker to us, so a holder whose wall clock is
an hour behind (or ahead) of ours is neither deposed while it renews nor waited on for an hour
after it died.  A new process therefore waits one full lease duration before it takes over a
Lease whose holder is silent — client-go does the same.  Lease times are still written as
wall-clock ``MicroTime`` because other tools (``kubectl get lease``) read them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from negsync.core.clock import Clock, RealClock

log = logging.getLogger("negsync.leader")


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _record_of(spec: Any) -> tuple[Any, ...]:
    """The Lease fields whose change means "the holder is alive" (client-go compares the raw record)."""
    if spec is None:
        return ("", None, None, None, 0)
    return (spec.holder_identity or "", _parse(spec.acquire_time), _parse(spec.renew_time),
            spec.lease_duration_seconds, spec.lease_transitions or 0)


def _record_of_body(body: dict[str, Any]) -> tuple[Any, ...]:
    spec = body["spec"]
    return (spec["holderIdentity"] or "", _parse(spec["acquireTime"]), _parse(spec["renewTime"]),
            spec["leaseDurationSeconds"], spec["leaseTransitions"])


class LeaderElector:
    def __init__(
        self,
        *,
        coordination_api: Any,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
        request_timeout: float = 5.0,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self._api = coordination_api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock or RealClock()
        self._wall = wall_clock
        self._on_start = on_started_leading
        self._on_stop = on_stopped_leading
        self._timeout = request_timeout
        self._leading = threading.Event()
        self._last_renew = float("-inf")
        self.observed_holder = ""
        # client-go's observedRecord / observedTime: the record as last read, and when (our
        # monotonic clock) we first saw it in that form.
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = float("-inf")
        self._cond = threading.Condition()

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set() and self._clock.now() - self._last_renew < self.renew_deadline

    @property
    def known(self) -> bool:
        """A leader (us or another) is known: what /readyz reports for a standby."""
        return self.is_leader or bool(self.observed_holder)

    # -- one attempt ---------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        now = self._wall()
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("lease read failed", extra={"status": exc.status})
                return False
            return self._create(now)
        spec = lease.spec
        holder = (spec.holder_identity if spec else "") or ""
        self.observed_holder = holder
        duration = (spec.lease_duration_seconds if spec else None) or self.lease_duration
        self._observe(_record_of(spec))
        expired = self._clock.now() >= self._observed_at + duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = (spec.lease_transitions if spec else 0) or 0
        acquired = now if holder != self.identity or not spec else (_parse(spec.acquire_time) or now)
        body = self._body(
            resource_version=lease.metadata.resource_version,
            holder=self.identity,
            duration=max(1, round(self.lease_duration)),
            acquire=_micro_time(acquired),
            renew=_micro_time(now),
            transitions=transitions + (1 if holder != self.identity else 0),
        )
        return self._write("update", body, lambda: self._api.replace_namespaced_lease(
            self.name, self.namespace, body, _request_timeout=self._timeout))

    def _write(self, what: str, body: dict[str, Any], send: Callable[[], object]) -> bool:
        """One optimistic write of ``body`` as this replica's Lease; a 409 means someone wrote first."""
        try:
            send()
        except ApiException as exc:
            if exc.status != 409:
                log.warning("lease %s failed", what, extra={"status": exc.status})
            return False
        self.observed_holder = self.identity
        self._observe(_record_of_body(body))
        return True

    def _observe(self, record: tuple[Any, ...]) -> None:
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = self._clock.now()

    def _body(self, *, resource_version: str | None, holder: str | None, duration: int, acquire: str | None,
              renew: str, transitions: int) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            metadata["resourceVersion"] = resource_version  # optimistic concurrency: 409 if someone wrote first
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": acquire,
                     "renewTime": renew, "leaseTransitions": transitions},
        }

    def _create(self, now: datetime) -> bool:
        body = self._body(resource_version=None, holder=self.identity, duration=max(1, round(self.lease_duration)),
                          acquire=_micro_time(now), renew=_micro_time(now), transitions=0)
        return self._write("create", body, lambda: self._api.create_namespaced_lease(
            self.namespace, body, _request_timeout=self._timeout))

    # -- the loop ------------------------------------------------------------------------------
    def step(self) -> None:
        """One retry period's worth of work: acquire, renew, or step down."""
        try:
            ok = self.try_acquire_or_renew()
        except Exception:
            log.exception("leader election attempt failed")
            ok = False
        now = self._clock.now()
        if ok:
            self._last_renew = now
            if not self._leading.is_set():
                self._leading.set()
                log.info("started leading", extra={"identity": self.identity})
                self._on_start()
        elif self._leading.is_set() and now - self._last_renew >= self.renew_deadline:
            self._leading.clear()
            log.warning("stopped leading: could not renew in time", extra={"identity": self.identity})
            self._on_stop()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            with self._cond:
                self._clock.wait(self._cond, self.retry_period)
        if self._leading.is_set():
            self._leading.clear()
            self._on_stop()
            self.release()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def release(self) -> None:
        """Give the Lease up so a standby need not wait a whole lease duration."""
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
            if not lease.spec or lease.spec.holder_identity != self.identity:
                return
            body = self._body(resource_version=lease.metadata.resource_version, holder=None, duration=1,
                              acquire=None, renew=_micro_time(self._wall()),
                              transitions=lease.spec.lease_transitions or 0)
            self._api.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=self._timeout)
            log.info("lease released", extra={"identity": self.identity})
        except Exception:
            log.warning("lease release failed", exc_info=True)
