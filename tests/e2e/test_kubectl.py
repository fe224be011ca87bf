"""kubectl, a real client, against the API emulator: what the docs tell users to type must work.

These pin the emulator features kubectl depends on (discovery with short names, OpenAPI v3 with
``fieldValidation``, client-side apply's GET-then-POST/PATCH, Tables with the CRD's printer columns,
watch-based ``kubectl wait``, the Events search of ``kubectl describe``); the quickstarts themselves
are executed in ``test_quickstarts.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.kubeapi import KubeApiEmulator
from tests.support.kubectl import REPO, Kubectl

pytestmark = pytest.mark.timeout(60)

TB = ("negsync.io/v1alpha1", "TargetBinding")


def rendered_deploy(tmp_path: Path, project: str = "my-project") -> Path:
    """A copy of deploy/ with the overlay edits the quickstart asks for (PROJECT_ID replaced)."""
    target = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", target)
    kustomization = target / "overlays" / "gke" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("PROJECT_ID", project))
    return target


def binding(name: str = "web", ns: str = "shop") -> dict[str, Any]:
    return {"apiVersion": TB[0], "kind": TB[1], "metadata": {"name": name, "namespace": ns},
            "spec": {"serviceRef": {"name": "web", "port": "http"}, "readinessGate": True,
                     "target": {"memory": {"name": "pool-a"}}}}


def test_apply_k_creates_every_object_and_a_second_apply_changes_nothing(
        kube: KubeApiEmulator, kubectl: Kubectl, tmp_path: Path) -> None:
    deploy = rendered_deploy(tmp_path)
    rendered = kubectl("kustomize", str(deploy / "overlays" / "gke")).stdout
    kinds = {line.split(":", 1)[1].strip() for line in rendered.splitlines() if line.startswith("kind:")}
    first = kubectl("apply", "-k", str(deploy / "overlays" / "gke")).stdout
    assert first.count(" created") == rendered.count("\nkind:") + rendered.startswith("kind:"), first
    assert "configured" not in first and "unchanged" not in first
    head = kube.resource_version
    second = kubectl("apply", "-k", str(deploy / "overlays" / "gke")).stdout
    assert " created" not in second, second
    # kubectl itself reports the PDB "configured": policy/v1's selector is patchStrategy=replace, so
    # its client-side three-way patch is never empty. The server sees a no-op and writes nothing.
    assert kube.resource_version == head, second
    # Client-side apply as on a real server: the last-applied annotation, the overlay's edits applied.
    deployment = kube.get("apps/v1", "Deployment", "negsync-system", "negsync")
    assert deployment is not None
    assert "kubectl.kubernetes.io/last-applied-configuration" in deployment["metadata"]["annotations"]
    assert "--provider=gcp" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    sa = kube.get("v1", "ServiceAccount", "negsync-system", "negsync")
    assert sa is not None
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == \
        "negsync@my-project.iam.gserviceaccount.com"
    crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "targetbindings.negsync.io")
    assert crd is not None and {"CustomResourceDefinition", "MutatingWebhookConfiguration"} <= kinds
    # The CRD is Established, so `kubectl wait --for=condition=Established` (install scripts) works.
    kubectl("wait", "--for=condition=Established", "crd/targetbindings.negsync.io", "--timeout=5s")
    # An edit re-applied is a patch, not a re-create: uid kept, field changed.
    uid = deployment["metadata"]["uid"]
    manifest = deploy / "base" / "deployment.yaml"
    manifest.write_text(manifest.read_text().replace("replicas: 2", "replicas: 3"))
    third = kubectl("apply", "-k", str(deploy / "overlays" / "gke")).stdout
    assert "deployment.apps/negsync configured" in third, third
    after = kube.get("apps/v1", "Deployment", "negsync-system", "negsync")
    assert after is not None and after["spec"]["replicas"] == 3 and after["metadata"]["uid"] == uid


def test_get_targetbindings_prints_the_crds_columns(kube: KubeApiEmulator, kubectl: Kubectl) -> None:
    kube.create(binding())
    kube.patch_status(*TB, "shop", "web", {
        "targets": ["memory/pool-a"], "endpoints": {"desired": 3, "healthy": 2},
        "conditions": [{"type": "Ready", "status": "False", "reason": "Degraded", "message": "1 unhealthy",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    out = kubectl("-n", "shop", "get", "tb").stdout.splitlines()
    assert out[0].split() == ["NAME", "SERVICE", "TARGET", "DESIRED", "HEALTHY", "READY", "AGE"]
    assert out[1].split()[:6] == ["web", "web", "memory/pool-a", "3", "2", "False"]
    # By full name and by category as well, and one object by name.
    assert kubectl("-n", "shop", "get", "targetbindings.negsync.io", "web").stdout.splitlines()[1].split()[0] == "web"
    assert "web" in kubectl("-n", "shop", "get", "negsync").stdout
    assert kubectl("-n", "shop", "get", "tb", "web", "-o", "jsonpath={.status.targets}").stdout == '["memory/pool-a"]'


def test_wait_for_ready_returns_when_the_condition_turns_true(kube: KubeApiEmulator, kubectl: Kubectl) -> None:
    kube.create(binding())
    waiting = subprocess.Popen(
        [kubectl.binary, "-n", "shop", "wait", "--for=condition=Ready", "targetbinding/web", "--timeout=20s"],
        env=kubectl.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert kube.wait_for_watches(1, timeout=10), "kubectl wait never watched"
        assert waiting.poll() is None
        kube.patch_status(*TB, "shop", "web", {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Synced", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
        out, err = waiting.communicate(timeout=15)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 0, err
    assert "targetbinding.negsync.io/web condition met" in out


def test_describe_lists_the_objects_events(kube: KubeApiEmulator, kubectl: Kubectl) -> None:
    created = kube.create(binding())
    kube.create({"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": "web.1", "namespace": "shop"},
                 "involvedObject": {"apiVersion": TB[0], "kind": TB[1], "namespace": "shop", "name": "web",
                                    "uid": created["metadata"]["uid"]},
                 "reason": "InvalidSpec", "message": "spec.target: exactly one target", "type": "Warning",
                 "source": {"component": "negsync-controller"}, "count": 1,
                 "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"})
    out = kubectl("-n", "shop", "describe", "tb", "web").stdout
    events = out[out.index("Events:"):]
    assert "InvalidSpec" in events and "spec.target: exactly one target" in events, out
    assert "negsync-controller" in events
