"""Scheduling that cannot deadlock, and who may reach which port (NetworkPolicy), from the rendered manifests.

The rules checked here are the scheduler's and the NetworkPolicy API's own semantics:
* topology spread: ``nodeTaintsPolicy: Honor`` leaves nodes whose taints the pod does not tolerate
  out of the skew computation; ``matchLabelKeys: [pod-template-hash]`` counts skew per ReplicaSet
  (KEP-3243 / KEP-3094, Kubernetes API reference "TopologySpreadConstraint");
* PDB ``unhealthyPodEvictionPolicy: AlwaysAllow`` lets a not-Ready pod be evicted regardless of
  the budget (KEP-3017, policy/v1 PodDisruptionBudgetSpec);
* a NetworkPolicy ingress rule admits a peer when *any* ``from`` entry matches and the port is
  listed; a rule without ``from`` admits everyone (networking.k8s.io/v1 NetworkPolicyIngressRule).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.test_manifests import DEPLOY, REPO, base_docs, controller_container, find, render

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return base_docs()


def quantity(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", text).groups()  # type: ignore[union-attr]
    return int(number) * (MIB if unit == "Mi" else 1024 * MIB)


def measured_peak_rss() -> int:
    """The benchmark's peak RSS as docs/performance.md states it (the sizing's source)."""
    text = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    match = re.search(r"\|\s*peak RSS[^|]*\|\s*([\d,.]+)\s*MiB\s*\|", text)
    assert match, "docs/performance.md states no peak RSS figure to size the Deployment from"
    return int(float(match.group(1).replace(",", "")) * MIB)


# ---------------------------------------------------------------------------------------------
# scheduling


def test_topology_spread_ignores_untolerated_nodes_and_old_replicasets(base: list[dict[str, Any]]) -> None:
    pod = find(base, "Deployment", "negsync")["spec"]["template"]["spec"]
    constraints = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints:
        # A tainted node (or Fargate's virtual node) counted as an empty domain keeps the surge pod Pending.
        assert constraint.get("nodeTaintsPolicy") == "Honor", constraint["topologyKey"]
        # Skew within one ReplicaSet: the pods a rollout replaces never block their successors.
        assert constraint.get("matchLabelKeys") == ["pod-template-hash"], constraint["topologyKey"]


def test_pdb_never_blocks_a_drain_on_an_unhealthy_replica(base: list[dict[str, Any]]) -> None:
    pdb = find(base, "PodDisruptionBudget", "negsync")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_memory_sized_from_the_measured_peak_with_headroom(base: list[dict[str, Any]]) -> None:
    peak = measured_peak_rss()
    resources = controller_container(find(base, "Deployment", "negsync"))["resources"]
    request, limit = quantity(resources["requests"]["memory"]), quantity(resources["limits"]["memory"])
    assert request >= peak, f"request {request // MIB}Mi below the measured peak {peak // MIB}Mi: the pod would be overcommitted"
    assert limit >= 2 * peak, f"limit {limit // MIB}Mi leaves less than 2x headroom over the measured peak"
    text = (DEPLOY / "base" / "deployment.yaml").read_text(encoding="utf-8")
    assert f"peak RSS {peak // MIB} MiB" in text, "the Deployment's comment states the figure it was sized from"


# ---------------------------------------------------------------------------------------------
# NetworkPolicy


def peer_admits(peer: dict[str, Any], namespace: str, labels: dict[str, str]) -> bool:
    if set(peer) != {"namespaceSelector"}:
        raise NotImplementedError(f"peer kind not used by these manifests: {sorted(peer)}")
    selector = peer["namespaceSelector"]
    labels = {**labels, "kubernetes.io/metadata.name": namespace}  # set by the API server on every namespace
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        if expression["operator"] != "In":
            raise NotImplementedError(expression["operator"])
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def admitted(policy: dict[str, Any], *, port: int, namespace: str, labels: dict[str, str] | None = None) -> bool:
    for rule in policy["spec"]["ingress"]:
        if port not in {p["port"] for p in rule.get("ports") or []}:
            continue
        peers = rule.get("from")
        if not peers or any(peer_admits(peer, namespace, labels or {}) for peer in peers):
            return True
    return False


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    return find(render(DEPLOY / "overlays" / "gke"), "NetworkPolicy", "negsync")


@pytest.mark.parametrize(("namespace", "labels", "expected"), [
    ("monitoring", {}, True),
    ("gmp-system", {}, True),
    ("observability", {"negsync.io/metrics-scraper": "enabled"}, True),  # any namespace, by label
    ("observability", {}, False),
    ("shop", {"negsync.io/readiness-gate-inject": "enabled"}, False),
])
def test_metrics_scraping_from_a_configurable_namespace_selector(policy: dict[str, Any], namespace: str,
                                                                 labels: dict[str, str], expected: bool) -> None:
    assert admitted(policy, port=9090, namespace=namespace, labels=labels) is expected


@pytest.mark.parametrize(("labels", "expected"), [
    ({"negsync.io/readiness-gate-inject": "enabled"}, True),
    ({"negsync.io/drain-wait": "enabled"}, True),
    ({}, False),  # a namespace that uses neither cannot queue waiters
    ({"negsync.io/metrics-scraper": "enabled"}, False),
])
def test_drain_wait_only_from_namespaces_that_use_negsync(policy: dict[str, Any], labels: dict[str, str],
                                                          expected: bool) -> None:
    assert admitted(policy, port=8080, namespace="shop", labels=labels) is expected


def test_webhook_port_open_to_the_api_server(policy: dict[str, Any]) -> None:
    assert admitted(policy, port=9443, namespace="anything")


def test_readme_selector_patch_renders(tmp_path: Any) -> None:
    """The overlay patch deploy/README.md shows for a custom scraper selector renders and takes effect."""
    import os

    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(# overlay: custom metrics scrapers\n.*?)```", readme, re.S)
    assert match, "deploy/README.md shows no custom-scraper patch"
    rel = os.path.relpath(DEPLOY / "overlays" / "gke", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(match.group(1).replace("../../overlays/gke", rel), encoding="utf-8")
    patched = find(render(tmp_path), "NetworkPolicy", "negsync")
    assert admitted(patched, port=9090, namespace="telemetry", labels={"team": "observability"})
    assert not admitted(patched, port=9090, namespace="monitoring")
    assert admitted(patched, port=8080, namespace="shop", labels={"negsync.io/readiness-gate-inject": "enabled"})


# ---------------------------------------------------------------------------------------------
# private GKE clusters


def test_private_gke_firewall_rule_opens_the_webhook_container_port(base: list[dict[str, Any]]) -> None:
    """GKE's own rule admits the control plane on 443/10250 only; the Service's 443 reaches the pod on 9443."""
    text = (REPO / "docs" / "quickstart-gke.md").read_text(encoding="utf-8")
    section = re.search(r"^### Private clusters: open the webhook port\n(.*?)(?=^#)", text, re.S | re.M)
    assert section, "docs/quickstart-gke.md has no private-cluster firewall section"
    commands = " ".join(re.findall(r"```sh\n(.*?)```", section.group(1), re.S)).replace("\\\n", " ")
    create = re.search(r"gcloud compute firewall-rules create (.*?)(?:\n|$)", commands)
    assert create, "no firewall rule is created"
    flags = create.group(1)
    container = controller_container(find(base, "Deployment", "negsync"))
    webhook_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "webhook")
    assert f"--rules tcp:{webhook_port}" in flags
    assert "--direction INGRESS" in flags and "--action ALLOW" in flags
    # Source: the control plane's range; target: the nodes (GKE's master rule's target tags).
    assert "--source-ranges $CONTROL_PLANE_RANGE" in flags and "--target-tags $NODE_TAG" in flags
    assert "privateClusterConfig.masterIpv4CidrBlock" in commands
    assert re.search(r'NODE_TAG=\$\(gcloud compute firewall-rules list --filter "name~\^gke-\$CLUSTER-\[0-9a-z\]\*-master"',
                     commands)
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "quickstart-gke.md#private-clusters-open-the-webhook-port" in readme
