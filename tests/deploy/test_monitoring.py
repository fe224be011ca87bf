"""deploy/monitoring/: valid against the vendored CRD schemas, alerts as documented, queries on exported metrics.

Schema validation is stricter than the API server: a structural CRD *prunes* unknown fields
silently, so a misspelt field would apply cleanly and do nothing; here it is an error
(``additionalProperties: false`` added to every object schema that neither lists
``additionalProperties`` nor preserves unknown fields).  The exported metric names are the table in
docs/operations.md, which tests/telemetry/test_metrics_endpoint.py checks both ways against a live
``/metrics``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.test_manifests import DEPLOY, REPO

SCHEMAS = Path(__file__).resolve().parent / "schemas"
MONITORING = DEPLOY / "monitoring"
OPERATIONS = REPO / "docs" / "operations.md"
RUNBOOK_BASE = "https://github.com/negsync/negsync/blob/main/docs/operations.md#"
SEVERITIES = {"critical", "warning", "info"}

KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com.v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com.v1.json",
    ("monitoring.googleapis.com/v1", "PodMonitoring"): "podmonitoring.monitoring.googleapis.com.v1.json",
}

# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate", "histogram_quantile",
    "absent", "time", "or", "and", "unless", "le", "on", "ignoring", "group_left", "group_right", "offset",
}


def strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def monitoring_objects() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(MONITORING.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and not str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/"):
                found.append((path, doc))
    return found


def schema_errors(doc: dict[str, Any]) -> list[str]:
    name = KINDS[(doc["apiVersion"], doc["kind"])]
    schema = strict(json.loads((SCHEMAS / name).read_text(encoding="utf-8")))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def exported_metrics() -> set[str]:
    """Every series name negsync exposes: the documented families plus histogram/counter suffixes."""
    families = re.findall(r"^\| `(negsync_[a-z0-9_]+)` \| (counter|gauge|histogram) \|", OPERATIONS.read_text(), re.M)
    assert families, "docs/operations.md has no metric table"
    names = set()
    for name, kind in families:
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_ranges)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_groupings))
    return {t for t in tokens if t not in PROMQL_WORDS and not t.startswith("$")}


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def rules() -> list[dict[str, Any]]:
    (rule,) = [doc for _, doc in monitoring_objects() if doc["kind"] == "PrometheusRule"]
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


# ---------------------------------------------------------------------------------------------


def test_every_monitoring_kind_is_present_and_valid_against_its_crd_schema() -> None:
    objects = monitoring_objects()
    assert {(d["apiVersion"], d["kind"]) for _, d in objects} == set(KINDS)
    for path, doc in objects:
        errors = schema_errors(doc)
        assert not errors, f"{path.relative_to(REPO)}: {errors}"


@pytest.mark.parametrize(("kind", "path", "value"), [
    ("ServiceMonitor", ("spec", "endpoints", 0, "intervall"), "30s"),  # a typo the API server would prune
    ("PodMonitoring", ("spec", "endpoints", 0, "port"), {"name": "metrics"}),
    ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "for"), "2 minutes"),
])
def test_the_schema_check_catches_broken_objects(kind: str, path: tuple[Any, ...], value: Any) -> None:
    (doc,) = [d for _, d in monitoring_objects() if d["kind"] == kind]
    broken = json.loads(json.dumps(doc))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(broken)


def test_scrapers_select_the_metrics_port() -> None:
    objects = {d["kind"]: d for _, d in monitoring_objects()}
    base = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(
        (DEPLOY / "base" / "service.yaml").read_text()) if d}
    metrics_service = base[("Service", "negsync-metrics")]
    monitor = objects["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"] == metrics_service["metadata"]["labels"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in metrics_service["spec"]["ports"]]
    deployment = next(d for d in yaml.safe_load_all((DEPLOY / "base" / "deployment.yaml").read_text())
                      if d and d["kind"] == "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    podmonitoring = objects["PodMonitoring"]
    assert podmonitoring["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in podmonitoring["spec"]["endpoints"]} <= ports


def test_every_documented_alert_is_in_the_rule_with_severity_and_a_runbook_that_exists() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text[text.index("### Alerts"):text.index("\n## ", text.index("### Alerts"))]
    documented = dict(re.findall(r"^\| `(Negsync[A-Za-z]+)` \| (\w+) \|", section, re.M))
    in_rule = {r["alert"]: r for r in rules()}
    assert set(documented) == set(in_rule), (f"only documented: {sorted(set(documented) - set(in_rule))}; "
                                             f"only in the rule: {sorted(set(in_rule) - set(documented))}")
    anchors = heading_anchors(text)
    for name, rule in in_rule.items():
        severity = rule["labels"]["severity"]
        assert severity in SEVERITIES and severity == documented[name], name
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), name
        assert url[len(RUNBOOK_BASE):] in anchors, f"{name}: {url} points at no heading of docs/operations.md"
        assert rule["annotations"].get("summary"), name


def test_alert_expressions_name_only_exported_metrics() -> None:
    exported = exported_metrics()
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']}: {sorted(names - exported)} not exported"


def test_dashboard_loads_and_every_query_names_an_exported_metric() -> None:
    dashboard = json.loads((MONITORING / "grafana" / "negsync-dashboard.json").read_text(encoding="utf-8"))
    exported = exported_metrics()
    assert dashboard["title"] and dashboard["uid"]
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= exported, f"{panel['title']}: {sorted(names - exported)} not exported"
            queried |= names
    # The panels the issue asks for: sync latency, calls by outcome, endpoints, gate latency,
    # detach latency, drain-wait outcomes, webhook calls.
    for needed in ("negsync_reconcile_duration_seconds_bucket", "negsync_cloud_calls_total",
                   "negsync_binding_endpoints", "negsync_gate_latency_seconds_bucket",
                   "negsync_detach_latency_seconds_bucket", "negsync_drain_wait_responses_total",
                   "negsync_webhook_requests_total"):
        assert needed in queried, needed


def test_metric_name_extraction() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, provider) (rate(negsync_gate_latency_seconds_bucket'
                        '{reason="Timeout"}[30m]))) > 300') == {"negsync_gate_latency_seconds_bucket"}
    assert metric_names("max(negsync_leader) < 1 or absent(negsync_leader)") == {"negsync_leader"}
    assert metric_names("min(x_total) - time() < 7 * 86400") == {"x_total"}
