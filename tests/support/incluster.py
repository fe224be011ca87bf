"""Run ``negsync`` the way a pod of the Deployment runs: in-cluster configuration, no kubeconfig.

A pod's container sees ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` and a projected
service-account volume with ``token`` and ``ca.crt``; the kubernetes client's
``load_incluster_config`` reads those fixed paths under ``/var/run/secrets/kubernetes.io/``.  A test
must not write there (on a CI runner that is itself a pod they hold the runner's own credentials),
so the child interpreter points the client library's two path constants at temp files before it
calls the real ``negsync`` entry point — the product is untouched and has no flag for this.  Use it
with an emulator started with ``tls=True, token=...``: the child can only talk to it if it trusts
the emulator's CA and sends the token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.emulators.kubeapi import KubeApiEmulator

ROOT = Path(__file__).resolve().parents[2]
# The child: the kubernetes client's in-cluster file paths moved to the test's files, then `negsync`.
BOOTSTRAP = (
    "import sys\n"
    "import kubernetes.config.incluster_config as incluster\n"
    "incluster.SERVICE_TOKEN_FILENAME, incluster.SERVICE_CERT_FILENAME = sys.argv[1], sys.argv[2]\n"
    "from negsync.cli import main\n"
    "raise SystemExit(main(sys.argv[3:]))\n"
)


def mount_service_account(kube: KubeApiEmulator, directory: Path) -> tuple[Path, Path]:
    """The projected volume's ``token`` and ``ca.crt``."""
    directory.mkdir(parents=True, exist_ok=True)
    token, ca = directory / "token", directory / "ca.crt"
    token.write_text(kube.token or "")
    ca.write_bytes(kube.ca_pem)
    return token, ca


def pod_env(kube: KubeApiEmulator, home: Path, *, pod_name: str = "negsync-5d8f7c9b4-x2x9q",
            namespace: str = "negsync-system") -> dict[str, str]:
    """What the kubelet puts in the container's environment (plus PATH and a private HOME)."""
    host, port = kube.host_port
    home.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")}
    return {**keep, "HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost",
            "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            # deploy/base/deployment.yaml's downward-API variables.
            "POD_NAME": pod_name, "POD_NAMESPACE": namespace}


def start_in_cluster(kube: KubeApiEmulator, workdir: Path, *args: str,
                     extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``negsync <args>`` in a child with the pod's configuration; stdout/stderr are pipes."""
    token, ca = mount_service_account(kube, workdir / "serviceaccount")
    env = {**pod_env(kube, workdir / "home"), **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-c", BOOTSTRAP, str(token), str(ca), *args], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
