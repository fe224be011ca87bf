"""The controller CLI with the configuration a Deployment's pod gets — no kubeconfig anywhere.

``tests/support/incluster.py`` gives the child the pod's environment and service-account files;
the API emulator serves HTTPS with its own CA and rejects any request without the bearer token, so
the controller can only work if it trusts that CA and sends that token.
"""

from __future__ import annotations

import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import endpoint_slice, pod, service
from tests.support.incluster import start_in_cluster, stop
from tests.support.waiting import wait_for
from tests.telemetry.harness import free_port

pytestmark = pytest.mark.timeout(60)

GATE = "target-health.negsync.io/web"


@pytest.fixture
def cluster() -> Iterator[KubeApiEmulator]:
    with KubeApiEmulator(bookmark_interval=0.2, tls=True, token=secrets.token_urlsafe(24)) as emulator:
        yield emulator


def test_emulator_serves_https_and_requires_the_token(cluster: KubeApiEmulator) -> None:
    context = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    request = urllib.request.Request(f"{cluster.url}/api/v1/namespaces")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, context=context, timeout=5)
    assert denied.value.code == 401
    request.add_header("Authorization", "Bearer wrong")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, context=context, timeout=5)
    request.add_header("Authorization", f"Bearer {cluster.token}")
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.URLError):  # a client that does not trust the CA never gets in
        urllib.request.urlopen(request, context=ssl.create_default_context(), timeout=5)


def test_the_controller_runs_on_in_cluster_config(cluster: KubeApiEmulator, tmp_path: Path) -> None:
    cluster.create(service())
    cluster.create(pod("web-0", ip="10.8.0.1", gates=[GATE]))
    cluster.create(endpoint_slice("web-abc", ["10.8.0.1"], pods={"10.8.0.1": "web-0"}))
    binding: dict[str, Any] = {
        "apiVersion": "negsync.io/v1alpha1", "kind": "TargetBinding", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"serviceRef": {"name": "web", "port": "http"}, "target": {"memory": {"name": "pool"}}}}
    cluster.create(binding)
    health = free_port()
    proc = start_in_cluster(cluster, tmp_path, "controller", "--provider", "memory", "--leader-elect",
                            "--health-addr", f"127.0.0.1:{health}", "--metrics-addr", "127.0.0.1:0",
                            "--sync-min-interval", "0", "--health-poll-interval", "0.2")
    try:
        def gate_true() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"controller exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            obj = cluster.get("v1", "Pod", "shop", "web-0") or {}
            conditions = (obj.get("status") or {}).get("conditions") or []
            return any(c["type"] == GATE and c["status"] == "True" for c in conditions)

        wait_for(gate_true, timeout=30, what="readiness gate True through the in-cluster API")
        lease = cluster.get("coordination.k8s.io/v1", "Lease", "negsync-system", "negsync-controller")
        # The identity is the host name (a pod's host name is its name), as client-go's.
        assert lease is not None and lease["spec"]["holderIdentity"].startswith("negsync-5d8f7c9b4-x2x9q_")  # POD_NAME
        # Nothing reached the server without the token (the emulator answers those 401 and records them).
        assert cluster.requests, "no request reached the API"
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=5) as ready:
            assert ready.status == 200
    finally:
        code = stop(proc)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
