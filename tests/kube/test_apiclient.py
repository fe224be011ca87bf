"""The API client as the Deployment gets it, and the cluster's id (:mod:`negsync.kube.apiclient`).

client-go's order for a controller: in-cluster first, then ``$KUBECONFIG``, then
``~/.kube/config``; ``--kubeconfig`` overrides.  The in-cluster case moves the kubernetes
client's two service-account path constants to temp files (as tests/support/incluster.py does for
the end-to-end test, tests/kube/test_incluster.py), never writing under /var/run/secrets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes.config.incluster_config as incluster
import pytest
from kubernetes import client
from kubernetes.config import kube_config

from negsync.errors import ConfigError
from negsync.kube.apiclient import cluster_uid, load_api_client
from tests.emulators.kubeapi import KubeApiEmulator

REPO = Path(__file__).resolve().parents[2]


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "from-kubeconfig"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}))
    return path


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No in-cluster variables, no $KUBECONFIG, an empty home: each test adds what it needs."""
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # The client took $KUBECONFIG at import; without it the default is ~/.kube/config.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", "~/.kube/config")
    return monkeypatch


def in_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("from-service-account")
    ca.write_text("not checked until a request is made")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")


def authorization(api: client.ApiClient) -> str:
    return str(api.configuration.api_key.get("authorization") or api.configuration.api_key.get("BearerToken"))


def test_in_cluster_config_comes_before_kubeconfig(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    in_cluster(environment, tmp_path)
    environment.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kc", "https://kubeconfig.example:6443")))
    api = load_api_client(None)
    assert api.configuration.host == "https://10.96.0.1:443"
    assert "from-service-account" in authorization(api)


def test_kubeconfig_env_is_used_outside_a_cluster(tmp_path: Path) -> None:
    """In a fresh process: the kubernetes client reads $KUBECONFIG once, when it is imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
    env.update(KUBECONFIG=str(kubeconfig(tmp_path / "kc", "https://kubeconfig.example:6443")), HOME=str(tmp_path))
    code = ("from negsync.kube.apiclient import load_api_client\n"
            "api = load_api_client(None)\n"
            "print(api.configuration.host, api.configuration.api_key)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                            env=env, cwd=REPO)
    assert result.stdout.startswith("https://kubeconfig.example:6443 ") and "from-kubeconfig" in result.stdout


def test_the_home_kubeconfig_is_the_last_resort(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    kubeconfig(tmp_path / "home" / ".kube" / "config", "https://home.example:6443")
    assert load_api_client(None).configuration.host == "https://home.example:6443"


def test_the_kubeconfig_flag_overrides_in_cluster_config(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    in_cluster(environment, tmp_path)
    given = kubeconfig(tmp_path / "given", "https://flag.example:6443")
    assert load_api_client(str(given)).configuration.host == "https://flag.example:6443"


def test_no_config_at_all_is_a_config_error_naming_the_flag(environment: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as raised:
        load_api_client(None)
    assert raised.value.field == "--kubeconfig" and "no in-cluster config and no usable kubeconfig" in str(raised.value)


def test_the_cluster_uid_is_the_flag_else_kube_systems_uid_else_unknown(caplog: pytest.LogCaptureFixture) -> None:
    emulator = KubeApiEmulator(bookmark_interval=0.2)
    emulator.start()
    try:
        created = emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
        with client.ApiClient(emulator.client_configuration()) as api:
            assert cluster_uid(api, "given-uid") == "given-uid"
            assert cluster_uid(api, "") == created["metadata"]["uid"]
    finally:
        emulator.stop()
    empty = KubeApiEmulator(bookmark_interval=0.2)  # no kube-system namespace: 404
    empty.start()
    try:
        with client.ApiClient(empty.client_configuration()) as api:
            assert cluster_uid(api, "") == "unknown"
    finally:
        empty.stop()
    assert "pass --cluster-uid" in caplog.text
