"""The quickstarts' cluster commands, executed: kubectl against the API emulator, negsync as its pod.

docs/quickstart-gke.md is read, its ``sh`` blocks split into commands, and every command that
touches the cluster (``kubectl`` and the overlay edits before ``kubectl apply -k``) runs verbatim in
bash with the variables the doc sets.  The test plays what the cluster's own controllers and the
cloud would do between the steps — the kubelet and the Deployment/ReplicaSet/EndpointSlice
controllers (pods created through the API, so the MutatingWebhookConfiguration from ``apply -k``
injects the readiness gates over HTTPS; their status and EndpointSlices), and the GCP side is the
fake Compute API.  negsync itself runs with the args of the rendered Deployment (addresses moved to
loopback ports, the Compute endpoint pointed at the fake) and the in-cluster configuration.  A
command the test cannot execute must be listed in ``NOT_EXECUTED`` with the reason, so a new
kubectl line in the doc fails this test until somebody makes it run.  docs/quickstart-eks.md and
deploy/README.md get the install and manifest commands executed.
"""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.emulators.compute import FakeCompute
from tests.emulators.gce_metadata import FakeMetadataServer
from tests.emulators.kubeapi import KubeApiEmulator
from tests.support.incluster import start_in_cluster, stop
from tests.support.kubectl import REPO, Kubectl
from tests.support.waiting import wait_for
from tests.telemetry.harness import free_port

pytestmark = pytest.mark.timeout(120)

ENV = {"PROJECT": "my-project", "REGION": "europe-west1", "CLUSTER": "negsync-demo",
       "IMAGE": "europe-west1-docker.pkg.dev/my-project/negsync/negsync:0.1.0"}
ZONES = ("europe-west1-b", "europe-west1-c", "europe-west1-d")
GATE = "target-health.negsync.io/web"
NOT_EXECUTED = {
    "kustomize edit set image": "kustomize is not installed here; the doc offers editing `images:` by hand instead",
    "logs deploy/negsync -f": "no kubelet, so no container logs API; the drain-wait path is tested in tests/kube",
    "gcloud container clusters get-credentials": "writes a kubeconfig for a real cluster",
    "get pods -w": "watches forever; the same columns are printed once by the step-8 command",
}


def doc_commands(path: Path) -> list[str]:
    """Commands of the markdown file's ``sh`` blocks: continuations, heredocs and loops kept whole."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.S):
        current: list[str] = []
        until = ""
        for line in block.splitlines():
            if not current and not line.strip():
                continue
            current.append(line)
            if until:
                if line.strip() == until:
                    until = ""
                else:
                    continue
            elif "<<EOF" in line:
                until = "EOF"
                continue
            elif re.match(r"\s*for .*; do\s*$", line):
                until = "done"
                continue
            if line.rstrip().endswith("\\"):
                continue
            commands.append("\n".join(current))
            current = []
    return commands


def cluster_commands(path: Path) -> list[str]:
    return [c for c in doc_commands(path) if "kubectl" in c]


def excused(command: str) -> bool:
    return any(key in command for key in NOT_EXECUTED)


@pytest.fixture
def cluster() -> Iterator[KubeApiEmulator]:
    with KubeApiEmulator(bookmark_interval=0.2, tls=True, token=secrets.token_urlsafe(24)) as emulator:
        yield emulator


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as compute:
        # The project behind the doc's cluster: its region's default subnetwork and one VM per node,
        # the node's pod range (10.8.<i>.0/24) an alias range of that VM, as in a VPC-native cluster.
        compute.add_subnetwork(ENV["PROJECT"], ENV["REGION"], "default", cidr="10.0.0.0/8")
        for i, zone in enumerate(ZONES):
            compute.add_instance(ENV["PROJECT"], zone, f"gke-demo-pool-{i}", alias_ranges=[f"10.8.{i}.0/24"])
        yield compute


@pytest.fixture
def metadata(fake: FakeCompute) -> Iterator[FakeMetadataServer]:
    """GKE's metadata server: how the quickstart's Workload Identity hands the pod its Google token."""
    with FakeMetadataServer(fake, project=ENV["PROJECT"]) as server:
        yield server


class Cluster:
    """The parts of Kubernetes the emulator does not run: nodes, the workload controllers, the kubelet."""

    def __init__(self, kube: KubeApiEmulator) -> None:
        self.kube = kube
        self.api = client.ApiClient(kube.client_configuration())
        self.core: Any = client.CoreV1Api(self.api)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def nodes(self) -> None:
        for i, zone in enumerate(ZONES):
            self.kube.create({"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": f"gke-demo-pool-{i}", "labels": {"topology.kubernetes.io/zone": zone}},
                              "spec": {"providerID": f"gce://{ENV['PROJECT']}/{zone}/gke-demo-pool-{i}"}})

    def deployment_rolled_out(self, namespace: str, name: str) -> None:
        """kube-controller-manager and the kubelets: every replica of the current template available."""
        deployment = self.kube.get("apps/v1", "Deployment", namespace, name)
        assert deployment is not None
        replicas = deployment["spec"].get("replicas", 1)
        self.kube.patch_status("apps/v1", "Deployment", namespace, name, {
            "observedGeneration": deployment["metadata"]["generation"], "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                           {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]})

    def serve(self, namespace: str, service: str, ports: dict[str, int], *, address: str = "127.0.0.1") -> None:
        """The EndpointSlice controller for a Service whose pod runs on this machine."""
        self.kube.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                          "metadata": {"name": f"{service}-local", "namespace": namespace,
                                       "labels": {"kubernetes.io/service-name": service}},
                          "addressType": "IPv4",
                          "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports.items()],
                          "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]})

    def run_pods(self, namespace: str, deployment_name: str) -> list[str]:
        """The ReplicaSet controller creates the pods through the API (admission runs), the
        scheduler places them, the kubelet starts them (containers ready, Ready held by the gate)."""
        deployment = self.kube.get("apps/v1", "Deployment", namespace, deployment_name)
        assert deployment is not None
        template = deployment["spec"]["template"]
        names: list[str] = []
        for i in range(deployment["spec"]["replicas"]):
            body = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"generateName": f"{deployment_name}-7c9d8f6b5-", "labels": template["metadata"]["labels"]},
                    "spec": {**template["spec"], "nodeName": f"gke-demo-pool-{i % len(ZONES)}"}}
            created = self.core.create_namespaced_pod(namespace, body)
            names.append(created.metadata.name)
        endpoints = []
        for i, name in enumerate(names):
            ip = f"10.8.{i}.2"
            self._kubelet_status(namespace, name, {
                "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
                    {"type": "PodScheduled", "status": "True"}, {"type": "ContainersReady", "status": "True"},
                    {"type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady"}]})
            endpoints.append({"addresses": [ip], "nodeName": f"gke-demo-pool-{i % len(ZONES)}", "zone": ZONES[i % 3],
                              "conditions": {"ready": False, "serving": True, "terminating": False},
                              "targetRef": {"kind": "Pod", "namespace": namespace, "name": name}})
        self.kube.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                          "metadata": {"name": f"{deployment_name}-x7k2p", "namespace": namespace,
                                       "labels": {"kubernetes.io/service-name": deployment_name}},
                          "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                          "endpoints": endpoints})
        self._thread = threading.Thread(target=self._kubelet, args=(namespace, deployment_name, names), daemon=True)
        self._thread.start()
        return names

    def _kubelet_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Write pod status as the kubelet does: a strategic merge patch, conditions merged by ``type``.

        The kubelet's status manager keeps the conditions it does not own (readiness-gate conditions
        written by controllers: kubernetes pkg/kubelet/status/status_manager.go ``mergePodStatus``) and
        sends a two-way strategic merge patch (pkg/util/pod/pod.go ``PatchPodStatus``). A JSON merge
        patch of ``conditions`` would replace the whole list and erase negsync's gate — which a real
        kubelet never does, and which made this test flaky."""
        self.kube.patch("v1", "Pod", namespace, name, {"status": status}, patch_type="strategic", subresource="status")

    def _kubelet(self, namespace: str, service: str, names: list[str]) -> None:
        """Ready follows the readiness gates; the EndpointSlice follows Ready."""
        while not self._stop.wait(0.1):
            ready = set()
            for name in names:
                pod = self.kube.get("v1", "Pod", namespace, name) or {}
                conditions = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
                gates = [g["conditionType"] for g in pod.get("spec", {}).get("readinessGates") or []]
                if gates and all((conditions.get(g) or {}).get("status") == "True" for g in gates):
                    ready.add(name)
                    if conditions.get("Ready", {}).get("status") != "True":
                        self._kubelet_status(namespace, name, {"conditions": [{"type": "Ready", "status": "True"}]})
            sl = self.kube.get("discovery.k8s.io/v1", "EndpointSlice", namespace, f"{service}-x7k2p")
            if sl is None:
                continue
            changed = False
            for endpoint in sl["endpoints"]:
                want = endpoint["targetRef"]["name"] in ready
                if endpoint["conditions"]["ready"] != want:
                    endpoint["conditions"]["ready"], changed = want, True
            if changed:
                self.kube.update(sl)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.api.close()


def controller_args(kube: KubeApiEmulator, fake: FakeCompute, ports: dict[str, int]) -> list[str]:
    """The container args of the applied Deployment, listening on loopback and talking to the fake cloud."""
    deployment = kube.get("apps/v1", "Deployment", "negsync-system", "negsync")
    assert deployment is not None
    args = list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    moved = {f"--{flag}-addr": f"127.0.0.1:{port}" for flag, port in ports.items()}
    args = [f"{a.split('=')[0]}={moved[a.split('=')[0]]}" if a.split("=")[0] in moved else a for a in args]
    return [*args, "--gcp-compute-endpoint", fake.api_endpoint, "--health-poll-interval", "0.2",
            "--sync-min-interval", "0"]


def test_the_gke_quickstart_runs_against_the_emulator(cluster: KubeApiEmulator, fake: FakeCompute,
                                                      metadata: FakeMetadataServer, tmp_path: Path) -> None:
    doc = REPO / "docs" / "quickstart-gke.md"
    commands = cluster_commands(doc)
    executed: list[str] = []
    workdir = tmp_path / "repo"
    workdir.mkdir()
    shutil.copytree(REPO / "deploy", workdir / "deploy")
    kubectl = Kubectl(cluster, tmp_path / "kubectl")
    world = Cluster(cluster)
    controller = None

    def run(command: str, **kw: Any) -> str:
        executed.append(command)
        return kubectl.shell(command, extra_env=ENV, cwd=workdir, **kw).stdout

    def step(predicate: Any) -> list[str]:
        # A command the doc repeats (the restart of steps 8 and 9) runs once: kubectl refuses a
        # second restart within the same second.
        return list(dict.fromkeys(c for c in commands if predicate(c) and not excused(c) and c not in executed))

    try:
        world.nodes()
        # Step 1: the cluster's nodes.
        for command in step(lambda c: "get nodes" in c):
            assert "europe-west1-b" in run(command)
        # Step 4: the overlay edited as the doc says, applied; the Deployment's pod is negsync.
        (install,) = [b for b in doc_commands(doc) if "kubectl apply -k deploy/overlays/gke" in b] or [""]
        edits = [c for c in doc_commands(doc) if c.startswith(("cd ", "sed -i"))]
        run("\n".join(e for e in edits if not excused(e)))
        run(install)
        assert cluster.get("v1", "ServiceAccount", "negsync-system", "negsync")["metadata"]["annotations"][
            "iam.gke.io/gcp-service-account"] == "negsync@my-project.iam.gserviceaccount.com"
        ports = {"health": free_port(), "metrics": free_port(), "webhook": free_port()}
        # The doc's IAM step done wrong once: negsync must say so on the binding, not only in its log.
        fake.inject("compute.networkEndpointGroups.insert", 403, reason="forbidden",
                    message="Required 'compute.networkEndpointGroups.create' permission for 'projects/my-project'")
        controller = start_in_cluster(cluster, tmp_path / "pod", *controller_args(cluster, fake, ports),
                                      extra_env=metadata.environment())
        world.serve("negsync-system", "negsync", {"http": ports["health"], "webhook": ports["webhook"]})
        world.deployment_rolled_out("negsync-system", "negsync")
        for command in step(lambda c: "rollout status deploy/negsync" in c):
            assert "successfully rolled out" in run(command, timeout=30)
        wait_for(lambda: (cluster.get("coordination.k8s.io/v1", "Lease", "negsync-system", "negsync-controller")
                          or {}).get("spec", {}).get("holderIdentity"), timeout=30, what="a leader")
        for command in step(lambda c: "get lease negsync-controller" in c):
            assert run(command).strip().startswith("negsync-5d8f7c9b4-x2x9q_")  # the pod's POD_NAME
        # The webhook's CA is in the caBundle before any workload pod is created.
        wait_for(lambda: ((cluster.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None,
                                       "negsync") or {}).get("webhooks") or [{}])[0].get("clientConfig", {})
                 .get("caBundle"), timeout=30, what="caBundle patched")
        # Step 5: namespace, binding, workload.
        for command in step(lambda c: "namespace shop" in c or "TargetBinding" in c
                            or "apply -f deploy/examples/app-with-drain-wait.yaml" in c):
            run(command)
        pods = world.run_pods("shop", "web")
        for name in pods:  # injected by the webhook, through the real admission path
            assert {"conditionType": GATE} in cluster.get("v1", "Pod", "shop", name)["spec"]["readinessGates"]
        assert [c.outcome for c in cluster.admission_calls] == ["patched"] * len(pods)
        kubectl("-n", "shop", "wait", "--for=condition=Ready", "targetbinding/web", "--timeout=60s", timeout=70)
        # Step 6: the binding's columns, its targets, the pods.  Ready means in sync; HEALTHY is the
        # load balancer's view at the binding's last status write and may trail it by a poll.
        def endpoints_status() -> dict[str, Any]:
            stored = cluster.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}
            return dict((stored.get("status") or {}).get("endpoints") or {})

        for command in step(lambda c: "get tb web" in c and "jsonpath" not in c):
            # The columns show the stored status; pods and slices may still be arriving, so compare
            # with the status read around the command (retried until it held still).
            for _ in range(20):
                before = endpoints_status()
                header, row = run(command).splitlines()[:2]
                if endpoints_status() == before:
                    break
            assert header.split() == ["NAME", "SERVICE", "TARGET", "DESIRED", "HEALTHY", "READY", "AGE"]
            cells = row.split()
            assert cells[:2] == ["web", "web"] and cells[5] in ("True", "False")  # in sync, or catching up
            assert (int(cells[3]), int(cells[4])) == (before.get("desired"), before.get("healthy")), (cells, before)
            assert 1 <= before["desired"] <= len(pods)
        for command in step(lambda c: "get tb web" in c and "jsonpath" in c):
            targets = run(command)
            negs = fake.negs("my-project")
            assert len(negs) == 3 and all(name in targets for _, _, name in negs)
        for command in step(lambda c: "get pods -o wide" in c):
            out = run(command)
            assert all(name in out for name in pods) and "10.8.0.2" in out
        # Our Events, as kubectl describe shows them.
        described = kubectl("-n", "shop", "describe", "tb", "web").stdout
        events = described[described.index("Events:"):]
        assert "SyncFailed" in events and "compute.networkEndpointGroups.create" in events, described
        # Step 8: gates shown per pod; a restart is a template patch the API accepts.
        for command in step(lambda c: "custom-columns" in c):
            # Gates open as the load balancer reports each endpoint: re-run the doc's command until all have.
            wait_for(lambda c=command: (o := run(c)).count("LoadBalancerHealthy") + o.count("NoHealthCheck") == 3,
                     timeout=60, what="every gate released by the load balancer's verdict")
        for command in step(lambda c: "rollout restart deploy/web" in c):
            run(command)
        restarted = cluster.get("apps/v1", "Deployment", "shop", "web")
        assert "kubectl.kubernetes.io/restartedAt" in restarted["spec"]["template"]["metadata"]["annotations"]
        # Clean up: the workload, then the binding; negsync deletes its NEGs and releases the finalizer.
        for command in step(lambda c: c.startswith("kubectl delete -f") or "delete tb web" in c):
            run(command, timeout=60)
        wait_for(lambda: cluster.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") is None, timeout=30,
                 what="finalizer released")
        assert fake.negs("my-project") == []
        missed = [c for c in commands if c not in executed and not excused(c)
                  and not any(c in e for e in executed)]
        assert missed == [], f"quickstart commands not executed: {missed}"
    finally:
        world.close()
        if controller is not None:
            stop(controller)


def test_the_eks_quickstart_install_and_binding_apply(cluster: KubeApiEmulator, tmp_path: Path) -> None:
    """Install and binding steps of the EKS quickstart: the overlay applies, the binding passes the CRD."""
    doc = REPO / "docs" / "quickstart-eks.md"
    workdir = tmp_path / "repo"
    workdir.mkdir()
    shutil.copytree(REPO / "deploy", workdir / "deploy")
    kubectl = Kubectl(cluster, tmp_path / "kubectl")
    # What the quickstart's aws CLI steps would have set: the target group and the ALB's security group.
    env = {"TG": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef",
           "SG": "sg-0123456789abcdef0"}
    commands = cluster_commands(doc)
    install = [c for c in commands if "apply -k" in c]
    assert install, "the EKS quickstart no longer installs with kubectl apply -k"
    for command in install:
        kubectl.shell(command, extra_env=env, cwd=workdir)
    deployment = cluster.get("apps/v1", "Deployment", "negsync-system", "negsync")
    assert deployment is not None and "--provider=aws" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    kubectl.shell("kubectl create namespace shop", cwd=workdir)
    for command in [c for c in commands if "TargetBinding" in c]:
        kubectl.shell(command, extra_env=env, cwd=workdir)
    stored = cluster.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
    assert stored is not None and "awsTargetGroup" in stored["spec"]["target"]


def test_reapplying_the_overlay_never_resets_the_webhook_ca_bundle(cluster: KubeApiEmulator, tmp_path: Path) -> None:
    # deploy/README.md's own commands run in tests/deploy/test_walkthrough.py; this is the property
    # its upgrade step relies on.
    kubectl = Kubectl(cluster, tmp_path / "kubectl")
    lines = ["kubectl apply -k deploy/overlays/gke", "kubectl kustomize deploy/overlays/gke"]
    applied = kubectl.shell(lines[0]).stdout
    rendered = kubectl.shell(lines[1]).stdout
    assert applied.count(" created") == rendered.count("\nkind: ") + rendered.startswith("kind: ")
    # The webhook the README describes: no caBundle in the manifests, so re-applying never resets it.
    webhook = cluster.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, "negsync")
    assert webhook is not None and "caBundle" not in webhook["webhooks"][0]["clientConfig"]
    cluster.patch("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, "negsync",
                  [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": base64.b64encode(b"x").decode()}],
                  patch_type="json")
    kubectl.shell(lines[0])
    again = cluster.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, "negsync")
    assert again is not None and again["webhooks"][0]["clientConfig"].get("caBundle")
