"""deploy/README.md's GKE and EKS walkthroughs, executed: install → verify → upgrade → uninstall.

Every ``kubectl`` line of the cloud's section runs verbatim, in order, with the real kubectl
against the Kubernetes API emulator (``gcloud``/``aws`` lines talk to the clouds and are skipped).
The emulator has no kubelet or Deployment controller, so the test stands in for them, and only
for them:

* when the controller's Deployment exists, it runs ``spec.replicas`` copies of the container the
  Deployment describes: the real CLI with the Deployment's own ``args`` and ``env`` (POD_NAME,
  POD_NAMESPACE), plus only what a pod gets from its surroundings (a kubeconfig in place of the
  in-cluster credentials, loopback ports, the fake Compute API or moto as the cloud endpoint,
  dummy AWS keys), replaced one at a time as the Deployment's strategy says, each new one Ready
  (caches synced, leader known, its webhook CA trusted by the ``caBundle``) before an old one goes;
* ``kubectl rollout status`` is answered once those processes are ready, by writing the
  Deployment's status as the Deployment controller would;
* an upgrade's ``kubectl apply`` of the controller manifest rolls the processes (new pods); the
  uninstall's ``kubectl delete`` of it stops them (the pods go with the Deployment);
* the EndpointSlice of negsync's Service lists the process while it is ready, so the emulator's
  admission chain reaches its webhook as kube-apiserver would (Service port ``webhook`` → the
  pod's port, TLS verified against the ``caBundle`` for ``negsync.negsync-system.svc``): once the
  binding is Ready, a pod created with ``kubectl run`` in the labelled namespace must carry the
  readiness gate;
* the application (Namespace, Service, pods, EndpointSlice, nodes) exists from the start.

What it proves: the documented order releases every TargetBinding through its finalizer while the
controller still runs (the cloud targets are cleaned up), and only then are the controller and the
CRD removed, leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_manifests import REPO
from tests.e2e.test_cli_gcp import isolated_env
from tests.emulators.compute import FakeCompute
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import endpoint_slice, pod, service
from tests.support.kubectl import Kubectl
from tests.support.moto import REGION, aws_env, moto_server  # noqa: F401  (fixtures)
from tests.support.waiting import wait_for
from tests.telemetry.harness import ControllerProcess, free_port, http_get

pytestmark = pytest.mark.timeout(180)

README = REPO / "deploy" / "README.md"
IPS = ["10.0.1.10", "10.0.1.11"]
GKE_ZONE = "europe-west1-b"  # one of the example binding's zones


def walkthrough(cloud: str) -> list[str]:
    """The kubectl commands of the README's section for ``cloud`` (GKE / EKS), continuation lines joined."""
    text = README.read_text(encoding="utf-8")
    section = re.search(rf"^## {cloud}\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, f"deploy/README.md has no '## {cloud}' section"
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section.group(1), re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command.startswith("kubectl "):
                commands.append(command)
    return commands


def phases(commands: list[str]) -> list[str]:
    """Names each command's purpose, to check the documented order itself."""
    names = []
    for command in commands:
        if "delete targetbindings" in command:
            names.append("delete-bindings")
        elif re.search(r"delete -f deploy/release/negsync-", command):
            names.append("delete-controller")
        elif "delete -f deploy/release/crds.yaml" in command:
            names.append("delete-crd")
        elif "apply -f deploy/release/crds.yaml" in command:
            names.append("apply-crd")
        elif re.search(r"apply -f deploy/release/negsync-", command):
            names.append("apply-controller")
        else:
            names.append("other")
    return names


class Pod:
    """One replica: the controller process and the webhook port of its (loopback) network namespace."""

    def __init__(self, process: ControllerProcess, webhook_port: int, name: str) -> None:
        self.process, self.webhook_port, self.name = process, webhook_port, name


class Cluster:
    """The stand-in kubelet + Deployment controller for negsync's own pods (see the module docstring)."""

    def __init__(self, kube: KubeApiEmulator, cloud_args: list[str], env: dict[str, str]) -> None:
        self.kube = kube
        self.cloud_args = cloud_args
        self.env = env
        self.pods: list[Pod] = []
        self.generations = 0

    @property
    def running(self) -> bool:
        return bool(self.pods)

    def deployment(self) -> dict[str, Any] | None:
        return self.kube.get("apps/v1", "Deployment", "negsync-system", "negsync")

    def roll(self) -> None:
        """A rolling update as the Deployment asks (maxSurge 1, maxUnavailable 0): each new pod is
        ready (which includes "the caBundle trusts my certificate") before an old one goes."""
        deployment = self.deployment()
        assert deployment is not None, "no Deployment to run"
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert (strategy["maxSurge"], strategy["maxUnavailable"]) == (1, 0)
        self.generations += 1
        old = list(self.pods)
        for index in range(deployment["spec"]["replicas"]):
            self.pods.append(self._start(deployment, f"negsync-{self.generations}-{index}"))
            if old:
                self._stop(old.pop(0))
        for pod_ in old:
            self._stop(pod_)
        # Every live replica ends up Ready, each one's CA in the bundle. (Right after the old leader
        # went, a replica may answer "no leader known" until it sees the new holder: wait for it.)
        for pod_ in self.pods:
            wait_for(lambda p=pod_: http_get(p.process.url("/readyz"))[0] == 200, timeout=30,
                     what=f"{pod_.name} ready", describe=lambda p=pod_: f"{http_get(p.process.url('/readyz'))}\n"
                                                                       f"{p.process.tail()}")

    def _start(self, deployment: dict[str, Any], name: str) -> Pod:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[0] == "controller"
        env = {**self.env, "POD_NAME": name, "POD_NAMESPACE": "negsync-system"}
        process = ControllerProcess(self.kube, env=env)
        webhook_port = free_port()
        # The Deployment's args first; later flags win in argparse, so what follows replaces only the
        # pod's surroundings: API credentials, its own network namespace's ports, the cloud endpoint.
        python, flag, module = process.argv[:3]
        process.argv = [python, flag, module, *args, "--kubeconfig", str(process.kubeconfig),
                        "--health-addr", f"127.0.0.1:{process.health_port}",
                        "--metrics-addr", f"127.0.0.1:{process.metrics_port}",
                        "--webhook-addr", f"127.0.0.1:{webhook_port}", *self.cloud_args]
        process.start()
        try:
            process.wait_ready(timeout=30)
        except AssertionError as exc:
            process.stop()
            raise AssertionError(f"{exc}\n/readyz: {http_get(process.url('/readyz'))}") from None
        pod_ = Pod(process, webhook_port, name)
        self._publish(pod_)
        return pod_

    def _publish(self, pod_: Pod) -> None:
        """The EndpointSlice controller's part: negsync's Service lists each ready pod (one slice per
        pod here, because all of them listen on 127.0.0.1 with their own ports)."""
        self.kube.create({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": pod_.name, "namespace": "negsync-system",
                         "labels": {"kubernetes.io/service-name": "negsync"}},
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "webhook", "port": pod_.webhook_port, "protocol": "TCP"},
                      {"name": "http", "port": pod_.process.health_port, "protocol": "TCP"}]})

    def _stop(self, pod_: Pod) -> None:
        if self.kube.get("discovery.k8s.io/v1", "EndpointSlice", "negsync-system", pod_.name) is not None:
            self.kube.delete("discovery.k8s.io/v1", "EndpointSlice", "negsync-system", pod_.name)
        code = pod_.process.terminate(timeout=30)
        assert code == 0, pod_.process.tail()
        if pod_ in self.pods:
            self.pods.remove(pod_)

    def stop_all(self) -> None:
        for pod_ in list(self.pods):
            self._stop(pod_)

    def check_gate_injection(self, kubectl: Kubectl) -> None:
        """A new pod of the bound Service gets the readiness gate through the admission webhook."""
        kubectl("-n", "shop", "run", "gate-check", "--image=registry.k8s.io/pause:3.10", "--labels=app=web",
                "--restart=Never")
        gates = kubectl("-n", "shop", "get", "pod", "gate-check", "-o",
                        "jsonpath={.spec.readinessGates[*].conditionType}").stdout
        kubectl("-n", "shop", "delete", "pod", "gate-check", "--wait=false")
        assert gates == "target-health.negsync.io/web", f"no gate injected: {gates!r}\n{self.tail()}"

    def rolled_out(self) -> None:
        deployment = self.deployment()
        assert deployment is not None and self.pods
        replicas = deployment["spec"]["replicas"]
        assert len(self.pods) == replicas
        self.kube.patch_status("apps/v1", "Deployment", "negsync-system", "negsync", {
            "observedGeneration": deployment["metadata"].get("generation", 1), "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": ""},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": ""}]})

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.process.tail()}" for p in self.pods)


def seed_application(kube: KubeApiEmulator, *, zone: str, provider_id: str) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    kube.create({"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": zone}},
                 "spec": {"providerID": provider_id}})
    # Port 8080 named http: the GKE example binds it by name, the EKS example by number.
    kube.create(service(ports=[{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]))
    for i, ip in enumerate(IPS):
        kube.create(pod(f"web-{i}", ip=ip))
    kube.create(endpoint_slice("web-abc", IPS, zone=zone, pods={ip: f"web-{i}" for i, ip in enumerate(IPS)}))


def run(commands: list[str], kubectl: Kubectl, cluster: Cluster, workdir: Path, *,
        cloud_clean: Any, cloud_holds: Any) -> None:
    assert phases(commands).count("delete-bindings") == 1
    order = [p for p in phases(commands) if p.startswith("delete-")]
    assert order == ["delete-bindings", "delete-controller", "delete-crd"], "the safe uninstall order"
    upgrading = False
    for command in commands:
        phase = phases([command])[0]
        if "rollout status" in command:
            if not cluster.running or upgrading:
                cluster.roll()  # the (new) ReplicaSet's pods replace the old ones
                upgrading = False
            cluster.rolled_out()
        if phase == "delete-controller":
            # Reached only once the bindings are gone: the controller cleaned the cloud up itself.
            assert cloud_clean(), f"cloud targets left behind before the controller was removed\n{cluster.tail()}"
        try:
            result = kubectl.shell(command, cwd=workdir, timeout=90)
        except Exception as exc:
            bindings = cluster.kube.list_objects("negsync.io/v1alpha1", "TargetBinding")
            raise AssertionError(f"{command}: {exc}\nbindings: {bindings}\ncontroller:\n{cluster.tail()}") from None
        if phase == "apply-controller" and cluster.running:
            upgrading = True
        if phase == "delete-controller":
            cluster.stop_all()
        if "wait --for=condition=Ready targetbinding" in command:
            assert cloud_holds(), "Ready, yet the cloud target does not hold the endpoints"
            cluster.check_gate_injection(kubectl)
        if command.startswith("kubectl get targetbindings --all-namespaces"):
            assert "No resources found" in result.stderr, result.stdout
        if command.endswith("get targetbindings"):
            header = result.stdout.splitlines()[0].split()
            assert header[:2] == ["NAME", "SERVICE"] and "READY" in header
    assert not cluster.running
    assert cluster.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None,
                            "targetbindings.negsync.io") is None
    assert cluster.deployment() is None
    assert cloud_clean()


def key_file(fake: FakeCompute, tmp: Path, project: str) -> Path:
    path = tmp / "negsync-sa.json"
    path.write_text(json.dumps(fake.service_account_key(project=project)))
    return path


def workdir_with(tmp_path: Path, binding: dict[str, Any]) -> Path:
    """A user's directory: the release files (as downloaded) and their edited TargetBinding."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "deploy").symlink_to(REPO / "deploy")
    (work / "my-targetbinding.yaml").write_text(yaml.safe_dump(binding), encoding="utf-8")
    return work


@pytest.fixture
def kubectl(kube: KubeApiEmulator, tmp_path: Path) -> Kubectl:
    return Kubectl(kube, tmp_path / "kubectl")


def test_readme_commands_are_extracted() -> None:
    for cloud in ("GKE", "EKS"):
        commands = walkthrough(cloud)
        assert phases(commands).count("apply-crd") == 2, "install and upgrade each apply the CRD"
        first_crd = phases(commands).index("apply-crd")
        first_controller = phases(commands).index("apply-controller")
        assert first_crd < first_controller, "the CRD before the controller"


def test_gke_walkthrough(kube: KubeApiEmulator, kubectl: Kubectl, tmp_path: Path) -> None:
    commands = walkthrough("GKE")
    example = yaml.safe_load((REPO / "deploy" / "examples" / "targetbinding-gke.yaml").read_text())
    project = example["spec"]["target"]["gcpNeg"]["project"]
    seed_application(kube, zone=GKE_ZONE, provider_id=f"gce://{project}/{GKE_ZONE}/gke-pool-1-n1")
    with FakeCompute() as fake:
        # The project as GKE leaves it: the node's VM, its subnetwork, the pod IPs in its alias range;
        # the controller authenticates as the Deployment does on GKE (ADC), here with a key file.
        fake.provision(project, GKE_ZONE, "gke-pool-1-n1", IPS)
        credentials = isolated_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key_file(fake, tmp_path, project)))
        cluster = Cluster(kube, ["--gcp-compute-endpoint", fake.api_endpoint,
                                 "--cluster-uid", "walkthrough-cluster", "--health-poll-interval", "0.2",
                                 "--sync-min-interval", "0"], env=credentials)

        def holds() -> bool:
            return any(fake.endpoints(p, z, n) == {(ip, 8080) for ip in IPS} for p, z, n in fake.negs(project))

        try:
            run(commands, kubectl, cluster, workdir_with(tmp_path, example),
                cloud_clean=lambda: fake.negs(project) == [], cloud_holds=holds)
        finally:
            cluster.stop_all()


def test_eks_walkthrough(kube: KubeApiEmulator, kubectl: Kubectl, tmp_path: Path, moto_server: str,  # noqa: F811
                         aws_env: None) -> None:  # noqa: F811
    import boto3

    from tests.support.elb_proxy import ElbProxy

    commands = walkthrough("EKS")
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_server)
    elbv2 = session.client("elbv2", endpoint_url=moto_server)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    arn = elbv2.create_target_group(Name=f"walk-{os.getpid() % 100000}-{int(time.time()) % 100000}",
                                    Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0][
        "TargetGroupArn"]
    example = yaml.safe_load((REPO / "deploy" / "examples" / "targetbinding-eks.yaml").read_text())
    example["spec"]["target"]["awsTargetGroup"]["arn"] = arn  # the user's edit
    seed_application(kube, zone=f"{REGION}a", provider_id=f"aws:///{REGION}a/i-0123456789abcdef0")

    def registered() -> set[tuple[str, int]]:
        described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        return {(d["Target"]["Id"], d["Target"]["Port"]) for d in described
                if d.get("TargetHealth", {}).get("State") != "draining"}

    proxy = ElbProxy(upstream=moto_server).start()
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # dummy keys, machine config hidden
    cluster = Cluster(kube, ["--aws-endpoint-url", proxy.url, "--aws-max-attempts", "2",
                             "--health-poll-interval", "0.2", "--sync-min-interval", "0"],
                      env={**env, "AWS_DEFAULT_REGION": REGION})
    try:
        run(commands, kubectl, cluster, workdir_with(tmp_path, example),
            cloud_clean=lambda: registered() == set(), cloud_holds=lambda: registered() == {(ip, 8080) for ip in IPS})
    finally:
        cluster.stop_all()
        proxy.stop()
