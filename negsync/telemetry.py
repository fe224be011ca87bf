"""OpenTelemetry set-up and the instrument names negsync exports.

Metrics go to a private Prometheus registry served on ``/metrics`` (and over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set); traces get a span per reconcile and per cloud call.
Each :class:`Telemetry` owns its own MeterProvider and registry instead of the global ones, so two
controllers in one test process never mix their figures.

Instrument names (Prometheus adds ``_total``/unit suffixes as shown in docs/operations.md):

=================================  =========  ==================================================
name                               unit       meaning
=================================  =========  ==================================================
negsync_reconcile_duration         s          one reconcile of one binding
negsync_cloud_calls                {call}     cloud calls by provider, operation and outcome
negsync_cloud_call_duration        s          one cloud call
negsync_endpoints_per_call         {endpoint} members carried by one attach/detach call
negsync_binding_endpoints          {endpoint} desired/registered/healthy/draining per binding
negsync_degraded_endpoints         {endpoint} endpoints skipped or rejected per binding
negsync_queue_depth                {key}      keys waiting in the work queue
negsync_queue_wait                 s          how long the oldest waiting key has waited
negsync_gate_latency               s          pod creation → readiness gate True
negsync_detach_latency             s          detach call issued → completed
negsync_attach_healthy_latency     s          attach call completed → first healthy report
negsync_reaction_latency           s          endpoint change seen → cloud call issued
negsync_leader                     1          1 while this replica leads
negsync_webhook_requests           {request}  admission reviews answered, by outcome
negsync_webhook_certificate_expiry_timestamp  s  not-after of the served webhook certificate
negsync_webhook_trusted            1          1 while the caBundle trusts this replica's certificate
negsync_drain_wait_responses       {response} /drain-wait answers by HTTP status code
negsync_drain_waiters              {request}  /drain-wait requests waiting now
negsync_process_resident_memory    By         resident set size of the process
=================================  =========  ==================================================

The webhook and drain-wait figures are kept by their owners (counts since start) and read at
collection time (:meth:`Telemetry.track_webhook`, :meth:`Telemetry.track_drain_wait`), so the
request paths never call into OpenTelemetry.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, generate_latest

from negsync import __version__
from negsync.core.model import BindingKey, TargetEndpoint, TargetRef
from negsync.core.observers import Observer
from negsync.core.records import ReconcileResult

log = logging.getLogger("negsync.telemetry")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
GATE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


class Telemetry:
    """Instruments plus the observer the reconciler reports to."""

    def __init__(self, *, provider: str, otlp_endpoint: str | None = None) -> None:
        self.provider_name = provider
        self.registry = CollectorRegistry()
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry, disable_target_info=True)]
        resource = Resource.create({"service.name": "negsync", "service.version": __version__})
        self._tracer_provider = TracerProvider(resource=resource)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=30_000))
            self._tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        views = [
            View(instrument_name="negsync_gate_latency", aggregation=ExplicitBucketHistogramAggregation(GATE_BUCKETS)),
            View(instrument_name="negsync_endpoints_per_call", aggregation=ExplicitBucketHistogramAggregation(SIZE_BUCKETS)),
            View(instrument_name="*duration", aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS)),
            # Named one by one: a wildcard would also match negsync_gate_latency, and two views on one
            # instrument export the same series twice (an invalid Prometheus exposition).
            *(View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS))
              for name in ("negsync_detach_latency", "negsync_attach_healthy_latency", "negsync_reaction_latency")),
        ]
        self._meter_provider = MeterProvider(metric_readers=readers, resource=resource, views=views)
        meter = self._meter_provider.get_meter("negsync", __version__)
        self.tracer: Tracer = self._tracer_provider.get_tracer("negsync", __version__)
        self.reconcile_duration = meter.create_histogram("negsync_reconcile_duration", unit="s",
                                                         description="Duration of one reconcile of one binding")
        self.cloud_calls = meter.create_counter("negsync_cloud_calls", unit="{call}",
                                                description="Cloud API calls by operation and outcome")
        self.cloud_call_duration = meter.create_histogram("negsync_cloud_call_duration", unit="s",
                                                          description="Duration of one cloud API call")
        self.endpoints_per_call = meter.create_histogram("negsync_endpoints_per_call", unit="{endpoint}",
                                                         description="Endpoints carried by one attach or detach call")
        self.gate_latency = meter.create_histogram("negsync_gate_latency", unit="s",
                                                   description="Pod creation to readiness gate True")
        self.detach_latency = meter.create_histogram("negsync_detach_latency", unit="s",
                                                     description="Detach call issued to detach completed")
        self.attach_healthy_latency = meter.create_histogram(
            "negsync_attach_healthy_latency", unit="s", description="Attach call completed to first healthy report")
        self.reaction_latency = meter.create_histogram(
            "negsync_reaction_latency", unit="s", description="Endpoint change seen to cloud call issued")
        self._lock = threading.Lock()
        self._changed_at: dict[BindingKey, float] = {}
        self._bindings: dict[BindingKey, ReconcileResult] = {}
        self._degraded: dict[BindingKey, int] = {}
        self._queue_depth = 0
        self._queue_wait = 0.0
        self._leader = 0
        meter.create_observable_gauge("negsync_binding_endpoints", [self._observe_endpoints], unit="{endpoint}",
                                      description="Endpoints per binding by state")
        meter.create_observable_gauge("negsync_degraded_endpoints", [self._observe_degraded], unit="{endpoint}",
                                      description="Endpoints skipped or rejected per binding")
        meter.create_observable_gauge("negsync_queue_depth", [lambda o: [Observation(self._queue_depth)]],
                                      unit="{key}", description="Keys waiting in the work queue")
        meter.create_observable_gauge("negsync_queue_wait", [lambda o: [Observation(self._queue_wait)]],
                                      unit="s", description="Wait of the oldest key in the work queue")
        meter.create_observable_gauge("negsync_leader", [lambda o: [Observation(self._leader)]],
                                      unit="1", description="1 while this replica is the leader")
        self._webhook: Any = None
        self._drain_wait: Any = None
        meter.create_observable_counter("negsync_webhook_requests", [self._observe_webhook_requests],
                                        unit="{request}", description="Admission reviews answered, by outcome")
        meter.create_observable_gauge("negsync_webhook_certificate_expiry_timestamp", [self._observe_webhook_expiry],
                                      unit="s", description="Unix time the served webhook certificate expires")
        meter.create_observable_gauge("negsync_webhook_trusted", [self._observe_webhook_trusted], unit="1",
                                      description="1 while the webhook caBundle trusts this replica's certificate")
        meter.create_observable_counter("negsync_drain_wait_responses", [self._observe_drain_responses],
                                        unit="{response}", description="/drain-wait answers by HTTP status code")
        meter.create_observable_gauge("negsync_drain_waiters", [self._observe_drain_waiters], unit="{request}",
                                      description="/drain-wait requests waiting now")
        meter.create_observable_gauge("negsync_process_resident_memory", [lambda o: [Observation(resident_bytes())]],
                                      unit="By", description="Resident set size of the controller process")
        self.observer = _Observer(self)

    @classmethod
    def setup(cls, *, metrics_addr: str = "", provider: str) -> Telemetry:
        return cls(provider=provider, otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))

    def track_webhook(self, webhook: Any) -> None:
        """Export ``webhook``'s answer counts, certificate expiry and trust (a WebhookServer)."""
        self._webhook = webhook

    def track_drain_wait(self, drain_wait: Any) -> None:
        """Export ``drain_wait``'s answers by status and its waiters in flight (a DrainWait)."""
        self._drain_wait = drain_wait

    def _observe_webhook_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._webhook is not None:
            for outcome, count in sorted(self._webhook.outcomes.items()):
                yield Observation(count, {"outcome": outcome})

    def _observe_webhook_expiry(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._webhook is not None:
            try:
                yield Observation(self._webhook.tls.not_after().timestamp())
            except (OSError, ValueError):
                log.warning("webhook certificate unreadable for the expiry metric")

    def _observe_webhook_trusted(self, options: CallbackOptions) -> Iterable[Observation]:
        trust = getattr(self._webhook, "trust", None)
        if trust is not None and trust.trusted is not None:
            yield Observation(1 if trust.trusted else 0)

    def _observe_drain_responses(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._drain_wait is not None:
            for code, count in sorted(self._drain_wait.answers.items()):
                yield Observation(count, {"code": str(code)})

    def _observe_drain_waiters(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._drain_wait is not None:
            yield Observation(self._drain_wait.waiting)

    # -- feeding -------------------------------------------------------------------------------
    def note_change(self, key: BindingKey, at: float) -> None:
        """An endpoint change for ``key`` was seen; the next call issued for it ends the interval."""
        with self._lock:
            self._changed_at.setdefault(key, at)

    def take_change(self, key: BindingKey, *, noted_before: float | None = None) -> float | None:
        """Pop the pending change time; with ``noted_before``, only a change seen before that instant."""
        with self._lock:
            changed = self._changed_at.get(key)
            if changed is None or (noted_before is not None and changed > noted_before):
                return None
            return self._changed_at.pop(key)

    def record_result(self, result: ReconcileResult, seconds: float, degraded: int) -> None:
        attributes = {"binding": str(result.key), "provider": self.provider_name}
        self.reconcile_duration.record(seconds, attributes)
        with self._lock:
            if result.finalized:
                self._bindings.pop(result.key, None)
                self._degraded.pop(result.key, None)
            else:
                self._bindings[result.key] = result
                self._degraded[result.key] = degraded

    def sample(self, controller: Any) -> None:
        """Poll gauges that are cheaper to read than to push (queue depth, leadership)."""
        engine = controller.engine
        self._queue_depth = len(engine.queue) if engine is not None else 0
        self._queue_wait = engine.queue.oldest_wait() if engine is not None else 0.0
        self._leader = 1 if controller.leading else 0

    def _observe_endpoints(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            results = list(self._bindings.values())
        for result in results:
            for state in ("desired", "registered", "healthy", "draining"):
                yield Observation(result.count(state), {"binding": str(result.key), "state": state,
                                                        "provider": self.provider_name})

    def _observe_degraded(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._degraded.items())
        for key, count in items:
            yield Observation(count, {"binding": str(key), "provider": self.provider_name})

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every instrument."""
        return generate_latest(self.registry)

    def add_span_processor(self, processor: Any) -> None:
        """Attach another span processor (an exporter of the caller's choosing, or a test's)."""
        self._tracer_provider.add_span_processor(processor)

    def shutdown(self) -> None:
        try:
            self._meter_provider.shutdown()
            self._tracer_provider.shutdown()
        except Exception:
            log.debug("telemetry shutdown failed", exc_info=True)


def resident_bytes() -> int:
    """This process's resident set size: /proc/self/statm on Linux, else the peak from getrusage."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


class _Observer(Observer):
    """The reconciler's :class:`~negsync.core.observers.Observer`, recording into instruments."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry

    def call_finished(self, *, ref: TargetRef, operation: str, size: int, seconds: float, outcome: str) -> None:
        attributes = {"provider": self._t.provider_name, "operation": operation, "outcome": outcome}
        self._t.cloud_calls.add(1, attributes)
        self._t.cloud_call_duration.record(seconds, attributes)
        if operation in ("attach", "detach"):
            self._t.endpoints_per_call.record(size, {"provider": self._t.provider_name, "operation": operation})
        import time

        end_ns = time.time_ns()
        span = self._t.tracer.start_span(f"cloud.{operation}", start_time=end_ns - int(seconds * 1e9), attributes={
            "negsync.target": str(ref), "negsync.endpoints": size, "negsync.outcome": outcome})
        span.end(end_time=end_ns)

    def submitted(self, *, key: BindingKey, ref: TargetRef, detach: int, attach: int, at: float) -> None:
        changed = self._t.take_change(key)
        if changed is not None:
            operation = "detach" if detach else "attach"
            self._t.reaction_latency.record(max(0.0, at - changed),
                                            {"provider": self._t.provider_name, "operation": operation})

    def detached(self, *, ref: TargetRef, endpoints: Sequence[TargetEndpoint], issued_at: float, done_at: float) -> None:
        if endpoints:
            self._t.detach_latency.record(done_at - issued_at, {"provider": self._t.provider_name})

    def became_healthy(self, *, ref: TargetRef, endpoint: TargetEndpoint, seconds: float) -> None:
        self._t.attach_healthy_latency.record(max(0.0, seconds), {"provider": self._t.provider_name})
