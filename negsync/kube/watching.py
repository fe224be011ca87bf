"""List-then-watch for one resource kind, feeding a :class:`~negsync.kube.caches.Store`.

The Python client has no informer, so this is one: list (raw JSON, no models), remember the
list's resourceVersion, watch from it with ``allowWatchBookmarks``, and keep the resourceVersion
current from every event and bookmark.  The loop is deliberately small — :meth:`Watcher.step`
does one list or one watch stream and returns — so tests can drive it a step at a time.  (Just
over 450 lines, one module on purpose: the list rules, the watch loop and the streaming decoder
all read and advance the same resourceVersion state.)

Lists are made as client-go's reflector makes them (``tools/cache/reflector.go`` ``list`` and
``relistResourceVersion``, ``tools/pager/pager.go``):

* the first list asks for ``resourceVersion=0`` with ``limit=500``: kube-apiserver answers it from
  its watch cache — possibly a few seconds stale, which the watch that follows makes good — and
  the watch cache ignores ``limit``, so on a real cluster it is one response; where a server pages
  anyway (watch cache disabled) the ``continue`` tokens are followed, and later relists keep
  paging;
* a relist after the watch expired (410) asks for "not older than" the last resourceVersion seen,
  unpaged (client-go: paging it would force a read from etcd), again from the watch cache;
* if the server cannot serve that version (410 Expired, or 504 "Too large resource version"), the
  reflector marks it unavailable and lists again at once with ``resourceVersion=""``: a consistent
  read from storage, paged by 500 when it was paged before;
* a continue token that expires mid-list (410) restarts as one full list, as the pager's
  ``FullListIfExpired`` does.

Memory is the point.  A response is never held whole: :func:`_list_items` decodes the body
incrementally as it streams in, each item becomes a slim record straight away and the raw JSON is
dropped, so the peak is one read buffer plus the slim records, not a 100 MB list document and its
Python objects (``benchmarks/coldmem.py`` measures it with 20,000 realistic pods).  Records reach
the store through one :meth:`Store.replace` once the list is complete, as the reflector's
``syncWith`` does, so a list that fails half-way changes nothing.

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

import codecs
import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from negsync.core.backoff import Backoff, parse_retry_after
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
    # decode(raw, the record the store holds for that object): lets a kind share what did not
    # change with the record it replaces (EndpointSlices: every unchanged endpoint).
    redecode: Callable[[Mapping[str, Any], Any], Any] | None = None


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
        page_size: int = 500,
    ) -> None:
        self.kind = kind
        self.store = store
        self._on_change = on_change
        self._namespace = namespace
        self._clock = clock or RealClock()
        self._watch_timeout = watch_timeout
        self._read_timeout = watch_timeout + read_timeout_slack
        self._connect_timeout = connect_timeout
        # Uniform in [d/2, d], d = min(backoff_max, backoff_base × 2^(n-1)): backoff_max is a hard ceiling.
        self._backoff = Backoff(base=backoff_base / 2, cap=backoff_max / 2, jitter=1.0)
        self._backoff_max = backoff_max
        self._label_selector = label_selector
        self._failures = 0
        self._random = random.Random()
        self._page_size = page_size
        # The watch resumes from here; None means "list first".
        self.resource_version: str | None = None
        # client-go's lastSyncResourceVersion, its "unavailable" flag and paginatedResult.
        self._last_sync: str = ""
        self._last_sync_unavailable = False
        self._paginated = False
        self.synced = threading.Event()
        self.relists = 0
        self._response: Any = None
        self._interrupted = False

    @property
    def step_deadline(self) -> float:
        """Longest a healthy :meth:`step` takes: a list or a stream ends by its read timeout, a back-off by its cap.

        Doubled read timeout: a relist may take several round trips.  The controller's liveness
        heartbeat (negsync.core.heartbeat) uses it.
        """
        return 2 * self._read_timeout + self._backoff_max

    # -- one step ------------------------------------------------------------------------------
    def _call(self, **kwargs: Any) -> Any:
        if self._label_selector:
            kwargs["label_selector"] = self._label_selector
        kwargs["_preload_content"] = False
        if self._namespace and self.kind.list_in is not None:
            return self.kind.list_in(self._namespace, **kwargs)
        return self.kind.list_all(**kwargs)

    def _relist_resource_version(self) -> str:
        if self._last_sync_unavailable:
            return ""  # consistent read from storage
        return self._last_sync or "0"  # "0": the first list, from the watch cache

    def relist(self) -> None:
        version = self._relist_resource_version()
        # reflector.list: page by default, but never a "not older than N" read — paging it would
        # send it to etcd — unless this server has shown it pages anyway.
        page_size = self._page_size if (self._paginated or version in ("", "0")) else 0
        try:
            records, list_version, paginated = self._list(version, page_size)
        except ApiException as exc:
            if not (exc.status == 410 or _too_large(exc)):
                raise
            log.info("list resourceVersion unavailable, listing from storage",
                     extra={"kind": self.kind.name, "resource_version": version, "status": exc.status})
            self._last_sync_unavailable = True
            records, list_version, paginated = self._list("", page_size)
        if version == "0" and paginated:
            self._paginated = True
        self._last_sync_unavailable = False
        for old, new in self.store.replace(records):
            self._emit(old, new)
        self.resource_version = list_version
        self._last_sync = list_version
        self.relists += 1
        self.synced.set()

    def _list(self, version: str, page_size: int) -> tuple[dict[Key, Any], str, bool]:
        """One complete list (every page) decoded into slim records: (records, resourceVersion, paged)."""
        records: dict[Key, Any] = {}
        token = ""
        paged = False
        while True:
            kwargs: dict[str, Any] = {"_request_timeout": (self._connect_timeout, self._read_timeout)}
            if page_size:
                kwargs["limit"] = page_size
            if token:
                # pager.go clears resourceVersion on continuations ("specifying resource version
                # is not allowed when using continue").
                kwargs["_continue"] = token
            elif version:
                kwargs["resource_version"] = version
            try:
                meta = self._list_page(kwargs, records)
            except ApiException as exc:
                if exc.status != 410 or not token:
                    raise
                # pager.go FullListIfExpired: the snapshot is gone; one full list at the original
                # resourceVersion replaces the pages read so far.
                log.info("continue token expired, listing in full", extra={"kind": self.kind.name})
                records.clear()
                kwargs = {"_request_timeout": (self._connect_timeout, self._read_timeout)}
                if version:
                    kwargs["resource_version"] = version
                meta = self._list_page(kwargs, records)
                return records, str(meta.get("resourceVersion") or ""), paged
            token = str(meta.get("continue") or "")
            if not token:
                return records, str(meta.get("resourceVersion") or ""), paged
            paged = True

    def _list_page(self, kwargs: dict[str, Any], records: dict[Key, Any]) -> dict[str, Any]:
        response = self._call(**kwargs)
        try:
            meta: dict[str, Any] = {}
            for item in _list_items(response.stream(_READ_CHUNK, decode_content=True), meta):
                record = self._decode(item)
                if record is not None:
                    records[record_key(record)] = record
            return meta
        finally:
            response.release_conn()

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
            retry_after = parse_retry_after((exc.headers or {}).get("Retry-After"))
            self._back_off(f"API error {exc.status}", retry_after)
        except (Urllib3Error, OSError) as exc:
            if self._interrupted:
                return  # our own shutdown cut the stream: nothing to report, nothing to wait for
            # Dropped connections and read time-outs: resume from the same resourceVersion.
            self._back_off(f"{type(exc).__name__}: {exc}", None)

    def _back_off(self, reason: str, retry_after: float | None) -> None:
        self._failures += 1
        delay = max(retry_after or 0.0, self._backoff.delay(self._failures, rng=self._random))
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
            if self.kind.redecode is not None:
                meta = raw.get("metadata") or {}
                previous = self.store.get((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
                if previous is not None:
                    return self.kind.redecode(raw, previous)
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
                self.resource_version = self._last_sync = str(version)
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
            self.resource_version = self._last_sync = str(version)

    def _emit(self, old: Any, new: Any) -> None:
        try:
            self._on_change(old, new)
        except Exception:
            log.exception("change handler failed", extra={"kind": self.kind.name})


_READ_CHUNK = 64 * 1024
_WHITESPACE = " \t\r\n"


def _list_items(chunks: Iterable[bytes], meta: dict[str, Any]) -> Iterator[Any]:
    """Yield the ``items`` of a JSON list document one by one while it streams in.

    The other top-level members (``metadata`` with ``resourceVersion`` and ``continue``, ``kind``,
    ``apiVersion``) land in ``meta``.  Only the undecoded tail of the body is buffered; each item is
    decoded with the C scanner once its closing brace has arrived (an incomplete item is retried
    when the next chunk comes, which costs little as items are small next to the chunk size).
    """
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    stream = iter(chunks)
    buf = ""
    pos = 0
    done = False

    def more() -> bool:
        nonlocal buf, pos, done
        if done:
            return False
        chunk = next(stream, None)
        if chunk is None:
            done = True
            buf = buf[pos:] + text.decode(b"", final=True)
        else:
            buf = buf[pos:] + text.decode(chunk)
        pos = 0
        return True

    def skip(chars: str) -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in chars:
                pos += 1
            if pos < len(buf) or not more():
                return

    def expect(char: str) -> None:
        nonlocal pos
        skip(_WHITESPACE)
        if pos >= len(buf) or buf[pos] != char:
            raise ValueError(f"malformed list response: expected {char!r} at {buf[pos:pos + 40]!r}")
        pos += 1

    def value() -> Any:
        nonlocal pos
        skip(_WHITESPACE)
        while True:
            try:
                decoded, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if more():
                    continue
                raise
            # A number at the very end of the buffer may continue in the next chunk.
            if end < len(buf) or done or isinstance(decoded, dict | list | str):
                pos = end
                return decoded
            if not more():
                pos = end
                return decoded

    expect("{")
    skip(_WHITESPACE)
    if pos < len(buf) and buf[pos] == "}":
        return
    while True:
        key = value()
        expect(":")
        if key == "items":
            skip(_WHITESPACE)
            if pos < len(buf) and buf[pos] == "n":  # "items": null
                value()
            else:
                expect("[")
                skip(_WHITESPACE)
                if pos < len(buf) and buf[pos] == "]":
                    pos += 1
                else:
                    while True:
                        yield value()
                        skip(_WHITESPACE)
                        if pos < len(buf) and buf[pos] == ",":
                            pos += 1
                            continue
                        expect("]")
                        break
        else:
            meta_value = value()
            if key == "metadata" and isinstance(meta_value, dict):
                meta.update(meta_value)
        skip(_WHITESPACE)
        if pos < len(buf) and buf[pos] == ",":
            pos += 1
            continue
        expect("}")
        return


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


def _too_large(exc: ApiException) -> bool:
    """504 "Too large resource version" (client-go reflector ``isTooLargeResourceVersionError``)."""
    if exc.status != 504:
        return False
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return False
    causes = ((body.get("details") or {}).get("causes") or []) if isinstance(body, dict) else []
    return any(c.get("reason") == "ResourceVersionTooLarge" for c in causes) or \
        "Too large resource version" in str(body.get("message", ""))
