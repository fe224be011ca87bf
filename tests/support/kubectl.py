"""Run the real ``kubectl`` against the API emulator, as the docs tell a user to.

Each :class:`Kubectl` has its own kubeconfig and ``$HOME`` in a temporary directory, so kubectl's
discovery cache (``~/.kube/cache``) never leaks between tests or into the developer's home, and no
``KUBECONFIG`` from the environment can point a test at a real cluster.  Commands run with a
timeout (kubectl's ``--request-timeout`` as well as the subprocess's), so a hung emulator fails a
test instead of stalling the suite.

Use the ``kubectl`` fixture (``tests/conftest.py``) or build one around any running emulator::

    result = kubectl("get", "targetbindings", "-n", "shop")
    assert "web" in result.stdout
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators.kubeapi import KubeApiEmulator

REPO = Path(__file__).resolve().parents[2]


class KubectlError(AssertionError):
    """kubectl exited non-zero; the message carries the command, stdout and stderr."""


class Kubectl:
    def __init__(self, emulator: KubeApiEmulator, workdir: Path, *, namespace: str = "default") -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            raise KubectlError("kubectl is not on PATH; these tests execute the documented kubectl commands")
        self.binary = binary
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig", namespace=namespace)

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        return {**keep, "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig), "NO_PROXY": "127.0.0.1,localhost"}

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 30.0,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        command = [self.binary, f"--request-timeout={max(1, int(timeout))}s", *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout + 5,
                                env=self.env(), cwd=cwd or REPO, check=False)
        if check and result.returncode != 0:
            raise KubectlError(f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                               f"stderr:\n{result.stderr}")
        return result

    def shell(self, script: str, *, timeout: float = 60.0, extra_env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a documented shell snippet verbatim (``kubectl`` resolved from PATH, as for a user)."""
        env = {**self.env(), **(extra_env or {})}
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                timeout=timeout, env=env, cwd=cwd or REPO, check=False)
        if result.returncode != 0:
            raise KubectlError(f"script exited {result.returncode}:\n{script}\nstdout:\n{result.stdout}\n"
                               f"stderr:\n{result.stderr}")
        return result


def _fixture(kube: KubeApiEmulator, tmp_path: Path) -> Iterator[Kubectl]:
    yield Kubectl(kube, tmp_path / "kubectl")


kubectl_fixture = pytest.fixture(name="kubectl")(_fixture)

__all__ = ["REPO", "Kubectl", "KubectlError", "kubectl_fixture"]
