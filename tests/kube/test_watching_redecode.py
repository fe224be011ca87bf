"""The watch path decodes an update against the record it replaces (ResourceKind.redecode)."""

from __future__ import annotations

from typing import Any

from negsync.kube.caches import Caches, decode_slice
from negsync.kube.watching import ResourceKind, Watcher
from tests.kube.conftest import endpoint_slice


def _no_list(**_: Any) -> Any:
    raise AssertionError("not listed in this test")


def test_an_update_shares_every_unchanged_endpoint_with_the_cached_record() -> None:
    caches = Caches()
    changes: list[tuple[Any, Any]] = []
    watcher: Watcher[Any] = Watcher(kind=ResourceKind("endpointslices", _no_list, None, decode_slice, decode_slice),
                                    store=caches.slices, on_change=lambda old, new: changes.append((old, new)))
    watcher.handle_event({"type": "ADDED", "object": endpoint_slice("web-a", ["10.1.0.1", "10.1.0.2"])})
    watcher.handle_event({"type": "MODIFIED",
                          "object": endpoint_slice("web-a", ["10.1.0.1", "10.1.0.2"], terminating=("10.1.0.2",))})
    old, new = changes[-1]
    assert new == decode_slice(endpoint_slice("web-a", ["10.1.0.1", "10.1.0.2"], terminating=("10.1.0.2",)))
    assert new.endpoints[0] is old.endpoints[0]
    assert new.endpoints[1].terminating and not old.endpoints[1].terminating
    # The same object again: no change reaches the handlers.
    watcher.handle_event({"type": "MODIFIED",
                          "object": endpoint_slice("web-a", ["10.1.0.1", "10.1.0.2"], terminating=("10.1.0.2",))})
    assert len(changes) == 2
