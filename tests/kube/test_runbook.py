"""docs/operations.md's runbook "Releasing readiness gates by hand", run as written with the real kubectl.

kubectl is a real client (installed on these machines); the API emulator answers it.  What kubectl
sends was checked against the emulator's request log: discovery, ``GET pods`` (the list for the
go-template), then per pod ``GET pods/NAME/status`` and ``PATCH pods/NAME/status`` with
``application/strategic-merge-patch+json`` — the status subresource, merged by condition ``type``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import pod

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
GATE = "target-health.negsync.io/web"
OTHER = "target-health.negsync.io/api"


def runbook_block() -> str:
    text = DOC.read_text()
    found = re.search(r"<!-- runbook: release-gates[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert found, "the runbook block is missing from docs/operations.md"
    return found.group(1)


def condition(kube: KubeApiEmulator, name: str, kind: str) -> dict | None:
    obj = kube.get("v1", "Pod", "shop", name) or {}
    return next((c for c in obj["status"].get("conditions") or [] if c["type"] == kind), None)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_release_runbook_opens_every_gate_of_the_binding_and_nothing_else(kube: KubeApiEmulator,
                                                                             tmp_path: Path) -> None:
    kube.create(pod("web-0", ip="10.1.0.1", gates=[GATE]))
    waiting = pod("web-1", ip="10.1.0.2", gates=[GATE, OTHER])
    waiting["status"]["conditions"].append({"type": GATE, "status": "False", "reason": "RegistrationInProgress",
                                            "message": "waiting", "lastTransitionTime": "2026-01-01T00:00:00Z"})
    kube.create(waiting)
    kube.create(pod("api-0", ip="10.1.0.3", gates=[OTHER]))
    kube.create(pod("plain", ip="10.1.0.4"))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", runbook_block()], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("web-0", "web-1"):
        released = condition(kube, name, GATE)
        assert released is not None and released["status"] == "True" and released["reason"] == "ReleasedByHand"
    assert condition(kube, "web-1", OTHER) is None  # the other binding's gate is untouched
    assert condition(kube, "web-1", "ContainersReady") is not None  # other conditions stay (merged by type)
    assert condition(kube, "api-0", GATE) is None and condition(kube, "plain", GATE) is None
    patches = [r for r in kube.requests if r.method == "PATCH"]
    assert {r.path for r in patches} == {"/api/v1/namespaces/shop/pods/web-0/status",
                                         "/api/v1/namespaces/shop/pods/web-1/status"}
    assert {r.content_type for r in patches} == {"application/strategic-merge-patch+json"}
