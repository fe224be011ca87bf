"""Endpoints bisection isolated are not blocked for good (issue 13, item 2).

A 400 for one member of a batch may be transient in all but name (a VM being recreated, a subnet
being resized), so an isolated member is retried after its own capped back-off — 5 min doubling to
1 h — and at once when what it was computed from changes (its pod, its node, the binding).  The
reconciler runs synchronously on a virtual clock; nothing here sleeps.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import pytest

from negsync.core.bindings import BindingSpec, MemoryTarget
from negsync.core.clock import VirtualClock
from negsync.core.model import BindingKey, Endpoint, PodRef, TargetEndpoint, TargetRef
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding, ReconcileResult
from negsync.providers.memory import MemoryProvider

KEY = BindingKey("shop", "web")
REF = TargetRef("memory", "local", "web")
pytestmark = pytest.mark.timeout(30)


def spec(*, gate: bool = False) -> BindingSpec:
    return BindingSpec(service_name="web", service_port="http", target=MemoryTarget(name="web"), readiness_gate=gate)


def endpoint(i: int, *, uid: str = "a", node: str = "n1") -> Endpoint:
    return Endpoint(ip=f"10.0.0.{i}", port=8080, node=node, pod=PodRef("shop", f"web-{i}", f"{uid}-{i}"))


class Sync:
    def __init__(self) -> None:
        self.clock = VirtualClock(start=1000.0)
        self.provider = MemoryProvider(clock=self.clock)
        self.desired: dict[BindingKey, DesiredBinding] = {}
        self.tries: list[TargetEndpoint] = []  # every member of every attach call, refused or not
        attach = self.provider.attach

        def counting_attach(ref: TargetRef, endpoints: Sequence[TargetEndpoint]) -> None:
            self.tries.extend(endpoints)
            attach(ref, endpoints)

        self.provider.attach = counting_attach  # type: ignore[method-assign]
        self.reconciler = Reconciler(provider=self.provider, enqueue=lambda key, delay, priority: None, clock=self.clock, seed=1,
                                     retry_base=0.01, retry_max=0.01)

        self.pod_state: dict[str, str] = {}  # what the kube layer's `inputs` reads (pod/node records)

    def set(self, endpoints: tuple[Endpoint, ...], binding: BindingSpec | None = None) -> None:
        self.desired[KEY] = DesiredBinding(key=KEY, spec=binding or spec(), endpoints=endpoints,
                                           inputs=lambda e: self.pod_state.get(e.ip))

    def reconcile(self) -> ReconcileResult:
        """Reconcile until nothing is in flight (each pass waits for the calls it started)."""
        for _ in range(20):
            result = self.reconciler.reconcile(KEY, self.desired.get(KEY))
            deadline = time.monotonic() + 5
            while self.reconciler.in_flight():
                assert time.monotonic() < deadline
                time.sleep(0.002)
            if not self.reconciler.busy() and self.reconciler.reconcile(KEY, self.desired.get(KEY)) == result:
                return result
        return self.reconciler.reconcile(KEY, self.desired.get(KEY))

    def attempts(self, member: TargetEndpoint = TargetEndpoint("10.0.0.2", 8080, "")) -> int:
        return self.tries.count(member)


def settle(sync: Sync) -> ReconcileResult:
    sync.reconcile()
    while sync.reconciler.busy():
        time.sleep(0.002)
    return sync.reconciler.reconcile(KEY, sync.desired.get(KEY))


def test_an_isolated_endpoint_is_retried_after_a_capped_doubling_backoff() -> None:
    sync = Sync()
    eps = tuple(endpoint(i) for i in range(1, 5))
    bad = TargetEndpoint("10.0.0.2", 8080, "")
    sync.provider.reject({bad})
    sync.set(eps)
    result = settle(sync)
    assert set(result.rejected) == {bad}
    assert "retried in 300s" in result.rejected[bad]
    assert sync.provider.members(REF) == {TargetEndpoint(e.ip, e.port) for e in eps} - {bad}
    assert result.requeue_after is not None and result.requeue_after <= 300
    for backoff in (300, 600, 1200, 2400, 3600, 3600):  # doubling, capped at 1 h
        before = sync.attempts()
        sync.clock.advance(backoff - 1)
        result = settle(sync)
        assert sync.attempts() == before and bad in result.rejected, f"retried before {backoff}s"
        sync.clock.advance(2)
        result = settle(sync)
        assert sync.attempts() == before + 1, f"not retried after {backoff}s"
        assert bad in result.rejected
    # Whatever made the API refuse it cleared: the next retry attaches it.
    sync.provider._rejected.discard(bad)
    sync.clock.advance(3601)
    result = settle(sync)
    assert not result.rejected and bad in sync.provider.members(REF)


@pytest.mark.parametrize("change", ["pod", "node", "binding", "pod-record"])
def test_an_isolated_endpoint_is_retried_at_once_when_its_inputs_change(change: str) -> None:
    sync = Sync()
    eps = tuple(endpoint(i) for i in range(1, 4))
    bad = TargetEndpoint("10.0.0.2", 8080, "")
    sync.provider.reject({bad})
    sync.set(eps)
    assert bad in settle(sync).rejected
    before = sync.attempts()
    sync.clock.advance(10)
    assert settle(sync).rejected and sync.attempts() == before  # nothing changed: still waiting
    if change == "pod":  # re-created with the same IP: a new UID
        sync.set(tuple(endpoint(i, uid="b") if i == 2 else endpoint(i) for i in range(1, 4)))
    elif change == "node":
        sync.set(tuple(endpoint(i, node="n2") if i == 2 else endpoint(i) for i in range(1, 4)))
    elif change == "binding":
        sync.set(eps, dataclasses.replace(spec(), readiness_gate=True))
    else:  # the pod's or node's record changed (e.g. a label), the slice did not
        sync.pod_state["10.0.0.2"] = "labels changed"
    settle(sync)
    assert sync.attempts() == before + 1  # tried again without waiting out the 5 min
