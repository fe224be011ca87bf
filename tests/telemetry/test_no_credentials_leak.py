"""No planted credential reaches a log line, a metric, an Event, a status or an API request body.

The real CLI runs with ``--provider aws`` against moto (loopback) and the Kubernetes API emulator,
with debug logging and fake credentials planted everywhere a real deployment has them: the AWS
environment chain (access key, secret key, session token), a Google service-account key file, and
a bearer token in the kubeconfig.  One binding syncs, two fail (a target group that does not exist,
one of target type ``instance``) so error paths — Events, status conditions, warning logs — run too.
Then everything observable is collected and searched for every secret.

An integration test across the whole process, kept on purpose; the redaction patterns themselves
are unit-tested in tests/test_logs.py.
"""

from __future__ import annotations

import json
import secrets
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding
from tests.support.moto import REGION, moto_server  # noqa: F401  (fixture)
from tests.support.waiting import wait_for
from tests.telemetry.harness import ControllerProcess, http_get, seed

pytestmark = pytest.mark.timeout(90)

ACCOUNT = "123456789012"  # moto's default account


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


class Planted:
    """Unique fake credentials for one test run, and the files that carry them."""

    def __init__(self, directory: Path, kube_url: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.access_key = "AKIA" + _random(string.ascii_uppercase + string.digits, 16)
        self.secret_key = _random(string.ascii_letters + string.digits + "/+", 40)
        self.session_token = "FwoGZXIvYXdzE" + _random(string.ascii_letters + string.digits, 120)
        self.bearer = "kube-" + _random(string.ascii_lowercase + string.digits, 48)
        self.private_key_id = secrets.token_hex(20)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        self.sa_file = directory / "service-account.json"
        self.sa_file.write_text(json.dumps({
            "type": "service_account", "project_id": "negsync-test", "private_key_id": self.private_key_id,
            "private_key": self.private_key, "client_email": "negsync@negsync-test.iam.gserviceaccount.com",
            "client_id": "1" * 21, "token_uri": "http://127.0.0.1:9/token",
        }))
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "emulator", "cluster": {"server": kube_url}}],
            "users": [{"name": "emulator", "user": {"token": self.bearer}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
            "current-context": "emulator",
        }))
        empty = directory / "empty"
        empty.write_text("")
        self.env = {
            "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_SESSION_TOKEN": self.session_token, "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true", "GOOGLE_APPLICATION_CREDENTIALS": str(self.sa_file),
        }

    def needles(self) -> dict[str, str]:
        """Every secret value, plus fragments that would survive a partial mangling."""
        body = "".join(self.private_key.splitlines()[1:-1])
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_SECRET_ACCESS_KEY[:20]": self.secret_key[:20],
            "AWS_SESSION_TOKEN": self.session_token,
            "AWS_SESSION_TOKEN[-40:]": self.session_token[-40:],
            "kubeconfig bearer token": self.bearer,
            "private_key_id": self.private_key_id,
            "private key (start of body)": body[:48],
            "private key (middle of body)": body[len(body) // 2: len(body) // 2 + 48],
        }




def _target_groups(moto_url: str) -> tuple[Any, str, str]:
    """(elbv2 client, ip target group ARN, instance target group ARN), made with other dummy keys."""
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_url)
    elbv2 = session.client("elbv2", endpoint_url=moto_url)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    suffix = secrets.token_hex(3)
    ip_arn = elbv2.create_target_group(Name=f"web-ip-{suffix}", Protocol="HTTP", Port=8080, VpcId=vpc,
                                       TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    instance_arn = elbv2.create_target_group(Name=f"web-inst-{suffix}", Protocol="HTTP", Port=8080, VpcId=vpc,
                                             TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    return elbv2, ip_arn, instance_arn


def _conditions(kube: KubeApiEmulator, name: str) -> dict[str, dict[str, Any]]:
    obj = kube.get("negsync.io/v1alpha1", "TargetBinding", "shop", name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _events(kube: KubeApiEmulator) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for api_version in ("v1", "events.k8s.io/v1"):
        try:
            found.extend(kube.list_objects(api_version, "Event", None))
        except Exception:
            continue
    return found


def test_no_planted_credential_appears_anywhere(kube: KubeApiEmulator, moto_server: str) -> None:  # noqa: F811
    elbv2, ip_arn, instance_arn = _target_groups(moto_server)
    missing_arn = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/does-not-exist/0123456789abcdef"
    ips = ["10.1.0.11", "10.1.0.12"]
    seed(kube, ips, target={"awsTargetGroup": {"arn": ip_arn}}, gate=False, not_ready=False)
    kube.create(binding("missing", target={"awsTargetGroup": {"arn": missing_arn}}, gate=False))
    kube.create(binding("instance", target={"awsTargetGroup": {"arn": instance_arn}}, gate=False))

    with tempfile.TemporaryDirectory(prefix="negsync-secrets-") as tmp:
        planted = Planted(Path(tmp), kube.url)
        ctl = ControllerProcess(kube, "--provider", "aws", "--aws-endpoint-url", moto_server, "--aws-max-attempts", "2",
                                "--log-level", "debug", "--sync-min-interval", "0",
                                env=planted.env, kubeconfig=planted.kubeconfig)
        ctl.start()
        try:
            ctl.wait_ready(timeout=20)
            wait_for(lambda: {d["Target"]["Id"] for d in elbv2.describe_target_health(TargetGroupArn=ip_arn)
                              ["TargetHealthDescriptions"]} == set(ips), timeout=20, what="targets registered",
                     describe=ctl.tail)
            for name in ("missing", "instance"):
                wait_for(lambda n=name: _conditions(kube, n).get("Ready", {}).get("status") == "False",
                         timeout=20, what=f"binding {name} reports its failure", describe=ctl.tail)
            wait_for(lambda: {"missing", "instance"} <= {(e.get("involvedObject") or {}).get("name") for e in _events(kube)},
                     timeout=10, what="warning Events on both failing bindings",
                     describe=lambda: json.dumps(_events(kube), default=str)[:3000])
            metrics = ctl.metrics()
            health = http_get(ctl.url("/healthz"))[1] + http_get(ctl.url("/readyz"))[1]
            code = ctl.terminate(timeout=15)
        finally:
            ctl.stop()
        assert code == 0, ctl.tail()

        bindings = kube.list_objects("negsync.io/v1alpha1", "TargetBinding", "shop")
        corpus = {
            "controller stdout": "".join(ctl.stdout),
            "controller stderr": "".join(ctl.stderr),
            "/metrics": metrics,
            "/healthz,/readyz": health,
            "Events": json.dumps(_events(kube), default=str),
            "TargetBinding status": json.dumps([b.get("status") for b in bindings], default=str),
            "TargetBindings": json.dumps(bindings, default=str),
            "ConfigMaps": json.dumps(kube.list_objects("v1", "ConfigMap", None), default=str),
            "API request log": json.dumps([r._asdict() for r in kube.requests], default=str),
        }
        # The scenario really exercised the error paths (otherwise the check proves little).
        assert "SyncFailed" in corpus["Events"] or "TargetNotFound" in corpus["Events"], corpus["Events"][:2000]
        assert '"level": "warning"' in corpus["controller stderr"] or '"level": "debug"' in corpus["controller stderr"]
        assert "negsync_cloud_calls_total" in metrics
        leaks = [f"{secret} in {where}" for secret, needle in planted.needles().items()
                 for where, text in corpus.items() if needle in text]
        assert not leaks, "planted credentials leaked: " + "; ".join(leaks)
