"""Benchmark 5 — every cloud call counted: the real CLI against a fake Compute API and against moto.

Method.  The parent starts, all on 127.0.0.1, the Kubernetes API emulator
(``tests/emulators/kubeapi.py``) and the cloud: for **GCP** the fake Compute API
(``tests/emulators/compute.py``, validated against Google's discovery document; operations stay
RUNNING for ``op_delay`` seconds, as real zonal operations do, so every write needs its
``zoneOperations.wait``); for **AWS** moto's server behind the recording ELBv2 proxy of the fault
suite (``tests/support/elb_proxy.py``).  It seeds S Services with E ready endpoints (three zones,
Nodes with a GCE ``providerID``) and S TargetBindings, then runs ``python -m negsync controller``
as a user runs it — the real SDK clients, default settings except the cloud endpoint and
``--log-level warning`` — and counts, on the server side, every request the controller made, by
method:

* **cold start** — from the process start until every target holds exactly its desired members;
* **churn** — ``rounds`` rounds; in each, every Service's slice turns ``replace`` endpoints
  terminating, then (at once) replaces them with as many new pods.  The round's clock runs from the
  first slice update to the moment every target holds its desired members.

The **write lower bound** of a phase is Σ over targets of ⌈attaches/limit⌉ + ⌈detaches/limit⌉
(limit 500 per NEG call, 200 per ELBv2 call).  On GCP a write cannot finish without its operation
wait, so the calls that must be made are 2 per write and the goal is all calls ≤ 2.2× the write
bound (at most 10 % reads on top); on AWS a write is one call and the goal is ≤ 1.2×.  The
**rate-limited floor** of a round is the calls that must be made divided by the configured rate
(``--gcp-rate-limit``, default 10/s; AWS: ``RegisterTargets|DeregisterTargets`` one 3/s bucket, the provider's default);
the buckets start full (burst 2 s of rate on GCP, 10 write calls on AWS), so a round
smaller than a burst can beat the floor.  Cold start has no ratio goal: each target must at least
be listed once (and on GCP created and checked) before its first write; its figures are reported
by method so the start-up reads are visible.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import Row, median
from negsync.providers.aws import DEFAULT_RATE_LIMITS

DEFAULTS: dict[str, Any] = {
    "gcp": {"services": 10, "endpoints": 60, "replace": 12, "rounds": 2, "rate": 10.0, "op_delay": 0.05},
    "aws": {"services": 20, "endpoints": 50, "replace": 10, "rounds": 2},
}
QUICK: dict[str, Any] = {
    "gcp": {"services": 4, "endpoints": 30, "replace": 6, "rounds": 1, "rate": 20.0, "op_delay": 0.05},
    "aws": {"services": 6, "endpoints": 20, "replace": 4, "rounds": 1},
}
NAMESPACE = "bench"
PROJECT = "bench-project"
CLUSTER_UID = "bench-cluster-uid"
REGION = "us-east-1"
NEG_LIMIT, ELB_LIMIT = 500, 200
#: AWS default pacing of RegisterTargets and DeregisterTargets (negsync.providers.aws.DEFAULT_RATE_LIMITS).
# negsync's default for the RegisterTargets|DeregisterTargets throttle group: one bucket for both.
AWS_WRITE_RATE = DEFAULT_RATE_LIMITS["RegisterTargets|DeregisterTargets"][0]

# Method names as the issue counts them (GCP method ids shortened; ELBv2/EC2 actions as they are).
GCP_WRITES = ("attachNetworkEndpoints", "detachNetworkEndpoints")
GCP_WAIT = "zoneOperations.wait"
AWS_WRITES = ("RegisterTargets", "DeregisterTargets")


def _ceil(n: int, limit: int) -> int:
    return -(-n // limit)


def _short(method_id: str | None) -> str:
    if not method_id:
        return "unroutable"
    return method_id.removeprefix("compute.").removeprefix("networkEndpointGroups.")


# -- the world: cluster objects and expected members -------------------------------------------------
class World:
    """Services, slices and bindings in the emulator, and what each target must hold."""

    def __init__(self, kube: Any, *, services: int, endpoints: int, target: Callable[[str], dict[str, Any]],
                 zones: tuple[str, ...]) -> None:
        from benchmarks.pipeline import SliceState, binding_obj, service_obj

        self.kube = kube
        self.zones = zones
        self.states = [SliceState(NAMESPACE, f"svc-{s:03d}") for s in range(services)]
        self.counter = 0
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        for n in range(97):  # the node names pipeline.SliceState gives endpoints
            zone = zones[n % len(zones)]
            kube.create({"apiVersion": "v1", "kind": "Node",
                         "metadata": {"name": f"node-{n}", "labels": {"topology.kubernetes.io/zone": zone}},
                         "spec": {"providerID": f"gce://{PROJECT}/{zone}/node-{n}"}})
        for state in self.states:
            for _ in range(endpoints):
                self.counter += 1
                state.endpoints[self.counter] = False
            kube.create(service_obj(NAMESPACE, state.service))
            kube.create(self._slice(state))
            raw = binding_obj(NAMESPACE, state.service, finalizer=False)
            raw["spec"]["target"] = target(state.service)
            kube.create(raw)

    def _slice(self, state: Any) -> dict[str, Any]:
        obj = state.obj(1)
        for field in ("resourceVersion", "uid"):  # an unconditional update; the server owns both
            obj["metadata"].pop(field, None)
        for endpoint in obj["endpoints"]:
            # SliceState spreads endpoints over three zones; keep that spread, with our zone names.
            endpoint["zone"] = self.zones[int(endpoint["nodeName"].removeprefix("node-")) % len(self.zones)]
        return obj

    def zone_of(self, n: int) -> str:
        return self.zones[(n % 97) % len(self.zones)]

    def members(self) -> dict[tuple[str, str], set[tuple[str, int]]]:
        """(service, zone) → serving (ip, port)."""
        from benchmarks.pipeline import PORT, pod_ip

        out: dict[tuple[str, str], set[tuple[str, int]]] = {}
        for state in self.states:
            for zone in self.zones:
                out[(state.service, zone)] = set()
            for n, terminating in state.endpoints.items():
                if not terminating:
                    out[(state.service, self.zone_of(n))].add((pod_ip(n), PORT))
        return out

    def round(self, replace: int) -> None:
        """Every Service: ``replace`` endpoints turn terminating, then leave for as many new pods."""
        leaving: list[list[int]] = []
        for state in self.states:
            ready = [n for n, t in state.endpoints.items() if not t][:replace]
            for n in ready:
                state.endpoints[n] = True
            leaving.append(ready)
            self.kube.update(self._slice(state))
        for state, gone in zip(self.states, leaving, strict=True):
            for n in gone:
                del state.endpoints[n]
                self.counter += 1
                state.endpoints[self.counter] = False
            self.kube.update(self._slice(state))


def write_bound(before: dict[Any, set[Any]], after: dict[Any, set[Any]], *, limit: int) -> int:
    """Σ over targets of ⌈attaches/limit⌉ + ⌈detaches/limit⌉ between two member maps."""
    total = 0
    for key in set(before) | set(after):
        old, new = before.get(key, set()), after.get(key, set())
        total += _ceil(len(new - old), limit) + _ceil(len(old - new), limit)
    return total


# -- the clouds ------------------------------------------------------------------------------------------
class GcpCloud:
    def __init__(self, params: dict[str, Any]) -> None:
        from tests.emulators.compute import FakeCompute

        self.params = params
        self.fake = FakeCompute(operation_delay=params["op_delay"])
        self.zones = ("us-central1-a", "us-central1-b", "us-central1-c")
        self.limit = NEG_LIMIT

    def __enter__(self) -> GcpCloud:
        import json
        import tempfile

        from benchmarks.pipeline import pod_ip
        from tests.e2e.test_cli_gcp import isolated_env

        self.fake.start()
        # The project as GKE leaves it: every node's VM, and every pod IP the run will use as one of
        # its node's alias ranges (the fake, like GCE, refuses an endpoint its instance does not own).
        p = self.params
        for n in range(1, p["services"] * (p["endpoints"] + p["rounds"] * p["replace"]) + 1):
            self.fake.provision(PROJECT, self.zones[(n % 97) % len(self.zones)], f"node-{n % 97}", [pod_ip(n)])
        # Credentials as the Deployment finds them (ADC): a service-account key whose token_uri is the fake's.
        self._home = tempfile.TemporaryDirectory(prefix="negsync-calls-")
        key = Path(self._home.name) / "negsync-sa.json"
        key.write_text(json.dumps(self.fake.service_account_key(project=PROJECT)))
        self._env = isolated_env(Path(self._home.name), GOOGLE_APPLICATION_CREDENTIALS=str(key))
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.stop()
        self._home.cleanup()

    def target(self, service: str) -> dict[str, Any]:
        return {"gcpNeg": {"project": PROJECT, "network": "default"}}

    def args(self) -> list[str]:
        return ["--provider", "gcp", "--gcp-compute-endpoint", self.fake.api_endpoint,
                "--cluster-uid", CLUSTER_UID, "--gcp-rate-limit", f"{self.params['rate']:g}"]

    def env(self) -> dict[str, str]:
        return self._env

    def actual(self, keys: Any) -> dict[tuple[str, str], set[tuple[str, int]]]:
        from negsync.core.model import BindingKey
        from negsync.providers.gcp import neg_name

        out = {}
        for service, zone in keys:
            name = neg_name(prefix="k8s", cluster_uid=CLUSTER_UID, binding=BindingKey(NAMESPACE, service))
            try:
                out[(service, zone)] = self.fake.endpoints(PROJECT, zone, name)
            except Exception:
                out[(service, zone)] = set()
        return out

    def counts(self) -> collections.Counter[str]:
        # Compute API calls only: the token endpoint (oauth2) is not Compute quota.
        return collections.Counter(_short(c.method_id) for c in self.fake.calls
                                   if c.method_id and c.method_id.startswith("compute."))

    def writes(self, counts: collections.Counter[str]) -> int:
        return sum(counts[m] for m in GCP_WRITES)

    def must(self, bound: int) -> int:
        return 2 * bound  # each write and its operation wait

    @property
    def rate(self) -> float:
        return float(self.params["rate"])


class AwsCloud:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.zones = ("us-east-1a", "us-east-1b", "us-east-1c")
        self.limit = ELB_LIMIT
        self.arns: dict[str, str] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> AwsCloud:
        import boto3
        from moto.server import ThreadedMotoServer

        from tests.support.elb_proxy import ElbProxy

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._stack.callback(server.stop)
        host, port = server.get_host_and_port()
        self.moto = f"http://{host}:{port}"
        self.proxy = ElbProxy(upstream=self.moto).start()
        self._stack.callback(self.proxy.stop)
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        ec2 = session.client("ec2", endpoint_url=self.moto)
        self.elbv2 = session.client("elbv2", endpoint_url=self.moto)
        self.vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.suffix = secrets.token_hex(3)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def target(self, service: str) -> dict[str, Any]:
        # moto's backends live as long as the process: a suffix keeps repetitions apart.
        arn = self.elbv2.create_target_group(Name=f"bench-{service}-{self.suffix}", Protocol="HTTP", Port=8080,
                                             VpcId=self.vpc,
                                             TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
        self.arns[service] = arn
        return {"awsTargetGroup": {"arn": arn}}

    def args(self) -> list[str]:
        return ["--provider", "aws", "--aws-endpoint-url", self.proxy.url]

    def env(self) -> dict[str, str]:
        empty = Path(tempfile.gettempdir()) / "negsync-bench-empty-aws-config"
        empty.write_text("")
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
                "AWS_EC2_METADATA_DISABLED": "true"}

    def actual(self, keys: Any) -> dict[tuple[str, str], set[tuple[str, int]]]:
        services = {service for service, _ in keys}
        out: dict[tuple[str, str], set[tuple[str, int]]] = {}
        for service in services:
            found = {(d["Target"]["Id"], int(d["Target"]["Port"]))
                     for d in self.elbv2.describe_target_health(TargetGroupArn=self.arns[service])
                     ["TargetHealthDescriptions"]
                     if d["TargetHealth"]["State"] != "draining"}
            out[(service, "")] = found
        return out

    def counts(self) -> collections.Counter[str]:
        with self.proxy.lock:
            return collections.Counter(c.action or "unroutable" for c in self.proxy.calls)

    def writes(self, counts: collections.Counter[str]) -> int:
        return sum(counts[m] for m in AWS_WRITES)

    def must(self, bound: int) -> int:
        return bound

    @property
    def rate(self) -> float:
        # Register and Deregister share one bucket (AWS throttles them as one group): a round's
        # writes all pay into it.
        return AWS_WRITE_RATE


def _regroup(members: dict[tuple[str, str], set[tuple[str, int]]], *, zonal: bool) -> dict[tuple[str, str], set[Any]]:
    if zonal:
        return members
    out: dict[tuple[str, str], set[Any]] = {}
    for (service, _), found in members.items():
        out.setdefault((service, ""), set()).update(found)
    return out


@contextlib.contextmanager
def _controller(kube: Any, cloud: Any) -> Iterator[Any]:
    from tests.telemetry.harness import ControllerProcess

    ctl = ControllerProcess(kube, *cloud.args(), "--log-level", "warning", env=cloud.env())
    try:
        yield ctl
    finally:
        ctl.stop()


def measure(provider: str, params: dict[str, Any], *, timeout: float = 300.0) -> dict[str, Any]:
    """One cold start and ``rounds`` churn rounds of one provider; call counts by method per phase."""
    from tests.emulators.kubeapi import KubeApiEmulator

    cloud: Any = GcpCloud(params) if provider == "gcp" else AwsCloud(params)
    zonal = provider == "gcp"
    kube = KubeApiEmulator(bookmark_interval=1.0)
    kube.start()
    try:
        with cloud:
            world = World(kube, services=params["services"], endpoints=params["endpoints"], target=cloud.target,
                          zones=cloud.zones)
            with _controller(kube, cloud) as ctl:

                def converged(want: dict[tuple[str, str], set[Any]]) -> bool:
                    if ctl.proc is not None and ctl.proc.poll() is not None:
                        raise RuntimeError(f"controller exited with {ctl.proc.returncode}:\n{ctl.tail()}")
                    return cloud.actual(want) == want

                def wait(want: dict[tuple[str, str], set[Any]], what: str) -> float:
                    deadline = time.monotonic() + timeout
                    while not converged(want):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{provider}: {what} did not converge in {timeout:g}s\n{ctl.tail()}")
                        time.sleep(0.05)
                    return time.monotonic()

                before = _regroup(world.members(), zonal=zonal)
                empty = {key: set() for key in before}
                phases: list[dict[str, Any]] = []
                t0 = time.monotonic()
                ctl.start()
                t1 = wait(before, "cold start")
                counts = cloud.counts()
                bound = write_bound(empty, before, limit=cloud.limit)
                phases.append({"phase": "cold", "seconds": t1 - t0, "calls": dict(counts), "bound": bound})
                time.sleep(1.0)  # late status writes and gate polls settle; anything they cost is counted below
                seen = cloud.counts()
                for _ in range(params["rounds"]):
                    t0 = time.monotonic()
                    world.round(params["replace"])
                    after = _regroup(world.members(), zonal=zonal)
                    t1 = wait(after, "churn round")
                    now = cloud.counts()
                    phases.append({"phase": "churn", "seconds": t1 - t0, "calls": dict(now - seen),
                                   "bound": write_bound(before, after, limit=cloud.limit)})
                    before, seen = after, now
                    time.sleep(1.0)
                    # What arrived after convergence (a listing, a late wait) belongs to this round.
                    now = cloud.counts()
                    extra = now - seen
                    for method, n in extra.items():
                        phases[-1]["calls"][method] = phases[-1]["calls"].get(method, 0) + n
                    seen = now
    finally:
        kube.stop()
    for phase in phases:
        counted = collections.Counter(phase["calls"])
        phase["total"] = sum(counted.values())
        phase["writes"] = cloud.writes(counted)
        phase["waits"] = counted[GCP_WAIT]
        phase["reads"] = phase["total"] - phase["writes"] - phase["waits"]
        phase["must"] = cloud.must(phase["bound"])
        phase["floor"] = phase["must"] / cloud.rate
    return {"provider": provider, "phases": phases}


def run(*, quick: bool = False, repeat: int = 3, **overrides: Any) -> list[Row]:
    sizes = QUICK if quick else DEFAULTS
    rows: list[Row] = []
    for provider in ("gcp", "aws"):
        params = {**sizes[provider], **overrides.get(provider, {})}
        results = [measure(provider, params) for _ in range(repeat)]
        rows += provider_rows(provider, params, results)
    return rows


def _by_method(calls: dict[str, int]) -> str:
    return ", ".join(f"{m} {n:,}" for m, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))


def provider_rows(provider: str, params: dict[str, Any], results: list[dict[str, Any]]) -> list[Row]:
    name = "GCP (fake Compute API)" if provider == "gcp" else "AWS (moto)"
    targets = params["services"] * (3 if provider == "gcp" else 1)
    n = len(results)
    cold = [r["phases"][0] for r in results]
    churn = [p for r in results for p in r["phases"][1:]]
    reads = [p["reads"] for p in churn]
    ratio = median([p["total"] / p["bound"] for p in churn])
    goal = 2.2 if provider == "gcp" else 1.2
    speed = median([p["seconds"] / p["floor"] for p in churn])
    first = churn[0] if churn else cold[0]
    rate = (f"--gcp-rate-limit {params['rate']:g}/s, operations done after {params['op_delay']:g} s"
            if provider == "gcp" else f"RegisterTargets|DeregisterTargets {AWS_WRITE_RATE:g}/s together (defaults)")
    return [
        Row(f"{name}: scale", f"{params['services']} Services × {params['endpoints']} endpoints = {targets} targets; "
            f"{params['rounds']} churn rounds replacing {params['replace']} endpoints per Service; {rate}; "
            f"{n} run(s), {len(churn)} rounds"),
        Row(f"{name}: cold start, calls by method (write bound {cold[0]['bound']:,})",
            f"{median([c['total'] for c in cold]):,.0f} calls = {median([c['total'] / c['bound'] for c in cold]):.2f}x "
            f"in {median([c['seconds'] for c in cold]):.1f} s: {_by_method(cold[0]['calls'])}"),
        Row(f"{name}: churn round, calls by method (write bound {first['bound']:,})",
            f"{median([p['total'] for p in churn]):,.0f} calls: {_by_method(first['calls'])}"),
        Row(f"{name}: churn, all calls / write lower bound", f"{ratio:.2f}x (writes "
            f"{median([p['writes'] / p['bound'] for p in churn]):.2f}x"
            + (f", operation waits {median([p['waits'] / p['bound'] for p in churn]):.2f}x" if provider == "gcp" else "")
            + f"; reads {median(reads):,.0f} per round = "
            f"{median([r / p['bound'] for r, p in zip(reads, churn, strict=True)]):.0%} of the write bound)",
            f"≤ {goal:g}x", ratio <= goal),
        Row(f"{name}: churn, reads / write lower bound",
            f"{median([r / p['bound'] for r, p in zip(reads, churn, strict=True)]):.0%}", "≤ 10%",
            median([r / p["bound"] for r, p in zip(reads, churn, strict=True)]) <= 0.10),
        Row(f"{name}: churn round, time to converge / rate-limited floor",
            f"{speed:.2f}x ({median([p['seconds'] for p in churn]):.1f} s vs {median([p['floor'] for p in churn]):.1f} s "
            f"= {first['must']:,} calls ÷ {AWS_WRITE_RATE if provider == 'aws' else params['rate']:g}/s)",
            "≤ 1.25x", speed <= 1.25),
    ]


def main() -> None:  # pragma: no cover - a convenience for one provider: python -m benchmarks.calls gcp
    import sys

    provider = sys.argv[1] if len(sys.argv) > 1 else "gcp"
    print(json.dumps(measure(provider, {**DEFAULTS[provider], **json.loads(os.environ.get("PARAMS", "{}"))}),
                     indent=1))


if __name__ == "__main__":
    main()
