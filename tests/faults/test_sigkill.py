"""The controller process killed with SIGKILL mid-batch, then restarted: a real subprocess.

The cloud state must outlive the process, so this runs ``negsync controller --provider aws``
against moto (through :class:`~tests.support.elb_proxy.ElbProxy`) and the API emulator (through a
kubeconfig).  The target group is ``shared: true`` and holds a member some other tool registered;
negsync's ownership record (a ConfigMap, written before RegisterTargets) is what keeps it away.

Sequence: 450 endpoints → RegisterTargets in 3 batches of 200; the proxy lets the first batch
through and parks the second; SIGKILL; the parked call then lands (the cloud finished what the
dead process sent); five endpoints of the first batch turn terminating; restart (a new process,
new identity, waiting out the dead leader's Lease); converge.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.kubeapi import KubeApiEmulator
from tests.faults.conftest import record
from tests.kube.conftest import binding, service
from tests.support.elb_proxy import ElbProxy
from tests.support.moto import REGION, aws_env, moto_server  # noqa: F401  (fixtures)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

COUNT = 450
IPS = [f"10.0.{1 + i // 250}.{1 + i % 250}" for i in range(COUNT)]
FOREIGN = ("10.0.250.250", 8080)


def big_slice(terminating: set[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-big", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ip not in terminating, "serving": True,
                                                         "terminating": ip in terminating}, "zone": "z1"}
                      for ip in IPS],
    }


@pytest.fixture
def world(moto_server: str, aws_env: None) -> Iterator[dict[str, Any]]:  # noqa: F811
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_server)
    elbv2 = session.client("elbv2", endpoint_url=moto_server)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    arn = elbv2.create_target_group(Name=f"kill-{os.getpid() % 100000}-{int(time.time()) % 100000}", Protocol="HTTP",
                                    Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": FOREIGN[0], "Port": FOREIGN[1]}])
    proxy = ElbProxy(upstream=moto_server).start()
    try:
        yield {"arn": arn, "elbv2": elbv2, "proxy": proxy}
    finally:
        proxy.stop()


def spawn(kubeconfig: Path, proxy: ElbProxy, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "negsync", "controller", "--provider", "aws", "--aws-endpoint-url", proxy.url,
            "--aws-max-attempts", "2", "--kubeconfig", str(kubeconfig), "--health-addr", "127.0.0.1:0",
            "--metrics-addr", "127.0.0.1:0", "--leader-elect", "--leader-elect-lease-duration", "3s",
            "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "0.5s", "--sync-min-interval", "0",
            "--log-level", "warning"]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_sigkill_mid_batch_then_restart(kube: KubeApiEmulator, world: dict[str, Any], tmp_path: Path) -> None:
    proxy: ElbProxy = world["proxy"]
    elbv2, arn = world["elbv2"], world["arn"]

    def registered() -> set[tuple[str, int]]:
        described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        return {(d["Target"]["Id"], d["Target"]["Port"]) for d in described
                if d.get("TargetHealth", {}).get("State") != "draining"}

    kube.create(service())
    kube.create(big_slice(set()))
    kube.create(binding(target={"awsTargetGroup": {"arn": arn, "shared": True}}, gate=False))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    log = tmp_path / "controller.log"
    proxy.hold(pass_first=1)
    first = spawn(kubeconfig, proxy, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: len(proxy.actions("RegisterTargets")) >= 2, timeout=30,
                 what="first batch through and the second in flight")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=5)
        assert first.returncode == -signal.SIGKILL
        in_cloud = registered() - {FOREIGN}
        assert 0 < len(in_cloud) < COUNT, f"not mid-batch: {len(in_cloud)} registered"
        proxy.release()  # the call the dead process sent still lands
        terminating = set(sorted(IPS)[:5])  # all in the first batch, so registered
        assert {(ip, 8080) for ip in terminating} <= registered()
        kube.update(big_slice(terminating))
        started = time.monotonic()
        second = spawn(kubeconfig, proxy, log)
        want = {(ip, 8080) for ip in IPS if ip not in terminating}
        wait_for(lambda: registered() - {FOREIGN} == want, timeout=40, interval=0.2,
                 what="convergence after SIGKILL + restart")
        seconds = time.monotonic() - started
        actual = registered()
        assert FOREIGN in actual, "the member another tool registered was removed"
        assert not any(FOREIGN in c.targets for c in proxy.actions("DeregisterTargets"))
        assert not actual & {(ip, 8080) for ip in terminating}
        assert second.poll() is None, "the restarted controller died"
        record("SIGKILL mid-batch + restart (aws/moto, subprocess)", seconds)
    finally:
        proxy.release()
        if first.poll() is None:
            first.kill()
            first.wait(timeout=5)
        if second is not None:
            stop(second)
        text = log.read_text(errors="replace") if log.exists() else ""
        assert "Traceback" not in text, text[-3000:]
