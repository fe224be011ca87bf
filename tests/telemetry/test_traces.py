"""Spans: one ``reconcile`` span per reconcile (attribute ``negsync.binding``) and one
``cloud.attach`` / ``cloud.detach`` span per cloud call (attribute ``negsync.target``).

An in-process Controller runs against the API emulator with the in-memory provider; an
in-memory span exporter is added to the Telemetry's own tracer provider.

An integration test, kept on purpose (the instruments one by one: tests/test_telemetry.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from negsync.app import Settings
from negsync.core.model import TargetEndpoint, TargetRef
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from negsync.telemetry import Telemetry
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import endpoint_slice
from tests.support.waiting import wait_for
from tests.telemetry.harness import seed

pytestmark = pytest.mark.timeout(60)

IPS = ["10.2.0.1", "10.2.0.2"]
REF = TargetRef("memory", "local", "traced")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(spans: InMemorySpanExporter) -> Iterator[Telemetry]:
    telemetry = Telemetry(provider="memory")
    # No public hook yet: the processor goes on the Telemetry's private tracer provider.
    telemetry._tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def controller(kube: KubeApiEmulator, provider: MemoryProvider, telemetry: Telemetry) -> Iterator[Controller]:
    api = client.ApiClient(kube.client_configuration())
    settings = Settings(workers=2, sync_min_interval=0.0, health_poll_interval=0.1, resync_period=30.0,
                        identity="traces-1", watch_timeout=5)
    ctl = Controller(api_client=api, provider=provider, settings=settings, telemetry=telemetry)
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop(timeout=5)
        api.close()


def named(exporter: InMemorySpanExporter, name: str) -> list:  # type: ignore[type-arg]
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_reconcile_and_cloud_call_spans(kube: KubeApiEmulator, controller: Controller, provider: MemoryProvider,
                                        spans: InMemorySpanExporter) -> None:
    seed(kube, IPS, target={"memory": {"name": "traced"}}, gate=False, not_ready=False)
    wait_for(lambda: provider.members(REF) == {TargetEndpoint(ip, 8080) for ip in IPS}, timeout=10,
             what="members attached")
    pods = {ip: f"web-{i}" for i, ip in enumerate(IPS)}
    stored = kube.get("discovery.k8s.io/v1", "EndpointSlice", "shop", "web-abc")
    assert stored is not None
    kube.update({**endpoint_slice("web-abc", IPS, terminating=(IPS[1],), pods=pods), "metadata": stored["metadata"]})
    wait_for(lambda: provider.members(REF) == {TargetEndpoint(IPS[0], 8080)}, timeout=10, what="member detached")
    wait_for(lambda: named(spans, "cloud.detach"), timeout=5, what="cloud.detach span")

    reconciles = named(spans, "reconcile")
    assert reconciles, [s.name for s in spans.get_finished_spans()]
    assert {s.attributes["negsync.binding"] for s in reconciles} == {"shop/web"}
    for span in reconciles:
        assert span.end_time is not None and span.end_time >= span.start_time

    attaches, detaches = named(spans, "cloud.attach"), named(spans, "cloud.detach")
    assert attaches and detaches
    for span in (*attaches, *detaches):
        assert span.attributes["negsync.target"] == str(REF)
        assert span.attributes["negsync.outcome"] == "ok"
        assert span.end_time >= span.start_time
    assert sum(s.attributes["negsync.endpoints"] for s in attaches) == len(IPS)
    assert sum(s.attributes["negsync.endpoints"] for s in detaches) == 1
    assert {s.resource.attributes["service.name"] for s in spans.get_finished_spans()} == {"negsync"}


def test_a_failed_cloud_call_is_a_span_with_outcome_error(kube: KubeApiEmulator, controller: Controller,
                                                          provider: MemoryProvider, spans: InMemorySpanExporter) -> None:
    from negsync.errors import TransientError

    provider.fail_next("attach", TransientError("injected throttling"))
    seed(kube, IPS, target={"memory": {"name": "traced"}}, gate=False, not_ready=False)
    wait_for(lambda: provider.members(REF) == {TargetEndpoint(ip, 8080) for ip in IPS}, timeout=15,
             what="members attached after the retry")
    outcomes = [s.attributes["negsync.outcome"] for s in named(spans, "cloud.attach")]
    assert "error" in outcomes and "ok" in outcomes
