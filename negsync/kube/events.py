"""Kubernetes Events on TargetBindings and Services, de-duplicated.

A controller that re-queues a failing binding every few seconds must not write an Event every
few seconds: the same (object, reason, message) is recorded once per ``dedupe_seconds``.  Event
writes are best effort — a failure to record an Event is logged and never fails a reconcile.
Messages are written verbatim, so callers must never put a credential in one (the telemetry
tests grep a whole run's output for planted fake credentials).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

import cachetools

log = logging.getLogger("negsync.events")

COMPONENT = "negsync-controller"


class ObjectRef(NamedTuple):
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""


class EventRecorder:
    def __init__(self, *, core_api: Any, dedupe_seconds: float = 600.0, request_timeout: float = 10.0,
                 host: str = "") -> None:
        self._core = core_api
        self._timeout = request_timeout
        self._host = host
        self._seen: cachetools.TTLCache[tuple[ObjectRef, str, str], float] = cachetools.TTLCache(
            maxsize=100_000, ttl=dedupe_seconds, timer=time.monotonic
        )
        self._lock = threading.Lock()
        self.recorded: list[tuple[ObjectRef, str, str, str]] = []  # (ref, type, reason, message), for tests

    def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, "Warning", reason, message)

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, "Normal", reason, message)

    def record(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None:
        key = (ref, reason, message)
        with self._lock:
            if key in self._seen:
                return
            self._seen[key] = time.monotonic()
            self.recorded.append((ref, event_type, reason, message))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": ref.uid or None,
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT, "host": self._host or None},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._host or COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(ref.namespace, body, _request_timeout=self._timeout)
        except Exception as exc:
            log.warning("event not recorded", extra={"reason": reason, "error": type(exc).__name__})
