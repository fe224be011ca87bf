"""The bad-input corpus (tests/data/bad/): every malformed object gets a clear, specific outcome.

``expectations.yaml`` maps each file to its kind and expected outcome.  Bindings, slices,
Services and pods are applied — each case in its own namespace, with the objects it needs
around it — to one API emulator watched by one running Controller (memory provider; a second one
with the GCP provider against FakeCompute for cases that only matter there).  After every case:
the expected condition reason / Event / ``status.degradedEndpoints`` entry / target members are
asserted, the controller's threads are alive, and a GOOD binding in another namespace still
follows a change made to its Service.  Scenario files run ``negsync simulate FILE`` in a
subprocess: exit 2, one line on stderr naming the field, no traceback.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from negsync.app import Settings
from negsync.core.model import BindingKey, TargetRef
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.compute import FakeCompute
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice, service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).parent / "data" / "bad"
EXPECTATIONS: dict[str, dict[str, Any]] = yaml.safe_load((DATA / "expectations.yaml").read_text())
GATE = "target-health.negsync.io/web"
PROJECT, UID = "proj-negsync", "0f3c2a9e-5b7d-4e21-9a10-5d6f7e8a9b0c"
TB = ("negsync.io/v1alpha1", "TargetBinding")
_SEQ = itertools.count(1)


def test_the_corpus_is_complete() -> None:
    files = {p.name for p in DATA.iterdir() if p.suffix in (".yaml", ".json") and p.name != "expectations.yaml"}
    assert files == set(EXPECTATIONS), f"without expectation: {files - set(EXPECTATIONS)}; missing: {set(EXPECTATIONS) - files}"
    assert len(files) >= 30
    kinds = {e["kind"] for e in EXPECTATIONS.values()}
    assert kinds == {"binding", "slice", "service", "pod", "scenario"}


def cases(*kinds: str) -> list[Any]:
    out = []
    for name, spec in sorted(EXPECTATIONS.items()):
        if spec["kind"] not in kinds:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=spec["xfail"])] if spec.get("xfail") else []
        out.append(pytest.param(name, spec, id=name.removesuffix(".yaml"), marks=marks))
    return out


# -- the cluster the cases are applied to --------------------------------------------------------
class World:
    def __init__(self, provider_name: str) -> None:
        self.kube = KubeApiEmulator(bookmark_interval=0.2).start()
        self.api = client.ApiClient(self.kube.client_configuration())
        self.fake: FakeCompute | None = None
        if provider_name == "gcp":
            from negsync.providers.gcp import GcpProvider

            self.fake = FakeCompute().start()
            # The project's network, and node n1's VM owning the pod ranges the cases use.
            self.fake.add_subnetwork(PROJECT, "us-central1", "default", cidr="10.0.0.0/8")
            self.fake.add_instance(PROJECT, "us-central1-a", "n1", alias_ranges=["10.60.0.0/16", "10.70.0.0/16"])
            provider: Any = GcpProvider(cluster_uid=UID, compute_endpoint=self.fake.api_endpoint,
                                        credentials=self.fake.credentials(), num_retries=0, operation_timeout=5.0,
                                        rate_limit=(1000.0, 1000), http_timeout=5.0)
        else:
            provider = MemoryProvider()
        self.provider = provider
        self.name = provider_name
        settings = Settings(workers=4, sync_min_interval=0.0, health_poll_interval=0.2, resync_period=30.0,
                            identity="corpus", watch_timeout=5, lease_namespace="negsync-system")
        self.controller = Controller(api_client=self.api, provider=provider, settings=settings)
        self.controller.start()
        self.good_ips = ["10.70.0.1"]
        self.kube.create(service(ns="good"))
        self.kube.create(endpoint_slice("web-good", self.good_ips, ns="good", zone="us-central1-a"))
        self.kube.create(binding(ns="good", target=self.target("good"), gate=False))
        wait_for(lambda: self.members("good") == set(self.good_ips), timeout=15, what="the good binding synced")

    def target(self, ns: str) -> dict[str, Any]:
        return {"gcpNeg": {"project": PROJECT, "network": "default"}} if self.name == "gcp" else {"memory": {"name": f"{ns}-web"}}

    def members(self, ns: str) -> set[str]:
        if self.fake is not None:
            from negsync.providers.gcp import neg_name

            name = neg_name(prefix="k8s", cluster_uid=UID, binding=BindingKey(ns, "web"))
            return {ip for project, zone, neg in self.fake.negs() if neg == name
                    for ip, _ in self.fake.endpoints(project, zone, neg)}
        assert isinstance(self.provider, MemoryProvider)
        return {m.ip for m in self.provider.members(TargetRef("memory", "local", f"{ns}-web"))}

    def still_healthy(self) -> None:
        """The controller survived and a good binding still follows its Service."""
        ctl = self.controller
        assert ctl.engine is not None, "the controller stopped leading"
        assert all(t.is_alive() for t in ctl.manager.threads if t.name.startswith("watch-")), "a watcher thread died"
        assert all(t.is_alive() for t in ctl.engine._threads), "a worker thread died"
        self.good_ips.append(f"10.70.{len(self.good_ips) // 250}.{len(self.good_ips) % 250 + 1}")
        self.kube.update(endpoint_slice("web-good", self.good_ips, ns="good", zone="us-central1-a"))
        wait_for(lambda: self.members("good") == set(self.good_ips), timeout=10, what="the good binding still syncs")

    def close(self) -> None:
        self.controller.stop(timeout=5)
        self.api.close()
        self.kube.stop()
        if self.fake is not None:
            self.fake.stop()


class Worlds:
    def __init__(self) -> None:
        self._made: dict[str, World] = {}

    def get(self, provider: str) -> World:
        if provider not in self._made:
            self._made[provider] = World(provider)
        return self._made[provider]

    def close(self) -> None:
        for world in self._made.values():
            world.close()


@pytest.fixture(scope="module")
def worlds() -> Iterator[Worlds]:
    made = Worlds()
    try:
        yield made
    finally:
        made.close()


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return loaded


def place(obj: dict[str, Any], ns: str) -> dict[str, Any]:
    placed = copy.deepcopy(obj)
    placed.setdefault("metadata", {})["namespace"] = ns
    return placed


def conditions(world: World, ns: str, name: str) -> dict[str, Any]:
    obj = world.kube.get(*TB, ns, name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def assert_reason(world: World, ns: str, name: str, expect: dict[str, Any]) -> None:
    reason = expect["reason"]
    ready = wait_for(lambda: (c := conditions(world, ns, name).get("Ready")) and c["reason"] == reason and c,
                     what=f"Ready reason {reason}")
    assert ready["status"] == "False"
    assert conditions(world, ns, name)["Degraded"]["status"] == "True"
    if expect.get("field"):
        assert expect["field"] in ready["message"], ready["message"]
    events = wait_for(lambda: [e for e in world.kube.list_objects("v1", "Event", ns)
                               if e["reason"] == reason and e["involvedObject"]["name"] == name], what="Event")
    assert events[0]["type"] == "Warning"


def context(world: World, ns: str, *, skip: str = "", slice_ips: tuple[str, ...] = ("10.60.0.1",),
            gate: bool = False, pod_name: str = "") -> None:
    if skip != "service":
        world.kube.create(service(ns=ns))
    if skip != "binding":
        world.kube.create(binding(ns=ns, target=world.target(ns), gate=gate))
    if skip != "slice":
        world.kube.create(endpoint_slice("web-abc", list(slice_ips), ns=ns, zone="us-central1-a",
                                         pods={ip: pod_name for ip in slice_ips} if pod_name else None))


@pytest.mark.parametrize(("name", "spec"), cases("binding", "service", "slice", "pod"))
def test_bad_object(worlds: Worlds, name: str, spec: dict[str, Any]) -> None:
    world = worlds.get(spec.get("provider", "memory"))
    expect = spec["expect"]
    ns = f"case-{next(_SEQ)}"
    obj = place(load(name), ns)
    kind = spec["kind"]
    if kind == "binding":
        if "memory" in ((obj.get("spec") or {}).get("target") or {}) if isinstance(obj.get("spec"), dict) else False:
            obj["spec"]["target"]["memory"]["name"] = f"{ns}-bad"
        context(world, ns, skip="binding")
        world.kube.create(obj)
        assert_reason(world, ns, "bad", expect)
    elif kind == "service":
        context(world, ns, skip="service")
        world.kube.create(obj)
        assert_reason(world, ns, "web", expect)
    elif kind == "slice":
        if spec.get("generate"):
            generated = spec["generate"]
            template = obj["endpoints"][0]
            obj["endpoints"] = [{**template, "addresses": [f"{generated['prefix']}.{i // 250}.{i % 250 + 1}"]}
                                for i in range(generated["endpoints"])]
        context(world, ns, skip="slice")
        world.kube.create(obj)
        if "skipped_reason_contains" in expect:
            wanted = expect["skipped_reason_contains"]

            def degraded() -> list[dict[str, str]]:
                status = (world.kube.get(*TB, ns, "web") or {}).get("status") or {}
                return [d for d in status.get("degradedEndpoints") or [] if wanted in d["reason"]]

            wait_for(degraded, what=f"degradedEndpoints entry {wanted!r}")
            assert conditions(world, ns, "web")["Degraded"]["reason"] == "EndpointsSkipped"
            assert any(e["reason"] == "EndpointSkipped" for e in world.kube.list_objects("v1", "Event", ns))
        if "registered" in expect:
            wait_for(lambda: len(world.members(ns)) == expect["registered"], timeout=30, what="all registered")
            wait_for(lambda: (conditions(world, ns, "web").get("Ready") or {}).get("status") == "True",
                     timeout=20, what="Ready")
    elif kind == "pod":
        context(world, ns, gate=True, pod_name="web-bad")
        world.kube.create(obj)
    if "members" in expect:
        wanted_members = set(expect["members"])
        # The binding has reconciled this slice (status written), so "members" is a settled answer.
        if kind in ("slice", "pod"):
            wait_for(lambda: (conditions(world, ns, "web").get("Synced") or {}).get("status") == "True",
                     what="binding synced")
        wait_for(lambda: world.members(ns) == wanted_members, what=f"members {sorted(wanted_members)}")
    if kind == "pod":
        pod = world.kube.get("v1", "Pod", ns, "web-bad") or {}
        ours = [c for c in (pod.get("status") or {}).get("conditions") or [] if isinstance(c, dict) and c.get("type") == GATE]
        if expect.get("gate_condition"):
            ours = wait_for(lambda: [c for c in ((world.kube.get("v1", "Pod", ns, "web-bad") or {}).get("status") or {})
                                     .get("conditions") or [] if c.get("type") == GATE and c.get("status") == "True"],
                            what="the gate condition")
            assert len(ours) == 1, ours
        else:
            assert not ours, f"a gate condition was written on a pod without our gate: {ours}"
    world.still_healthy()


# -- scenario files ------------------------------------------------------------------------------
SCENARIOS = sorted(n for n, s in EXPECTATIONS.items() if s["kind"] == "scenario")


@pytest.fixture(scope="module")
def simulated() -> dict[str, subprocess.CompletedProcess[str]]:
    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "negsync", "simulate", str(DATA / name)], capture_output=True,
                              text=True, timeout=60, cwd=DATA)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(SCENARIOS, pool.map(run, SCENARIOS), strict=True))


@pytest.mark.parametrize(("name", "spec"), cases("scenario"))
def test_bad_scenario(simulated: dict[str, subprocess.CompletedProcess[str]], name: str, spec: dict[str, Any]) -> None:
    done = simulated[name]
    expect = spec["expect"]
    assert done.returncode == expect["cli_exit"], done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"negsync simulate: error: {expect['field']}: "), lines[0]
    assert done.stdout == ""
