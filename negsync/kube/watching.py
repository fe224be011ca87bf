"""List-then-watch for one resource kind, feeding a :class:`~negsync.kube.caches.Store`.

The Python client has no informer, so this is one: list (raw JSON, no models), remember the
list's resourceVersion, watch from it with ``allowWatchBookmarks``, and keep the resourceVersion
current from every event and bookmark.  The loop is deliberately small — :meth:`Watcher.step`
does one list or one watch stream and returns — so tests can drive it a step at a time.

Failure handling, the part that matters:

* a silent stream cannot hang: every request carries a read timeout a little longer than the
  server-side ``timeoutSeconds``;
* a dropped connection, a read timeout or a 5xx/429 resumes the watch *from the last
  resourceVersion* after a jittered back-off — no relist, no replay;
* ``410 Gone`` (an ERROR event or an HTTP 410) means history was compacted: relist, and let
  :meth:`Store.replace` emit only what actually changed, so nothing is replayed as new and
  nothing missed during the gap is lost;
* a record whose slim form did not change is never reported, so heartbeats cost nothing.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from negsync.core.clock import Clock, RealClock
from negsync.kube.caches import Key, Store, record_key

log = logging.getLogger("negsync.watching")

R = TypeVar("R")
ListFunction = Callable[..., Any]
ChangeHandler = Callable[[Any, Any], None]  # (old record | None, new record | None)


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """How to list one kind: ``list_all(**kw)`` for every namespace, ``list_in(namespace, **kw)``."""

    name: str
    list_all: ListFunction
    list_in: Callable[..., Any] | None
    decode: Callable[[Mapping[str, Any]], Any]


class Gone(Exception):
    """History was compacted past our resourceVersion: relist."""


class Watcher(Generic[R]):
    def __init__(
        self,
        *,
        kind: ResourceKind,
        store: Store[Any],
        on_change: ChangeHandler,
        namespace: str | None = None,
        clock: Clock | None = None,
        watch_timeout: int = 300,
        read_timeout_slack: float = 30.0,
        connect_timeout: float = 5.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        label_selector: str | None = None,
    ) -> None:
        self.kind = kind
        self.store = store
        self._on_change = on_change
        self._namespace = namespace
        self._clock = clock or RealClock()
        self._watch_timeout = watch_timeout
        self._read_timeout = watch_timeout + read_timeout_slack
        self._connect_timeout = connect_timeout
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._label_selector = label_selector
        self._failures = 0
        self._random = random.Random()
        self.resource_version: str | None = None
        self.synced = threading.Event()
        self.relists = 0
        self._response: Any = None
        self._interrupted = False

    # -- one step ------------------------------------------------------------------------------
    def _call(self, **kwargs: Any) -> Any:
        if self._label_selector:
            kwargs["label_selector"] = self._label_selector
        kwargs["_preload_content"] = False
        if self._namespace and self.kind.list_in is not None:
            return self.kind.list_in(self._namespace, **kwargs)
        return self.kind.list_all(**kwargs)

    def relist(self) -> None:
        response = self._call(_request_timeout=(self._connect_timeout, self._read_timeout))
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        records: dict[Key, Any] = {}
        for item in body.get("items") or []:
            record = self._decode(item)
            if record is not None:
                records[record_key(record)] = record
        for old, new in self.store.replace(records):
            self._emit(old, new)
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.relists += 1
        self.synced.set()

    def watch(self, stop: threading.Event | None = None) -> None:
        """Stream events from :attr:`resource_version` until the server ends the stream."""
        response = self._call(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout,
            _request_timeout=(self._connect_timeout, self._read_timeout),
        )
        self._response = response
        try:
            for event in _events(response):
                if stop is not None and stop.is_set():
                    return
                self._handle(event)
        finally:
            self._response = None
            response.release_conn()

    def step(self, stop: threading.Event | None = None) -> None:
        """One list or one watch stream, with errors turned into back-off or relist."""
        try:
            if not self.resource_version:
                self.relist()
            else:
                self.watch(stop)
            self._failures = 0
        except Gone:
            log.info("watch expired, relisting", extra={"kind": self.kind.name})
            self.resource_version = None
        except ApiException as exc:
            if exc.status == 410:
                self.resource_version = None
                return
            retry_after = _retry_after(exc)
            self._back_off(f"API error {exc.status}", retry_after)
        except (Urllib3Error, OSError) as exc:
            if self._interrupted:
                return  # our own shutdown cut the stream: nothing to report, nothing to wait for
            # Dropped connections and read time-outs: resume from the same resourceVersion.
            self._back_off(f"{type(exc).__name__}: {exc}", None)

    def _back_off(self, reason: str, retry_after: float | None) -> None:
        self._failures += 1
        base = min(self._backoff_max, self._backoff_base * 2 ** (self._failures - 1))
        delay = max(retry_after or 0.0, base / 2 + self._random.uniform(0, base / 2))
        log.warning("watch interrupted", extra={"kind": self.kind.name, "reason": reason, "retry_in": round(delay, 2)})
        self._clock.sleep(delay)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(stop)

    def interrupt(self) -> None:
        """Unblock a stream in progress (used on shutdown)."""
        self._interrupted = True
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:
                try:
                    response.close()
                except Exception:
                    log.debug("could not close watch response", exc_info=True)

    # -- events --------------------------------------------------------------------------------
    def _decode(self, raw: Mapping[str, Any]) -> Any:
        try:
            return self.kind.decode(raw)
        except Exception:
            # One malformed object must never stop the watch of all the others.
            log.warning("undecodable object skipped", extra={"kind": self.kind.name}, exc_info=True)
            return None

    def handle_event(self, event: Mapping[str, Any]) -> None:
        """Apply one decoded watch event (the per-event path; benchmarks replay streams through it)."""
        self._handle(event)

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "expired"))
            raise ApiException(status=int(obj.get("code") or 500), reason=str(obj.get("message") or "watch error"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if version:
                self.resource_version = str(version)
            return
        record = self._decode(obj)
        if record is not None:
            key = record_key(record)
            if kind == "DELETED":
                old = self.store.remove(key)
                if old is not None:
                    self._emit(old, None)
            else:
                old = self.store.put(key, record)
                if old != record:
                    self._emit(old, record)
        if version:
            self.resource_version = str(version)

    def _emit(self, old: Any, new: Any) -> None:
        try:
            self._on_change(old, new)
        except Exception:
            log.exception("change handler failed", extra={"kind": self.kind.name})


def _events(response: Any) -> Iterator[dict[str, Any]]:
    # One split per chunk: splitting a line off the front at a time copied the rest of the chunk
    # for every line (quadratic in the lines a chunk holds — an initial burst holds thousands).
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


def _retry_after(exc: ApiException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
