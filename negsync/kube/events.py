"""Kubernetes Events on TargetBindings and Services, de-duplicated.

A controller that re-queues a failing binding every few seconds must not write an Event every
few seconds: the same (object, reason, message) is created once per ``dedupe_seconds``; repeats
within that window bump the existing Event's ``count`` and ``lastTimestamp`` (a PATCH, at most
once per ``bump_seconds``), as kubectl's event aggregation expects.  Event
writes are best effort — a failure to record an Event is logged and never fails a reconcile.
Messages are written verbatim, so callers must never put a credential in one (the telemetry
tests grep a whole run's output for planted fake credentials).

Memory is bounded on a controller that runs for months: the de-duplication table is a TTL cache
of at most 100,000 keys, and :attr:`EventRecorder.recorded` keeps only the most recent new Events
(a ring of ``keep_recent``), for tests and debugging.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
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
                 host: str = "", bump_seconds: float = 60.0, keep_recent: int = 256) -> None:
        self._core = core_api
        self._timeout = request_timeout
        self._host = host
        # key -> [event name, count, last bump]
        self._seen: cachetools.TTLCache[tuple[ObjectRef, str, str], list[Any]] = cachetools.TTLCache(
            maxsize=100_000, ttl=dedupe_seconds, timer=time.monotonic
        )
        self._bump_seconds = bump_seconds
        self._lock = threading.Lock()
        # (ref, type, reason, message) of the most recent new Events: a ring, never a growing list.
        self.recorded: deque[tuple[ObjectRef, str, str, str]] = deque(maxlen=keep_recent)

    def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, "Warning", reason, message)

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, "Normal", reason, message)

    def record(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None:
        key = (ref, reason, message)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None:
                seen[1] += 1
                if time.monotonic() - seen[2] < self._bump_seconds:
                    return
                seen[2] = time.monotonic()
                name, count = seen[0], seen[1]
            else:
                name, count = f"{ref.name}.{uuid.uuid4().hex[:16]}", 0
                self._seen[key] = [name, 1, time.monotonic()]
                self.recorded.append((ref, event_type, reason, message))
        if count:
            self._bump(ref.namespace, name, count, now)
            return
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
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

    def _bump(self, namespace: str, name: str, count: int, now: str) -> None:
        try:
            self._core.patch_namespaced_event(name, namespace, {"count": count, "lastTimestamp": now},
                                              _request_timeout=self._timeout, _preload_content=False)
        except Exception as exc:
            log.debug("event count not bumped", extra={"event": name, "error": type(exc).__name__})
