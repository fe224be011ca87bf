"""The engine: each pass reads desired state afresh and hands it to the reconciler."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from negsync.core.bindings import BindingSpec, MemoryTarget
from negsync.core.engine import Engine
from negsync.core.model import BindingKey, Endpoint, TargetEndpoint, TargetRef
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding
from negsync.providers.memory import MemoryProvider
from tests.support.waiting import wait_for

KEY = BindingKey("shop", "web")
REF = TargetRef("memory", "local", "web")
SPEC = BindingSpec(service_name="web", service_port="http", target=MemoryTarget(name="web"))


def test_a_completed_transaction_requeues_the_key_and_the_next_pass_reads_desired_state_afresh() -> None:
    # Level-based: a change that lands while a call is in flight needs no event of its own; the
    # transaction's completion re-queues the key, and that pass must see the change, not a replay.
    provider = MemoryProvider()
    state = {"endpoints": (Endpoint("10.0.0.1", 8080),)}
    reads: list[tuple[Endpoint, ...]] = []

    def desired(key: BindingKey) -> DesiredBinding:
        reads.append(state["endpoints"])
        return DesiredBinding(key=key, spec=SPEC, endpoints=state["endpoints"])

    def factory(enqueue: Callable[[BindingKey, float, bool], None]) -> Reconciler:
        return Reconciler(provider=provider, enqueue=enqueue, seed=1)

    engine = Engine(reconciler_factory=factory, desired=desired, workers=1)
    provider.pause()
    engine.start()
    try:
        engine.enqueue(KEY)
        wait_for(lambda: engine.reconciler.in_flight() == 1)
        state["endpoints"] = (Endpoint("10.0.0.2", 8080),)  # changed in the caches; nothing enqueues
        provider.resume()
        wait_for(lambda: provider.members(REF) == {TargetEndpoint("10.0.0.2", 8080)})
        assert reads[0] == (Endpoint("10.0.0.1", 8080),)
        assert (Endpoint("10.0.0.2", 8080),) in reads[1:]
    finally:
        provider.resume()
        engine.stop(timeout=5)


def test_an_engine_without_a_way_to_read_desired_state_is_refused() -> None:
    with pytest.raises(TypeError, match="desired="):
        Engine(reconciler_factory=lambda enqueue: Reconciler(provider=MemoryProvider(), enqueue=enqueue))
