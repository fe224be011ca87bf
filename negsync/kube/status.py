"""A TargetBinding's status: conditions Ready / Synced / Degraded, endpoint counts, targets.

:func:`binding_status` is pure: it turns a reconcile outcome (or a problem found before the
reconcile — an invalid spec, a missing Service) into the ``status`` object.  Conditions keep
their ``lastTransitionTime`` while their status does not change, so a status write happens only
when something a user could observe changed; :func:`status_changed` decides that.

The status is always written *whole*: a JSON merge patch (RFC 7386) keeps every key it does not
mention, so :func:`replacing_patch` spells out ``null`` for each key of the stored status that
the new one lacks (``degradedEndpoints`` once the endpoints are fixed, a field of
``lastDetach``…).  Without that a cleared field would linger, every later status would differ
from the stored one, and a quiet binding would be written on every reconcile.

:class:`DetachTimings` keeps, per binding, the figures of ``status.lastDetach``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from negsync.core.clock import Clock
from negsync.core.endpoints import Skipped
from negsync.core.model import BindingKey, TargetEndpoint
from negsync.core.observers import Observer
from negsync.core.records import ReconcileResult

MAX_LISTED = 20


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a binding could not be reconciled at all; ``reason`` is a CamelCase condition reason."""

    reason: str
    message: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int,
               previous: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(kind) or {}
    transition = before.get("lastTransitionTime") if before.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": transition or _now(),
    }


def binding_status(
    *,
    generation: int,
    previous: Mapping[str, Any],
    result: ReconcileResult | None = None,
    problem: Problem | None = None,
    skipped: Sequence[Skipped] = (),
    target_links: Sequence[str] = (),
    gate_timeouts: int = 0,
) -> dict[str, Any]:
    before: dict[str, Mapping[str, Any]] = {
        str(c.get("type")): c for c in previous.get("conditions") or [] if isinstance(c, Mapping)
    }
    counts = {"desired": 0, "registered": 0, "healthy": 0, "draining": 0}
    degraded: list[dict[str, str]] = [{"address": s.address, "reason": s.reason} for s in skipped]
    if problem is not None:
        conditions = [
            _condition("Ready", False, problem.reason, problem.message, generation, before),
            _condition("Synced", False, problem.reason, problem.message, generation, before),
            _condition("Degraded", True, problem.reason, problem.message, generation, before),
        ]
    else:
        assert result is not None
        for name in counts:
            counts[name] = result.count(name)
        degraded += [{"address": str(m), "reason": why} for m, why in _sorted(result.rejected)]
        if result.conflicts:
            ready = _condition("Ready", False, "OwnershipConflict", "; ".join(result.conflicts), generation, before)
        elif result.errors:
            ready = _condition("Ready", False, "SyncFailed", "; ".join(result.errors), generation, before)
        elif counts["registered"] < counts["desired"]:
            ready = _condition("Ready", False, "Registering",
                               f"{counts['registered']}/{counts['desired']} endpoints registered", generation, before)
        else:
            ready = _condition("Ready", True, "Synced",
                               f"{counts['registered']} endpoints registered, {counts['healthy']} healthy", generation, before)
        if result.conflicts or result.errors:
            synced = _condition("Synced", False, "OwnershipConflict" if result.conflicts else "SyncFailed",
                                "; ".join([*result.conflicts, *result.errors]), generation, before)
        elif not result.synced:
            synced = _condition("Synced", False, "InProgress", "changes are being sent", generation, before)
        else:
            synced = _condition("Synced", True, "InSync", "targets match the Service's endpoints", generation, before)
        if result.quota_exceeded:
            degraded_condition = _condition("Degraded", True, "QuotaExceeded",
                                            "; ".join(result.quota_exceeded), generation, before)
        elif degraded:
            listed = ", ".join(f"{d['address']} ({d['reason']})" for d in degraded[:5])
            more = f" and {len(degraded) - 5} more" if len(degraded) > 5 else ""
            degraded_condition = _condition("Degraded", True, "EndpointsSkipped",
                                            f"{len(degraded)} endpoint(s) not registered: {listed}{more}", generation, before)
        elif gate_timeouts:
            degraded_condition = _condition("Degraded", True, "GateTimeout",
                                            f"{gate_timeouts} readiness gate(s) released by time-out", generation, before)
        else:
            degraded_condition = _condition("Degraded", False, "AsExpected", "all endpoints registered", generation, before)
        conditions = [ready, synced, degraded_condition]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "endpoints": counts,
        "targets": list(target_links),
    }
    if degraded:
        status["degradedEndpoints"] = degraded[:MAX_LISTED]
    return status


def _sorted(rejected: Mapping[TargetEndpoint, str]) -> list[tuple[TargetEndpoint, str]]:
    return sorted(rejected.items(), key=lambda item: item[0])


def _comparable(status: Mapping[str, Any]) -> Any:
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    ]
    rest = {k: v for k, v in status.items() if k != "conditions"}
    return sorted(conditions, key=lambda c: str(c.get("type"))), rest


def status_changed(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return _comparable(previous) != _comparable(new)


def replacing_patch(previous: Any, new: Any) -> Any:
    """A merge patch that turns ``previous`` into exactly ``new`` (absent keys sent as null)."""
    if not isinstance(new, Mapping) or not isinstance(previous, Mapping):
        return new
    patch: dict[str, Any] = {k: None for k in previous if k not in new}
    for key, value in new.items():
        patch[key] = replacing_patch(previous.get(key), value)
    return patch


class DetachTimings(Observer):
    """Per binding: how long its last detach took from the slice change to the call, and the call.

    An observer of the reconciler; the figures land in ``status.lastDetach`` so ``kubectl get -o yaml``
    shows them without a metrics stack (the histograms carry the same figures per provider).
    """

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._changed: dict[BindingKey, float] = {}
        self._issued: dict[Any, tuple[BindingKey, float, float | None]] = {}  # ref -> (key, issued, reaction)
        self._last: dict[BindingKey, dict[str, Any]] = {}

    def changed(self, key: BindingKey) -> None:
        with self._lock:
            self._changed.setdefault(key, self._clock.now())

    def submitted(self, *, key: BindingKey, ref: Any, detach: int, attach: int, at: float) -> None:
        with self._lock:
            changed = self._changed.pop(key, None)
            if detach:
                self._issued[ref] = (key, at, None if changed is None else max(0.0, at - changed))

    def detached(self, *, ref: Any, endpoints: Any, issued_at: float, done_at: float) -> None:
        with self._lock:
            entry = self._issued.pop(ref, None)
            if entry is None or not endpoints:
                return
            key, _, reaction = entry
            record: dict[str, Any] = {"callSeconds": round(max(0.0, done_at - issued_at), 3), "completedAt": _now()}
            if reaction is not None:
                record["changeToCallSeconds"] = round(reaction, 3)
            self._last[key] = record

    def last(self, key: BindingKey) -> dict[str, Any] | None:
        with self._lock:
            value = self._last.get(key)
            return dict(value) if value else None

    def forget(self, key: BindingKey) -> None:
        """The binding is gone: drop what was kept for its status."""
        with self._lock:
            self._changed.pop(key, None)
            self._last.pop(key, None)
            for ref in [r for r, entry in self._issued.items() if entry[0] == key]:
                del self._issued[ref]
