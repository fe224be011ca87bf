"""`negsync controller --provider aws` as the Deployment runs it, with each real credential chain.

The CLI runs in a subprocess against the Kubernetes API emulator and moto (behind the AWS-faithful
proxy, tests/support/elb_proxy.py), all on loopback.  No client is injected: credentials come from
botocore's own default chain, configured only through the environment the EKS machinery sets:

* **IRSA** — the pod identity webhook sets ``AWS_ROLE_ARN``, ``AWS_WEB_IDENTITY_TOKEN_FILE`` (a
  projected ServiceAccount token), ``AWS_REGION``; botocore calls STS AssumeRoleWithWebIdentity
  (here moto's STS through ``AWS_ENDPOINT_URL_STS``) and signs ELBv2 calls with what STS issued.
* **EKS Pod Identity** — the agent's address in ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and the
  token in ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``; botocore GETs the URI with the token as the
  ``Authorization`` header.  botocore allows plain http only to loopback or the EKS agent addresses
  (``botocore.utils.ContainerMetadataFetcher._ALLOWED_HOSTS``: 169.254.170.2, 169.254.170.23,
  fd00:ec2::23), so the test's agent listens on 127.0.0.1.
* **Static keys** — ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
* **None** — exit 2 with one line naming what to set, no traceback.

Each chain is proven by the key the ELBv2 calls were signed with (SigV4 ``Credential=``).
"""

from __future__ import annotations

import http.server
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, service
from tests.support.elb_proxy import ElbProxy
from tests.support.moto import REGION, moto_server  # noqa: F401  (fixture)
from tests.support.waiting import wait_for
from tests.telemetry.harness import ControllerProcess

pytestmark = pytest.mark.timeout(60)
_SEQUENCE = itertools.count()
ROLE = "arn:aws:iam::123456789012:role/negsync-controller"
IPS = ["10.0.1.10", "10.0.1.11"]


@pytest.fixture
def world(moto_server: str) -> Iterator[dict[str, Any]]:  # noqa: F811
    import boto3

    session = boto3.Session(aws_access_key_id="fixture", aws_secret_access_key="fixture", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_server)
    elbv2 = session.client("elbv2", endpoint_url=moto_server)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")
    arn = elbv2.create_target_group(Name=f"cred-{next(_SEQUENCE)}-{id(session) % 10**6}", Protocol="HTTP",
                                    Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    proxy = ElbProxy(upstream=moto_server).start()
    try:
        yield {"arn": arn, "elbv2": elbv2, "proxy": proxy}
    finally:
        proxy.stop()


def isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment without the machine's AWS configuration or instance metadata."""
    empty = tmp_path / "empty"
    empty.write_text("")
    return {"AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true", **extra}


def run_until_registered(kube: KubeApiEmulator, world: dict[str, Any], env: dict[str, str]) -> ElbProxy:
    proxy: ElbProxy = world["proxy"]
    kube.create(service())
    kube.create(endpoint_slice("web-abc", IPS, zone="us-east-1a"))
    kube.create(binding(target={"awsTargetGroup": {"arn": world["arn"]}}, gate=False))
    ctl = ControllerProcess(kube, "--provider", "aws", "--aws-endpoint-url", proxy.url, "--aws-max-attempts", "2",
                            "--sync-min-interval", "0", env=env).start()
    try:
        ctl.wait_ready()

        def registered() -> set[str]:
            described = world["elbv2"].describe_target_health(TargetGroupArn=world["arn"])["TargetHealthDescriptions"]
            return {d["Target"]["Id"] for d in described}

        wait_for(lambda: registered() == set(IPS), timeout=20, what="targets registered", describe=ctl.tail)
    finally:
        code = ctl.terminate()
    assert code == 0, ctl.tail()
    assert "Traceback" not in "".join(ctl.stderr), ctl.tail()
    return proxy


def signing_keys(proxy: ElbProxy) -> set[str]:
    return {c.access_key for c in proxy.calls if c.action in ("RegisterTargets", "DescribeTargetGroups")}


def test_irsa_web_identity_through_sts(kube: KubeApiEmulator, world: dict[str, Any], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bmVnc3luYyJ9.c2ln")
    proxy: ElbProxy = world["proxy"]
    env = isolated(tmp_path, AWS_ROLE_ARN=ROLE, AWS_WEB_IDENTITY_TOKEN_FILE=str(token), AWS_REGION=REGION,
                   AWS_STS_REGIONAL_ENDPOINTS="regional", AWS_ENDPOINT_URL_STS=proxy.url)
    run_until_registered(kube, world, env)
    assumed = proxy.actions("AssumeRoleWithWebIdentity")
    assert assumed, "botocore never asked STS"
    assert assumed[0].params["RoleArn"] == [ROLE]
    assert assumed[0].params["WebIdentityToken"] == [token.read_text()]
    assert proxy.issued and signing_keys(proxy) == {proxy.issued[0]}  # signed with what STS issued


class PodIdentityAgent:
    """A loopback stand-in for the EKS Pod Identity agent (GET with the token → temporary keys)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[str] = []
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                agent.requests.append(self.headers.get("Authorization") or "")
                if self.headers.get("Authorization") != agent.token:
                    self.send_response(401)
                    self.end_headers()
                    return
                expires = (datetime.now(UTC) + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
                body = json.dumps({"AccessKeyId": "ASIAPODIDENTITY00001", "SecretAccessKey": "pod-secret",
                                   "Token": "pod-session-token", "AccountId": "123456789012",
                                   "Expiration": expires}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/credentials"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_eks_pod_identity_through_the_container_provider(kube: KubeApiEmulator, world: dict[str, Any],
                                                         tmp_path: Path) -> None:
    token = tmp_path / "eks-pod-identity-token"
    token.write_text("pod-identity-token-1")
    agent = PodIdentityAgent("pod-identity-token-1")
    try:
        env = isolated(tmp_path, AWS_CONTAINER_CREDENTIALS_FULL_URI=agent.url,
                       AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token))
        proxy = run_until_registered(kube, world, env)
    finally:
        agent.stop()
    assert agent.requests and set(agent.requests) == {"pod-identity-token-1"}
    assert signing_keys(proxy) == {"ASIAPODIDENTITY00001"}


def test_static_keys(kube: KubeApiEmulator, world: dict[str, Any], tmp_path: Path) -> None:
    env = isolated(tmp_path, AWS_ACCESS_KEY_ID="AKIASTATICKEY0000001", AWS_SECRET_ACCESS_KEY="static-secret")
    proxy = run_until_registered(kube, world, env)
    assert signing_keys(proxy) == {"AKIASTATICKEY0000001"}


def test_no_credentials_exit_2_with_one_message(kube: KubeApiEmulator, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    env = {k: v for k, v in ControllerProcess(kube, kubeconfig=kubeconfig).env.items()}
    env.update(isolated(tmp_path))
    done = subprocess.run([sys.executable, "-m", "negsync", "controller", "--provider", "aws", "--kubeconfig",
                           str(kubeconfig), "--health-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"],
                          env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "AWS credentials" in errors[0] and "IRSA" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_networking_rules_follow_the_binding(kube: KubeApiEmulator, world: dict[str, Any], tmp_path: Path) -> None:
    """The controller keeps the binding's security-group rule, and revokes it when the binding is deleted."""
    from negsync.providers.aws.networking import OWNER_DESCRIPTION

    proxy: ElbProxy = world["proxy"]
    ec2 = proxy.client("ec2")
    vpc = world["elbv2"].describe_target_groups(TargetGroupArns=[world["arn"]])["TargetGroups"][0]["VpcId"]
    node_sg = ec2.create_security_group(GroupName=f"node-{next(_SEQUENCE)}", Description="n", VpcId=vpc)["GroupId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    ec2.create_network_interface(SubnetId=subnet, Groups=[node_sg], PrivateIpAddresses=[
        {"PrivateIpAddress": "10.0.1.200", "Primary": True}, *({"PrivateIpAddress": ip, "Primary": False} for ip in IPS)])

    def ours() -> set[tuple[int, str]]:
        rules = proxy.client("ec2").describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [node_sg]}])["SecurityGroupRules"]
        return {(r["FromPort"], r.get("CidrIpv4", "")) for r in rules
                if not r["IsEgress"] and r.get("Description") == OWNER_DESCRIPTION}

    def registered() -> set[str]:
        described = world["elbv2"].describe_target_health(TargetGroupArn=world["arn"])["TargetHealthDescriptions"]
        return {d["Target"]["Id"] for d in described}

    def condition() -> str:
        status = (kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") or {}).get("status") or {}
        return " ".join(c.get("message", "") for c in status.get("conditions") or [] if c.get("status") == "False")

    kube.create(service())
    kube.create(endpoint_slice("web-abc", IPS, zone="us-east-1a"))
    # First a group that does not exist: a condition names the problem; registration goes on.
    rule = {"from": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}
    kube.create(binding(target={"awsTargetGroup": {"arn": world["arn"], "networking": {
        "securityGroup": "sg-00000000000000000", "ingress": [rule]}}}, gate=False))
    env = isolated(tmp_path, AWS_ACCESS_KEY_ID="AKIASTATICKEY0000001", AWS_SECRET_ACCESS_KEY="static-secret")
    ctl = ControllerProcess(kube, "--provider", "aws", "--aws-endpoint-url", proxy.url, "--aws-max-attempts", "2",
                            "--sync-min-interval", "0", env=env).start()
    try:
        ctl.wait_ready()
        wait_for(lambda: "networking:" in condition() and registered() == set(IPS), timeout=20,
                 what="a networking condition, targets registered", describe=ctl.tail)
        assert "sg-00000000000000000" in condition()
        fixed = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
        assert fixed is not None
        fixed["spec"]["target"]["awsTargetGroup"]["networking"] = {"ingress": [rule]}  # the pods' ENI group
        kube.update(fixed)
        wait_for(lambda: ours() == {(8080, "10.20.0.0/16")}, timeout=20, what="rule authorized", describe=ctl.tail)
        wait_for(lambda: "networking:" not in condition(), timeout=20, what="condition cleared", describe=ctl.tail)
        kube.delete("negsync.io/v1alpha1", "TargetBinding", "shop", "web")
        wait_for(lambda: ours() == set() and kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", "web") is None,
                 timeout=20, what="rule revoked and binding gone", describe=ctl.tail)
    finally:
        code = ctl.terminate()
    assert code == 0 and "Traceback" not in "".join(ctl.stderr), ctl.tail()
