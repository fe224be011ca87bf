"""The controller CLI with the configuration a Deployment's pod gets — no kubeconfig anywhere.

A pod's container sees ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` and a projected
service-account volume with ``token`` and ``ca.crt``; the kubernetes client's
``load_incluster_config`` reads those fixed paths under ``/var/run/secrets/kubernetes.io/``.  The
test must not write there (on a CI runner that is itself a pod they are the runner's own
credentials), so the child interpreter points the client library's two path constants at temp
files before it calls the real ``negsync`` entry point — the product is untouched and has no flag
for this.  The API emulator serves HTTPS with its own CA and rejects any request without the
bearer token, so the controller can only work if it trusts that CA and sends that token.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import endpoint_slice, pod, service
from tests.support.waiting import wait_for
from tests.telemetry.harness import free_port

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
GATE = "target-health.negsync.io/web"
# The child: the kubernetes client's in-cluster file paths moved to the test's files, then `negsync`.
BOOTSTRAP = (
    "import sys\n"
    "import kubernetes.config.incluster_config as incluster\n"
    "incluster.SERVICE_TOKEN_FILENAME, incluster.SERVICE_CERT_FILENAME = sys.argv[1], sys.argv[2]\n"
    "from negsync.cli import main\n"
    "raise SystemExit(main(sys.argv[3:]))\n"
)


@pytest.fixture
def cluster() -> Iterator[KubeApiEmulator]:
    with KubeApiEmulator(bookmark_interval=0.2, tls=True, token=secrets.token_urlsafe(24)) as emulator:
        yield emulator


def mount_service_account(kube: KubeApiEmulator, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True)
    token, ca = directory / "token", directory / "ca.crt"
    token.write_text(kube.token or "")
    ca.write_bytes(kube.ca_pem)
    return token, ca


def pod_env(kube: KubeApiEmulator, home: Path) -> dict[str, str]:
    host, port = kube.host_port
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")}
    return {**keep, "HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost",
            "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            # deploy/base/deployment.yaml's downward-API variables.
            "POD_NAME": "negsync-5d8f7c9b4-x2x9q", "POD_NAMESPACE": "negsync-system"}


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
    token, ca = mount_service_account(cluster, tmp_path / "serviceaccount")
    cluster.create(service())
    cluster.create(pod("web-0", ip="10.8.0.1", gates=[GATE]))
    cluster.create(endpoint_slice("web-abc", ["10.8.0.1"], pods={"10.8.0.1": "web-0"}))
    binding: dict[str, Any] = {
        "apiVersion": "negsync.io/v1alpha1", "kind": "TargetBinding", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"serviceRef": {"name": "web", "port": "http"}, "target": {"memory": {"name": "pool"}}}}
    cluster.create(binding)
    health = free_port()
    (tmp_path / "home").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP, str(token), str(ca), "controller", "--provider", "memory", "--leader-elect",
         "--health-addr", f"127.0.0.1:{health}", "--metrics-addr", "127.0.0.1:0", "--sync-min-interval", "0",
         "--health-poll-interval", "0.2"],
        cwd=ROOT, env=pod_env(cluster, tmp_path / "home"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
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
        assert lease is not None and lease["spec"]["holderIdentity"].startswith(socket.gethostname() + "_")
        # Nothing reached the server without the token (the emulator answers those 401 and records them).
        assert cluster.requests, "no request reached the API"
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=5) as ready:
            assert ready.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
