"""`negsync controller --provider gcp` as a user runs it: the real CLI in a subprocess, the Kubernetes API
emulator, and the fake Compute API (validated against Google's discovery document) — all on loopback.

One NEG per zone appears with the Service's endpoints; the readiness gate stays False until the NEG
reports the endpoint HEALTHY, then turns True; a terminating endpoint is detached; deleting the binding
deletes the NEG through the finalizer.  Credentials are a service-account key file named by
``GOOGLE_APPLICATION_CREDENTIALS`` whose ``token_uri`` is the fake's token endpoint: the fake Compute
API answers 401 to anything without the token it issued, so this is the chain a user runs.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.compute import FakeCompute
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import endpoint_slice, pod, service
from tests.support.waiting import wait_for
from tests.telemetry.harness import ControllerProcess, free_port

PROJECT, ZONE = "my-project", "us-central1-a"
GATE = "target-health.negsync.io/web"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as compute:
        # The project: the default network with its us-central1 subnetwork, and node n1's VM whose
        # alias range holds the pod IPs (GKE VPC-native clusters give each node such a range).
        compute.add_subnetwork(PROJECT, "us-central1", "default", cidr="10.0.0.0/8")
        compute.add_instance(PROJECT, ZONE, "gke-pool-1-n1", alias_ranges=["10.8.0.0/24"])
        yield compute


def isolated_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No credentials but the ones a test gives: no gcloud ADC file, no real metadata server.

    The metadata variables point at a closed loopback port, so google-auth's GCE check fails at once
    instead of reaching for 169.254.169.254.
    """
    closed = f"127.0.0.1:{free_port()}"
    env = {"HOME": str(tmp), "CLOUDSDK_CONFIG": str(tmp / "gcloud"),
           "GCE_METADATA_HOST": closed, "GCE_METADATA_IP": closed}
    env.update(extra)
    return env


def key_file(fake: FakeCompute, tmp: Path) -> Path:
    path = tmp / "negsync-sa.json"
    path.write_text(json.dumps(fake.service_account_key(project=PROJECT)))
    return path


def gate_of(kube: KubeApiEmulator, name: str) -> dict[str, Any] | None:
    obj = kube.get("v1", "Pod", "shop", name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == GATE), None)


def test_the_cli_keeps_a_neg_in_sync_with_gates(kube: KubeApiEmulator, fake: FakeCompute, tmp_path: Path) -> None:
    kube.create({"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": ZONE}},
                 "spec": {"providerID": f"gce://{PROJECT}/{ZONE}/gke-pool-1-n1"}})
    kube.create(service())
    ips = ["10.8.0.1", "10.8.0.2"]
    for i, ip in enumerate(ips):
        kube.create(pod(f"web-{i}", ip=ip, gates=[GATE]))
    pods = {ip: f"web-{i}" for i, ip in enumerate(ips)}
    kube.create(endpoint_slice("web-abc", [], zone=ZONE))  # no endpoints yet
    kube.create({"apiVersion": "negsync.io/v1alpha1", "kind": "TargetBinding", "metadata": {"name": "web", "namespace": "shop"},
                 "spec": {"serviceRef": {"name": "web", "port": "http"},
                          # zones: the NEG exists before any endpoint, so it can be put behind a backend first
                          "target": {"gcpNeg": {"project": PROJECT, "network": "default", "zones": [ZONE]}}}})
    webhook_port = free_port()
    env = isolated_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key_file(fake, tmp_path)))
    ctl = ControllerProcess(kube, "--provider", "gcp", "--gcp-compute-endpoint", fake.api_endpoint,
                            "--cluster-uid", "cluster-uid-1234", "--health-poll-interval", "0.2",
                            "--sync-min-interval", "0", "--webhook-addr", f"127.0.0.1:{webhook_port}",
                            env=env).start()
    try:
        ctl.wait_ready()
        negs = wait_for(lambda: fake.negs(PROJECT), timeout=15, what="a NEG", describe=ctl.tail)
        (_, zone, name), = negs
        assert zone == ZONE and len(name) <= 63
        description = json.loads(fake.neg(PROJECT, ZONE, name)["description"])
        assert description["cluster-uid"] == "cluster-uid-1234"
        # Put behind a health-checked backend service, then the pods arrive (gated, not Ready).
        fake.set_backend(PROJECT, ZONE, name, health_check=True)
        kube.update(endpoint_slice("web-abc", ips, pods=pods, not_ready=tuple(ips), zone=ZONE))
        wait_for(lambda: fake.endpoints(PROJECT, ZONE, name) == {(ip, 8080) for ip in ips}, timeout=15,
                 what="endpoints attached", describe=ctl.tail)
        assert set(fake.endpoint_instances(PROJECT, ZONE, name).values()) == {"gke-pool-1-n1"}  # from providerID
        # Attached but not yet healthy: the gate waits.
        condition = wait_for(lambda: gate_of(kube, "web-0"), timeout=15, what="gate condition", describe=ctl.tail)
        assert condition["status"] == "False" and condition["reason"] == "RegistrationInProgress"
        for ip in ips:
            fake.set_health(PROJECT, ZONE, name, ip, 8080, "HEALTHY")
        done = wait_for(lambda: (c := gate_of(kube, "web-0")) and c["status"] == "True" and c, timeout=15,
                        what="gate True", describe=ctl.tail)
        assert done["reason"] == "LoadBalancerHealthy"
        # The webhook answers over TLS with the CA it patched in... here there is no
        # MutatingWebhookConfiguration to patch, so only check it serves.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{webhook_port}/healthz", context=context, timeout=5) as r:
            assert r.status == 200
        # A terminating endpoint is detached.
        kube.update(endpoint_slice("web-abc", ips, pods=pods, terminating=("10.8.0.2",), zone=ZONE))
        wait_for(lambda: fake.endpoints(PROJECT, ZONE, name) == {("10.8.0.1", 8080)}, timeout=15,
                 what="terminating endpoint detached", describe=ctl.tail)
        # Deleting the binding detaches everything and deletes the NEG (once no backend uses it).
        fake.clear_backend(PROJECT, ZONE, name)
        kube.delete("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
        wait_for(lambda: not fake.negs(PROJECT), timeout=20, what="NEG deleted", describe=ctl.tail)
        wait_for(lambda: kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") is None, timeout=10,
                 what="finalizer released", describe=ctl.tail)
        assert ctl.terminate() == 0
    finally:
        ctl.stop()
