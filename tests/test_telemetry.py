"""Instruments and the reconciler's observer (:mod:`negsync.telemetry`), read back from the exposition.

Each case records through the same calls the reconciler makes and parses ``/metrics`` text with
``prometheus_client``'s parser.  That a running controller exports every documented metric is the
integration test tests/telemetry/test_metrics_endpoint.py; spans from a real reconcile are
tests/telemetry/test_traces.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.core.records import ReconcileResult
from negsync.telemetry import Telemetry, resident_bytes

KEY = BindingKey("shop", "web")
REF = TargetRef("gcp", "us-central1-a", "k8s-neg")


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry(provider="gcp")
    try:
        yield made
    finally:
        made.shutdown()


def samples(telemetry: Telemetry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in the exposition, by its sorted labels (less the exporter's otel_scope_*)."""
    return {tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel_scope_"))): s.value
            for family in text_string_to_metric_families(telemetry.exposition().decode())
            for s in family.samples if s.name == name}


def test_a_cloud_call_counts_by_provider_operation_and_outcome(telemetry: Telemetry) -> None:
    telemetry.observer.call_finished(ref=REF, operation="attach", size=40, seconds=0.2, outcome="ok")
    telemetry.observer.call_finished(ref=REF, operation="attach", size=10, seconds=0.1, outcome="ok")
    telemetry.observer.call_finished(ref=REF, operation="list", size=0, seconds=0.05, outcome="error")
    calls = samples(telemetry, "negsync_cloud_calls_total")
    assert calls == {(("operation", "attach"), ("outcome", "ok"), ("provider", "gcp")): 2.0,
                     (("operation", "list"), ("outcome", "error"), ("provider", "gcp")): 1.0}
    # Only attach/detach carry endpoints: a list call is not a zero-endpoint batch.
    sizes = samples(telemetry, "negsync_endpoints_per_call_sum")
    assert sizes == {(("operation", "attach"), ("provider", "gcp")): 50.0}


def test_reaction_latency_runs_from_the_first_change_seen_to_the_call_and_is_taken_once(telemetry: Telemetry) -> None:
    telemetry.note_change(KEY, 100.0)
    telemetry.note_change(KEY, 101.0)  # a second change before any call: the interval starts at the first
    telemetry.observer.submitted(key=KEY, ref=REF, detach=2, attach=0, at=100.5)
    telemetry.observer.submitted(key=KEY, ref=REF, detach=0, attach=3, at=102.0)  # nothing pending: not recorded
    assert samples(telemetry, "negsync_reaction_latency_seconds_count") == {
        (("operation", "detach"), ("provider", "gcp")): 1.0}
    assert samples(telemetry, "negsync_reaction_latency_seconds_sum") == {
        (("operation", "detach"), ("provider", "gcp")): 0.5}


def test_a_change_noted_after_the_cutoff_is_left_for_the_next_call(telemetry: Telemetry) -> None:
    telemetry.note_change(KEY, 50.0)
    assert telemetry.take_change(KEY, noted_before=49.0) is None
    assert telemetry.take_change(KEY, noted_before=50.0) == 50.0
    assert telemetry.take_change(KEY) is None


def test_detach_and_attach_to_healthy_latencies(telemetry: Telemetry) -> None:
    telemetry.observer.detached(ref=REF, endpoints=[], issued_at=1.0, done_at=9.0)  # nothing detached: no sample
    telemetry.observer.detached(ref=REF, endpoints=[TargetEndpoint("10.0.0.7", 80)], issued_at=1.0, done_at=1.25)
    telemetry.observer.became_healthy(ref=REF, endpoint=TargetEndpoint("10.0.0.7", 80), seconds=-0.5)
    assert samples(telemetry, "negsync_detach_latency_seconds_sum") == {(("provider", "gcp"),): 0.25}
    assert samples(telemetry, "negsync_detach_latency_seconds_count") == {(("provider", "gcp"),): 1.0}
    # A clock step cannot make a negative latency.
    assert samples(telemetry, "negsync_attach_healthy_latency_seconds_sum") == {(("provider", "gcp"),): 0.0}


def test_a_finalized_binding_leaves_the_per_binding_gauges(telemetry: Telemetry) -> None:
    telemetry.record_result(ReconcileResult(KEY), 0.01, degraded=2)
    assert samples(telemetry, "negsync_degraded_endpoints") == {(("binding", "shop/web"), ("provider", "gcp")): 2.0}
    states = samples(telemetry, "negsync_binding_endpoints")
    assert {dict(labels)["state"] for labels in states} == {"desired", "registered", "healthy", "draining"}
    telemetry.record_result(ReconcileResult(KEY, finalized=True), 0.01, degraded=0)
    assert samples(telemetry, "negsync_degraded_endpoints") == {}
    assert samples(telemetry, "negsync_binding_endpoints") == {}
    assert samples(telemetry, "negsync_reconcile_duration_seconds_count") == {
        (("binding", "shop/web"), ("provider", "gcp")): 2.0}


def test_two_telemetries_never_mix_their_figures() -> None:
    first, second = Telemetry(provider="gcp"), Telemetry(provider="aws")
    try:
        first.observer.call_finished(ref=REF, operation="detach", size=1, seconds=0.1, outcome="ok")
        assert samples(second, "negsync_cloud_calls_total") == {}
        assert len(samples(first, "negsync_cloud_calls_total")) == 1
    finally:
        first.shutdown()
        second.shutdown()


def test_resident_bytes_is_this_processes_size() -> None:
    assert 10 * 2**20 < resident_bytes() < 64 * 2**30
