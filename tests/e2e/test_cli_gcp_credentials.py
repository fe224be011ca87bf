"""`negsync controller --provider gcp` finds its Google credentials the way a user's deployment does.

No test-only flag: the real CLI in a subprocess, google-auth's application default credentials chain,
and the fake Compute API that answers 401 to every call without a bearer token its token endpoint
(or the fake metadata server) issued.  Three paths:

* a service-account key file named by ``GOOGLE_APPLICATION_CREDENTIALS`` (``token_uri`` at the fake's
  loopback token endpoint; the JWT assertion is verified against the key's public half);
* GKE Workload Identity: the metadata server, reached through google-auth's own ``GCE_METADATA_HOST``
  / ``GCE_METADATA_IP`` variables, checking ``Metadata-Flavor: Google``;
* nothing at all: exit code 2 and one line saying what to configure, no traceback.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_gcp import PROJECT, ZONE, isolated_env, key_file
from tests.emulators.compute import FakeCompute
from tests.emulators.gce_metadata import FakeMetadataServer
from tests.emulators.kubeapi import KubeApiEmulator
from tests.support.waiting import wait_for
from tests.telemetry.harness import ROOT, ControllerProcess

pytestmark = pytest.mark.timeout(60)

GET = "compute.networkEndpointGroups.get"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as compute:
        compute.add_subnetwork(PROJECT, "us-central1", "default", cidr="10.0.0.0/8")
        yield compute


def binding_with_a_zone(kube: KubeApiEmulator) -> None:
    """A binding whose NEG is created before any endpoint: creating it needs authenticated calls."""
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                 "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    kube.create({"apiVersion": "negsync.io/v1alpha1", "kind": "TargetBinding",
                 "metadata": {"name": "web", "namespace": "shop"},
                 "spec": {"serviceRef": {"name": "web", "port": "http"},
                          "target": {"gcpNeg": {"project": PROJECT, "network": "default", "zones": [ZONE]}}}})


def run_until_a_neg_exists(kube: KubeApiEmulator, fake: FakeCompute, env: dict[str, str]) -> None:
    binding_with_a_zone(kube)
    ctl = ControllerProcess(kube, "--provider", "gcp", "--gcp-compute-endpoint", fake.api_endpoint,
                            "--cluster-uid", "cluster-uid-1234", "--sync-min-interval", "0",
                            "--webhook-addr", "127.0.0.1:0", env=env).start()
    try:
        wait_for(lambda: fake.negs(PROJECT), timeout=20, what="a NEG created with real credentials",
                 describe=ctl.tail)
        assert ctl.terminate() == 0
    finally:
        ctl.stop()
    # Every Compute call carried the issued token: nothing was refused as unauthenticated.
    compute_calls = [c for c in fake.calls if c.method_id and c.method_id.startswith("compute.")]
    assert compute_calls and all(c.status != 401 for c in compute_calls)


def test_a_service_account_key_file(kube: KubeApiEmulator, fake: FakeCompute, tmp_path: Path) -> None:
    env = isolated_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key_file(fake, tmp_path)))
    run_until_a_neg_exists(kube, fake, env)
    # The token came from the key file's token_uri, through a JWT assertion the fake verified.
    assert fake.count("oauth2.token", 200) >= 1


def test_the_gke_metadata_server(kube: KubeApiEmulator, fake: FakeCompute, tmp_path: Path) -> None:
    with FakeMetadataServer(fake, project=PROJECT) as metadata:
        env = isolated_env(tmp_path, **metadata.environment())
        run_until_a_neg_exists(kube, fake, env)
        paths = [path for _, path, _ in metadata.requests]
    assert "/" in paths  # google-auth's ping (GCE_METADATA_IP)
    assert any(p.endswith("/service-accounts/default/token") for p in paths)
    assert all(flavored for _, _, flavored in metadata.requests)  # Metadata-Flavor: Google on every one
    assert fake.count("oauth2.token") == 0  # no key file involved


def test_no_credentials_exits_2_with_one_message(kube: KubeApiEmulator, fake: FakeCompute, tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    ctl = ControllerProcess(kube, "--provider", "gcp", "--gcp-compute-endpoint", fake.api_endpoint,
                            "--cluster-uid", "cluster-uid-1234", "--webhook-addr", "127.0.0.1:0", env=env)
    done = subprocess.run(ctl.argv, cwd=ROOT, env=ctl.env, capture_output=True, text=True, timeout=45,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert "gcp.credentials" in errors[0] and "GOOGLE_APPLICATION_CREDENTIALS" in errors[0]
    assert "Workload Identity" in errors[0]
    assert not fake.calls  # nothing was sent without credentials


def test_the_fake_refuses_calls_without_the_issued_token(fake: FakeCompute) -> None:
    """The fake's side of the bargain: no token, a made-up token, a token without Compute scope."""
    import httplib2

    url = f"{fake.api_endpoint}projects/{PROJECT}/zones/{ZONE}/networkEndpointGroups"
    http = httplib2.Http(timeout=5)
    assert http.request(url)[0].status == 401
    assert http.request(url, headers={"Authorization": "Bearer ya29.made-up"})[0].status == 401
    storage_only = fake.issue_token(["https://www.googleapis.com/auth/devstorage.read_only"])
    assert http.request(url, headers={"Authorization": f"Bearer {storage_only}"})[0].status == 403
    assert http.request(url, headers={"Authorization": f"Bearer {fake.issue_token()}"})[0].status == 200
