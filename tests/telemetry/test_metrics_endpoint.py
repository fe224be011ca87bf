"""`curl /metrics` on a running `negsync controller --provider memory` shows every documented metric.

The real CLI runs as a subprocess against the Kubernetes API emulator.  The scenario gives every
instrument data: three gated pods are registered (cloud calls, endpoints per call, reconcile
duration), the provider reports them healthy after 0.3 s so their gates flip (gate latency), then
one endpoint turns terminating and is detached (detach latency).

An integration test, kept on purpose (the instruments one by one: tests/test_telemetry.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import endpoint_slice
from tests.kube.webhook.support import webhook_configuration
from tests.support.waiting import wait_for
from tests.telemetry.harness import GATE, ControllerProcess, free_port, http_get, seed

pytestmark = pytest.mark.timeout(60)

IPS = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
BINDING = "shop/web"

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

# The families the issue requires, with their Prometheus type (names as exposed).
REQUIRED = {
    "negsync_reconcile_duration_seconds": "histogram",
    "negsync_cloud_calls_total": "counter",
    "negsync_cloud_call_duration_seconds": "histogram",
    "negsync_endpoints_per_call": "histogram",
    "negsync_binding_endpoints": "gauge",
    "negsync_degraded_endpoints": "gauge",
    "negsync_queue_depth": "gauge",
    "negsync_queue_wait_seconds": "gauge",
    "negsync_gate_latency_seconds": "histogram",
    "negsync_detach_latency_seconds": "histogram",
    "negsync_leader": "gauge",
    "negsync_webhook_requests_total": "counter",
    "negsync_webhook_certificate_expiry_timestamp_seconds": "gauge",
    "negsync_webhook_trusted": "gauge",
    "negsync_drain_wait_responses_total": "counter",
    "negsync_drain_waiters": "gauge",
    "negsync_process_resident_memory_bytes": "gauge",
}




def documented() -> dict[str, str]:
    """Every metric in docs/operations.md's metric table: ``| `name` | type | ...``."""
    rows = re.findall(r"^\| `(negsync_[a-z0-9_]+)` \| (counter|gauge|histogram) \|", OPERATIONS.read_text(), re.M)
    return dict(rows)


def test_operations_doc_lists_every_required_metric() -> None:
    docs = documented()
    assert {name: docs.get(name) for name in REQUIRED} == REQUIRED


def families(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    """name -> (type, samples) with the exposition's own family names (``_total`` kept for counters)."""
    out: dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = (family.type, [(s.name, dict(s.labels), float(s.value)) for s in family.samples])
    return out


def endpoint_gauges(text: str) -> dict[str, float]:
    samples = families(text).get("negsync_binding_endpoints", ("gauge", []))[1]
    return {labels["state"]: value for _, labels, value in samples if labels.get("binding") == BINDING}


def gate_status(kube: KubeApiEmulator, name: str) -> str:
    obj = kube.get("v1", "Pod", "shop", name) or {}
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == GATE:
            return str(condition["status"])
    return ""


def count(text: str, family: str, **labels: str) -> float:
    samples = families(text).get(family, ("", []))[1]
    suffix = "_count" if family.endswith("_seconds") or family == "negsync_endpoints_per_call" else ""
    return sum(v for name, got, v in samples
               if (not suffix or name.endswith(suffix)) and all(got.get(k) == want for k, want in labels.items()))


def test_metrics_endpoint_shows_every_documented_metric(kube: KubeApiEmulator) -> None:
    seed(kube, IPS, target={"memory": {"name": "x"}}, gate=True)
    kube.create(webhook_configuration())  # the webhook serves and puts its CA in (trust and expiry metrics)
    ctl = ControllerProcess(kube, "--provider", "memory", "--log-level", "debug", "--memory-attach-delay", "0.3s",
                            "--health-poll-interval", "0.2s", "--sync-min-interval", "0",
                            "--webhook-addr", f"127.0.0.1:{free_port()}")
    ctl.start()
    try:
        ctl.wait_ready()
        assert http_get(ctl.url("/drain-wait?pod=shop/nope&timeout=1"))[0] == 404
        # Gates flip only once the provider reports the members healthy.
        wait_for(lambda: all(gate_status(kube, f"web-{i}") == "True" for i in range(len(IPS))), timeout=15,
                 what="all gates True", describe=ctl.tail)
        wait_for(lambda: endpoint_gauges(ctl.metrics()) == {"desired": 3, "registered": 3, "healthy": 3, "draining": 0},
                 timeout=10, what="3 healthy endpoints in the gauges", describe=lambda: ctl.metrics())

        # One endpoint starts terminating: it leaves the target group (a detach call).
        terminating = endpoint_slice("web-abc", IPS, terminating=("10.1.0.3",),
                                     pods={ip: f"web-{i}" for i, ip in enumerate(IPS)})
        stored = kube.get("discovery.k8s.io/v1", "EndpointSlice", "shop", "web-abc")
        assert stored is not None
        kube.update({**terminating, "metadata": stored["metadata"]})
        wait_for(lambda: endpoint_gauges(ctl.metrics()) == {"desired": 2, "registered": 2, "healthy": 2, "draining": 0},
                 timeout=10, what="2 endpoints after the detach", describe=lambda: ctl.metrics())
        text = wait_for(lambda: (t := ctl.metrics()) and count(t, "negsync_detach_latency_seconds") >= 1 and t,
                        timeout=10, what="detach latency recorded")

        found = families(text)
        expected = {**documented(), **REQUIRED}
        missing = sorted(set(expected) - set(found))
        assert not missing, f"documented metrics not exposed: {missing}\n{text}"
        for name, kind in expected.items():
            assert found[name][0] == kind, f"{name}: {found[name][0]} != {kind}"
        undocumented = sorted(n for n in found if n.startswith("negsync_") and n not in expected)
        assert not undocumented, f"exposed but not in docs/operations.md: {undocumented}"
        # A valid exposition has each series once (two views on one instrument would repeat it).
        series = Counter(line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#"))
        repeated = sorted(s for s, n in series.items() if n > 1)
        assert not repeated, f"series exposed more than once: {repeated[:5]}"

        assert count(text, "negsync_cloud_calls_total", operation="attach", outcome="ok", provider="memory") >= 1
        assert count(text, "negsync_cloud_calls_total", operation="detach", outcome="ok", provider="memory") >= 1
        assert count(text, "negsync_cloud_call_duration_seconds", operation="attach") >= 1
        assert count(text, "negsync_endpoints_per_call", operation="attach") >= 1
        assert count(text, "negsync_reconcile_duration_seconds", binding=BINDING) >= 2
        assert count(text, "negsync_gate_latency_seconds", reason="LoadBalancerHealthy") == len(IPS)
        # Histogram sums: 3 members attached and 1 detached in total.
        sums = {labels["operation"]: v for name, labels, v in found["negsync_endpoints_per_call"][1]
                if name.endswith("_sum")}
        assert sums == {"attach": 3, "detach": 1}
        degraded = [v for _, labels, v in found["negsync_degraded_endpoints"][1] if labels.get("binding") == BINDING]
        assert degraded == [0]
        assert [v for *_, v in found["negsync_leader"][1]] == [1]
        assert [v for *_, v in found["negsync_queue_depth"][1]] == [0]
        assert [v for *_, v in found["negsync_webhook_trusted"][1]] == [1]
        assert [(labels["code"], v) for _, labels, v in found["negsync_drain_wait_responses_total"][1]] == [("404", 1)]
        assert 10 << 20 < found["negsync_process_resident_memory_bytes"][1][0][2] < 1 << 30

        code = ctl.terminate(timeout=10)
    finally:
        ctl.stop()
    assert code == 0, ctl.tail()

    lines = [line for line in ctl.stderr if line.strip()]
    assert lines, "no log output"
    messages = set()
    for line in lines:
        record = json.loads(line)  # every stderr line is one JSON object
        assert isinstance(record, dict)
        assert {"ts", "level", "logger", "msg"} <= set(record), line
        assert record["level"] in ("debug", "info", "warning", "error", "critical")
        messages.add(record["msg"])
    assert {"controller started", "controller stopped"} <= messages
    assert any(json.loads(line)["level"] == "debug" for line in lines), "--log-level debug shows debug lines"
    assert not [line for line in ctl.stdout if line.strip()], "nothing is printed on stdout"
