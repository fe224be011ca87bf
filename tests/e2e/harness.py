"""A rolling update in virtual time: the real controller, the API emulator and a slow in-memory LB.

The test plays the parts Kubernetes would: the Deployment controller (maxSurge / maxUnavailable),
the kubelet (startup, preStop, SIGTERM, SIGKILL) and the EndpointSlice controller.  negsync's real
:class:`~negsync.kube.controller.Controller` reacts through the emulator's watches.  Time is a
:class:`~negsync.core.clock.VirtualClock` shared by the controller, the provider and the harness:
the harness acts at an instant, waits (in real time) until the controller is quiescent — every
write seen by its watchers, the work queue idle, no cloud call running — and only then advances.
So the outcome does not depend on how fast this machine is: the run is deterministic.

Traffic is integrated, not sampled: over each step the LB's routing set is constant (every delay is
a multiple of the step), so requests routed to a pod that stopped accepting are ``rps * dt / n`` per
such pod — the same quantity the simulator's engine computes in closed form.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from negsync.app import Settings
from negsync.core.clock import VirtualClock
from negsync.core.latency import Fixed
from negsync.core.model import TargetRef
from negsync.draining import DrainProgress
from negsync.kube.controller import Controller
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator

NS, SERVICE, BINDING = "shop", "web", "web"
GATE = f"target-health.negsync.io/{BINDING}"
REF = TargetRef("memory", "local", "shop-web")


@dataclass
class Pod:
    name: str
    ip: str
    created: float
    new: bool
    listening_at: float = float("inf")
    deleted_at: float | None = None
    stop_at: float = float("inf")  # stops accepting new requests
    gone_at: float = float("inf")
    drain: DrainProgress | None = None
    in_slice: bool = False

    def accepting(self, t: float) -> bool:
        return self.listening_at <= t < self.stop_at


@dataclass
class Outcome:
    routed_after_stop: float = 0.0
    no_capacity: float = 0.0
    duration: float = 0.0
    min_routed: int = 1_000_000
    steps: int = 0
    log: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    replicas: int = 10
    max_surge: int = 1
    max_unavailable: int = 0
    startup: float = 3.0
    attach_delay: float = 5.0
    detach_delay: float = 4.0
    rps: float = 100.0
    grace: float = 60.0
    pre_stop_sleep: float = 0.0
    readiness_gate: bool = False
    drain_wait: bool = False
    drain_margin: float = 5.0
    dt: float = 0.5
    max_time: float = 400.0


class RollingUpdate:
    def __init__(self, kube: KubeApiEmulator, api_client: Any, plan: Plan) -> None:
        self.kube = kube
        self.plan = plan
        self.clock = VirtualClock(start=1000.0)
        self.provider = MemoryProvider(clock=self.clock, attach_delay=Fixed(plan.attach_delay),
                                       detach_delay=Fixed(plan.detach_delay), deregistration_delay=30.0)
        settings = Settings(workers=2, sync_min_interval=0.0, health_poll_interval=plan.dt, resync_period=600.0,
                            gate_timeout=3600.0, identity="e2e", watch_timeout=30)
        self.controller = Controller(api_client=api_client, provider=self.provider, settings=settings,
                                     clock=self.clock)
        self.drain = self.controller.drain_wait(margin=plan.drain_margin)
        self.pods: list[Pod] = []
        self._seq = 0
        self._rv: dict[str, int] = {}
        self.outcome = Outcome()

    # -- the cluster's side -------------------------------------------------------------------------
    def _new_pod(self, *, new: bool, now: float) -> Pod:
        self._seq += 1
        pod = Pod(name=f"{'new' if new else 'old'}-{self._seq}", ip=f"10.2.0.{self._seq}", created=now, new=new)
        spec_gates = [{"conditionType": GATE}] if (new and self.plan.readiness_gate) or (
            not new and self.plan.readiness_gate) else []
        obj = self.kube.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": NS, "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "web"}], "readinessGates": spec_gates},
            "status": {"podIP": pod.ip, "podIPs": [{"ip": pod.ip}], "conditions": []},
        })
        self._rv["pods"] = int(obj["metadata"]["resourceVersion"])
        self.pods.append(pod)
        return pod

    def _containers_ready(self, pod: Pod) -> None:
        """The kubelet: the pod's probes pass (a gated not-ready endpoint is registered only then)."""
        obj = self.kube.patch("v1", "Pod", NS, pod.name,
                              {"status": {"conditions": [{"type": "ContainersReady", "status": "True"}]}},
                              patch_type="strategic", subresource="status")
        self._rv["pods"] = max(self._rv.get("pods", 0), int(obj["metadata"]["resourceVersion"]))

    def _gate_true(self, pod: Pod) -> bool:
        obj = self.kube.get("v1", "Pod", NS, pod.name) or {}
        return any(c.get("type") == GATE and c.get("status") == "True"
                   for c in (obj.get("status") or {}).get("conditions") or [])

    def ready(self, pod: Pod, t: float) -> bool:
        if pod.deleted_at is not None or t < pod.listening_at:
            return False
        return not self.plan.readiness_gate or self._gate_true(pod)

    def _write_slice(self, t: float) -> None:
        endpoints = []
        for pod in self.pods:
            if not pod.in_slice:
                continue
            terminating = pod.deleted_at is not None
            ready = self.ready(pod, t)
            endpoints.append({
                "addresses": [pod.ip],
                "conditions": {"ready": ready, "serving": ready or (terminating and pod.accepting(t)),
                               "terminating": terminating},
                "nodeName": "n1", "zone": "z1",
                "targetRef": {"kind": "Pod", "namespace": NS, "name": pod.name},
            })
        body = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-x", "namespace": NS, "labels": {"kubernetes.io/service-name": SERVICE}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }
        current = self.kube.get("discovery.k8s.io/v1", "EndpointSlice", NS, "web-x")
        obj = self.kube.update(body) if current is not None else self.kube.create(body)
        self._rv["endpointslices"] = max(self._rv.get("endpointslices", 0), int(obj["metadata"]["resourceVersion"]))

    def setup(self) -> None:
        self.kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NS},
                          "spec": {"selector": {"app": "web"},
                                   "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
        now = self.clock.now()
        for _ in range(self.plan.replicas):
            pod = self._new_pod(new=False, now=now - 100)
            pod.listening_at = now - 100
            pod.in_slice = True
            self._containers_ready(pod)
        self.provider.create_foreign(REF, [], owner=None)  # the target exists before the controller
        self._write_slice(now)
        obj = self.kube.create({
            "apiVersion": "negsync.io/v1alpha1", "kind": "TargetBinding",
            "metadata": {"name": BINDING, "namespace": NS},
            "spec": {"serviceRef": {"name": SERVICE, "port": "http"}, "target": {"memory": {"name": "shop-web"}},
                     "readinessGate": self.plan.readiness_gate},
        })
        self._rv["targetbindings"] = int(obj["metadata"]["resourceVersion"])
        self.controller.start()
        # Old pods start attached and healthy, as after a long-ago rollout.
        deadline = time.monotonic() + 20
        while len(self.provider.members(REF)) < self.plan.replicas:
            assert time.monotonic() < deadline, "initial sync"
            self.quiesce()
            self.clock.advance(self.plan.attach_delay)
        self.clock.advance(self.plan.attach_delay + self.plan.dt)
        self.quiesce()

    # -- waiting for the controller ----------------------------------------------------------------
    def _watchers_caught_up(self) -> bool:
        for watcher in self.controller.watchers:
            wanted = self._rv.get(watcher.kind.name)
            if wanted is not None and int(watcher.resource_version or 0) < wanted:
                return False
        return all(w.synced.is_set() for w in self.controller.watchers)

    def _idle(self) -> bool:
        engine = self.controller.engine
        if engine is None:
            return False
        return self._watchers_caught_up() and not engine.queue.busy() and not engine.reconciler.busy()

    def quiesce(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 3:  # three idle looks in a row: nothing in transit between them
            calm = calm + 1 if self._idle() else 0
            assert time.monotonic() < deadline, "controller did not quiesce"
            time.sleep(0.005)

    # -- the rollout -------------------------------------------------------------------------------
    def _available(self, t: float) -> int:
        return sum(1 for p in self.pods if p.new and self.ready(p, t))

    def run(self) -> Outcome:
        plan, out = self.plan, self.outcome
        start = self.clock.now()
        self.setup()
        start = self.clock.now()
        old = [p for p in self.pods if not p.new]
        while True:
            t = self.clock.now()
            changed = False
            # Deployment controller: surge new pods, delete old ones as new ones become available
            available = self._available(t)
            deleted = sum(1 for p in old if p.deleted_at is not None)
            allowed_deleted = min(len(old), available + plan.max_unavailable)
            for pod in old:
                if deleted >= allowed_deleted:
                    break
                if pod.deleted_at is None:
                    pod.deleted_at = t
                    pod.drain = DrainProgress(started=t, deadline=t + plan.grace)
                    deleted += 1
                    changed = True
            news = [p for p in self.pods if p.new]
            alive_old = len(old) - deleted
            while len(news) < plan.replicas and len(news) + alive_old < plan.replicas + plan.max_surge:
                pod = self._new_pod(new=True, now=t)
                pod.listening_at = t + plan.startup
                news.append(pod)
            # kubelet: startup, preStop, termination
            for pod in self.pods:
                if pod.new and not pod.in_slice and t >= pod.listening_at:
                    pod.in_slice = True
                    self._containers_ready(pod)
                    changed = True
                if pod.deleted_at is not None and pod.stop_at == float("inf"):
                    if plan.drain_wait:
                        assert pod.drain is not None
                        reply = self.drain.step(NS, pod.name, [pod.ip], pod.drain)
                        if reply is not None:
                            assert reply[0] == 200, reply
                            pod.stop_at = t
                    elif t >= pod.deleted_at + plan.pre_stop_sleep:
                        pod.stop_at = t
                    if pod.stop_at != float("inf"):
                        pod.gone_at = min(pod.deleted_at + plan.grace, t + 1.0)
                if t >= pod.gone_at and pod.in_slice:
                    pod.in_slice = False
                    changed = True
            if changed or any(p.in_slice and p.new and not p.deleted_at for p in self.pods):
                self._write_slice(t)
            self.quiesce()
            # traffic over [t, t + dt)
            routed = self.provider.routed(REF, at=t)
            by_ip = {p.ip: p for p in self.pods}
            out.min_routed = min(out.min_routed, len(routed))
            if not routed:
                out.no_capacity += plan.rps * plan.dt
            else:
                stopped = sum(1 for m in routed if not by_ip[m.ip].accepting(t))
                out.routed_after_stop += plan.rps * plan.dt * stopped / len(routed)
            out.steps += 1
            done = all(self.ready(p, t) for p in news) and len(news) == plan.replicas and all(
                p.gone_at <= t for p in old)
            if done:
                out.duration = t - start
                return out
            assert t - start < plan.max_time, f"rollout did not finish: {self.describe(t)}"
            self.clock.advance(plan.dt)
            self.quiesce()

    def describe(self, t: float) -> str:
        return ", ".join(f"{p.name}(ready={self.ready(p, t)}, del={p.deleted_at}, stop={p.stop_at})" for p in self.pods)

    def close(self) -> None:
        self.controller.stop(timeout=5)


