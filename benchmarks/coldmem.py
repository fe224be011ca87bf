"""Benchmark 5 — cold-start memory: N realistic pods listed into the caches, peak RSS vs the limit.

Method.  The parent starts the Kubernetes API emulator and seeds it Python-side with N pods as a
real cluster stores them (~5 KB of JSON each: an app container and an Istio-style sidecar with
env, probes, resources and mounts, an init container, ``managedFields`` from three managers, owner
references, status with conditions and container statuses), spread over Deployments of 20 pods,
each with its Service, EndpointSlice and TargetBinding (memory target), on 100 Nodes.  Then it
runs the real CLI as the Deployment does (``python -m negsync controller --provider memory``,
leader election on) in a child process and polls ``/readyz``: ready means all five lists are
decoded into the caches and the watches started.  The figure is the child's peak resident set
(``VmHWM`` from ``/proc/<pid>/status``) at that moment, compared with the memory limit of the
container in ``deploy/base/deployment.yaml`` (read from the manifest, so the two cannot drift).
"Far below" is taken as at most half the limit: a relist after a long partition holds the old
records and the new ones for a moment, and the cluster keeps growing.

The lists are made as client-go makes them (``resourceVersion=0`` with ``limit=500``, which the
watch cache answers whole — see :mod:`negsync.kube.watching`), so the pod list arrives as one
response of N × 5 KB; it is decoded item by item as it streams in, never held whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import ROOT, Row, median

DEFAULTS: dict[str, Any] = {"pods": 20_000}
QUICK: dict[str, Any] = {"pods": 2_000}
PODS_PER_APP = 20
NODES = 100
NAMESPACE = "bench"
ZONES = ("europe-west1-b", "europe-west1-c", "europe-west1-d")


def memory_limit_bytes() -> int:
    """The controller container's memory limit in the shipped Deployment."""
    import yaml

    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for doc in yaml.safe_load_all((ROOT / "deploy" / "base" / "deployment.yaml").read_text()):
        if doc and doc.get("kind") == "Deployment":
            limit = str(doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])
            for suffix, factor in units.items():
                if limit.endswith(suffix):
                    return int(float(limit[: -len(suffix)]) * factor)
            return int(limit)
    raise RuntimeError("no Deployment in deploy/base/deployment.yaml")


def _ip(n: int) -> str:
    return f"10.{8 + n // 65536}.{n // 256 % 256}.{n % 256}"


def _managed(manager: str, operation: str, when: str, fields: dict[str, Any], subresource: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": "v1", "time": when,
                             "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    return entry


def realistic_pod(n: int) -> dict[str, Any]:
    """A pod of a Deployment with a service-mesh sidecar, as ``kubectl get pod -o json`` shows one."""
    app = f"app-{n // PODS_PER_APP:04d}"
    name = f"{app}-7d9f8c6b5-{n:05d}"
    when = "2026-11-30T10:00:00Z"
    node = f"gke-pool-1-node-{n % NODES:03d}"
    container_fields = {"f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {},
                        "f:readinessProbe": {}, "f:env": {}, "f:volumeMounts": {}, "f:terminationMessagePath": {}}
    env = [{"name": k, "value": v} for k, v in (
        ("LOG_LEVEL", "info"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.observability:4317"),
        ("SERVICE_NAME", app))]
    env.append({"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}})
    mounts = [{"name": "kube-api-access-x7k2p", "readOnly": True,
               "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
              {"name": "config", "mountPath": "/etc/app"}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": f"{app}-7d9f8c6b5-", "namespace": NAMESPACE,
            "labels": {"app": app, "pod-template-hash": "7d9f8c6b5", "version": "v3",
                       "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": app},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-30T09:59:00Z",
                            "sidecar.istio.io/status": json.dumps({"initContainers": ["istio-init"],
                                                                   "containers": ["istio-proxy"],
                                                                   "volumes": ["istio-envoy", "istio-data"]}),
                            "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7d9f8c6b5",
                                 "uid": f"6f1c2d3e-0000-4000-8000-{n // PODS_PER_APP:012d}",
                                 "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [
                _managed("kube-controller-manager", "Update", when, {
                    "f:metadata": {"f:generateName": {}, "f:labels": {"f:app": {}, "f:pod-template-hash": {}},
                                   "f:ownerReferences": {}},
                    "f:spec": {"f:containers": {'k:{"name":"app"}': container_fields}, "f:dnsPolicy": {},
                               "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                               "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}),
                _managed("istio-sidecar-injector", "Update", when, {
                    "f:spec": {"f:containers": {'k:{"name":"istio-proxy"}': container_fields},
                               "f:initContainers": {'k:{"name":"istio-init"}': {"f:image": {}, "f:name": {}}}}}),
                _managed("kubelet", "Update", when, {
                    "f:status": {"f:conditions": {'k:{"type":"Ready"}': {"f:lastTransitionTime": {}, "f:status": {}},
                                                  'k:{"type":"ContainersReady"}': {"f:status": {}}},
                                 "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
                                 "f:podIPs": {}, "f:startTime": {}}}, subresource="status"),
            ],
        },
        "spec": {
            "nodeName": node, "serviceAccountName": "default", "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 60, "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
            "securityContext": {"runAsNonRoot": True, "fsGroup": 1000},
            "tolerations": [{"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300} for k in ("not-ready", "unreachable")],
            "initContainers": [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.24.1",
                                "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"]}],
            "containers": [
                {"name": "app", "image": f"europe-docker.pkg.dev/shop/apps/{app}:3.14.2",
                 "imagePullPolicy": "IfNotPresent", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                 "env": env, "volumeMounts": mounts,
                 "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                                    "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                                    "failureThreshold": 3},
                 "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c",
                                                                "curl -fsS http://negsync.negsync-system:8080/drain-wait"
                                                                " || sleep 30"]}}},
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.1",
                 "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                 "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
                 "env": env[:2], "volumeMounts": mounts[:1],
                 "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021},
                                    "periodSeconds": 15, "failureThreshold": 4}},
            ],
            "volumes": [{"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
                        {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
        },
        "status": {
            "phase": "Running", "hostIP": f"10.132.0.{n % NODES + 2}", "podIP": _ip(n), "podIPs": [{"ip": _ip(n)}],
            "qosClass": "Burstable", "startTime": when,
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": when}
                           for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                     "PodScheduled")],
            "containerStatuses": [
                {"name": c, "ready": True, "restartCount": 0, "started": True, "image": image,
                 "imageID": f"{image.split(':')[0]}@sha256:{'ab' * 32}",
                 "containerID": f"containerd://{'%064x' % (n * 2 + i)}",
                 "state": {"running": {"startedAt": when}}}
                for i, (c, image) in enumerate((("app", f"europe-docker.pkg.dev/shop/apps/{app}:3.14.2"),
                                                ("istio-proxy", "docker.io/istio/proxyv2:1.24.1")))],
        },
    }


def seed(kube: Any, pods: int) -> int:
    """Seed the cluster; returns the JSON size of the pods in bytes."""
    from benchmarks.pipeline import binding_obj, service_obj

    for i in range(NODES):
        kube.create({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": f"gke-pool-1-node-{i:03d}",
                                  "labels": {"topology.kubernetes.io/zone": ZONES[i % len(ZONES)]}},
                     "spec": {"providerID": f"gce://shop/{ZONES[i % len(ZONES)]}/gke-pool-1-node-{i:03d}"}})
    size = 0
    for n in range(pods):
        obj = realistic_pod(n)
        size += len(json.dumps(obj, separators=(",", ":")))
        kube.create(obj)
    for a in range((pods + PODS_PER_APP - 1) // PODS_PER_APP):
        app = f"app-{a:04d}"
        kube.create(service_obj(NAMESPACE, app))
        members = range(a * PODS_PER_APP, min(pods, (a + 1) * PODS_PER_APP))
        kube.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{app}-abcde", "namespace": NAMESPACE,
                                  "labels": {"kubernetes.io/service-name": app}},
                     "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                     "endpoints": [{"addresses": [_ip(n)], "conditions": {"ready": True, "serving": True,
                                                                          "terminating": False},
                                    "nodeName": f"gke-pool-1-node-{n % NODES:03d}", "zone": ZONES[n % NODES % 3],
                                    "targetRef": {"kind": "Pod", "namespace": NAMESPACE,
                                                  "name": f"{app}-7d9f8c6b5-{n:05d}"}} for n in members]})
        kube.create(binding_obj(NAMESPACE, app))
    return size


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one(params: dict[str, Any]) -> dict[str, Any]:
    from tests.emulators.kubeapi import KubeApiEmulator

    kube = KubeApiEmulator(bookmark_interval=5.0)
    kube.start()
    workdir = tempfile.TemporaryDirectory(prefix="negsync-coldmem-")
    proc: subprocess.Popen[bytes] | None = None
    try:
        pod_bytes = seed(kube, params["pods"])
        kubeconfig = kube.write_kubeconfig(Path(workdir.name) / "kubeconfig")
        health = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "OTEL_", "KUBERNETES_"))}
        env.update({"POD_NAME": "negsync-bench-0", "POD_NAMESPACE": "negsync-system", "NO_PROXY": "127.0.0.1,localhost"})
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "negsync", "controller", "--kubeconfig", str(kubeconfig), "--provider", "memory",
             "--leader-elect", "--health-addr", f"127.0.0.1:{health}", "--metrics-addr", "127.0.0.1:0",
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = started + params.get("timeout", 600.0)
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as response:
                    ready = response.status == 200
            except OSError:
                ready = False
            if ready:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        peak = _peak_rss(proc.pid) if proc.poll() is None else 0
        if not ready:
            stderr = proc.stderr.read().decode()[-3000:] if proc.poll() is not None and proc.stderr else ""
            raise RuntimeError(f"controller not ready after {elapsed:.0f} s: {stderr}")
        return {"peak": peak, "ready_s": elapsed, "pod_bytes": pod_bytes}
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        kube.stop()
        workdir.cleanup()


def run(*, quick: bool = False, repeat: int = 3, **overrides: Any) -> list[Row]:
    params = {**(QUICK if quick else DEFAULTS), **overrides}
    results = [_one(params) for _ in range(repeat)]
    limit = memory_limit_bytes()
    peak = median([r["peak"] for r in results])
    mib = 2**20
    return [
        Row("scale", f"{params['pods']:,} pods ({median([r['pod_bytes'] for r in results]) / params['pods'] / 1024:.1f} KB "
            f"of JSON each, {median([r['pod_bytes'] for r in results]) / mib:.0f} MiB in all), "
            f"{params['pods'] // PODS_PER_APP:,} Services/EndpointSlices/TargetBindings, {NODES} Nodes; median of {repeat}"),
        Row("process start → ready (all lists in the caches)", f"{median([r['ready_s'] for r in results]):.1f} s"),
        Row("peak RSS of the controller at ready (VmHWM)", f"{peak / mib:.0f} MiB",
            f"≤ 50% of the Deployment's limit ({limit / mib:.0f} MiB)", peak <= limit / 2),
        Row("peak RSS / memory limit", f"{peak / limit:.0%}"),
    ]
