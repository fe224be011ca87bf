"""The in-memory provider's own bookkeeping stays bounded in a long-running demo or soak."""

from __future__ import annotations

from negsync.core.bindings import MemoryTarget
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.providers.memory import MemoryOwnershipStore, MemoryProvider

REF = TargetRef("memory", "local", "shop-web")
KEY = BindingKey("shop", "web")


def test_call_record_is_bounded_and_the_counts_stay_exact() -> None:
    provider = MemoryProvider(max_recorded_calls=100)
    provider.ensure_target(REF, binding=KEY, spec=MemoryTarget("shop-web"))
    for n in range(1_000):
        member = TargetEndpoint(f"10.0.{n // 250}.{n % 250 + 1}", 8080)
        provider.attach(REF, [member])
        provider.detach(REF, [member])
    assert len(provider.calls) == 100  # the most recent ones, not all 2,000
    assert provider.calls[-1].operation == "detach"
    assert provider.count("attach") == provider.count("detach") == 1_000
    assert provider.calls_total == 2_000


def test_unbounded_record_on_request() -> None:
    provider = MemoryProvider(max_recorded_calls=None)
    provider.ensure_target(REF, binding=KEY, spec=MemoryTarget("shop-web"))
    for n in range(300):
        provider.attach(REF, [TargetEndpoint(f"10.1.{n // 250}.{n % 250 + 1}", 8080)])
    assert len(provider.calls) == provider.count("attach") == 300


def test_the_memory_ownership_store_keeps_members_per_binding_and_target() -> None:
    store = MemoryOwnershipStore()
    other_key, other_ref = BindingKey("shop", "admin"), TargetRef("memory", "local", "shop-admin")
    a, b = TargetEndpoint("10.0.0.1", 8080), TargetEndpoint("10.0.0.2", 8080)
    store.remember(KEY, REF, [a, b])
    store.remember(other_key, REF, [b])
    store.remember(KEY, other_ref, [a])
    store.forget(KEY, REF, [b])
    assert store.owned(KEY, REF) == {a}
    assert store.owned(other_key, REF) == {b}  # another binding's record of the same target is its own
    assert store.owned(KEY, other_ref) == {a}
    assert store.owned(other_key, other_ref) == frozenset()
