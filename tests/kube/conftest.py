"""Fixtures: a Kubernetes API emulator on loopback and a real kubernetes client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.emulators.kubeapi import KubeApiEmulator


@pytest.fixture
def kube() -> Iterator[KubeApiEmulator]:
    emulator = KubeApiEmulator(bookmark_interval=0.2)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def api_client(kube: KubeApiEmulator) -> Iterator[client.ApiClient]:
    api = client.ApiClient(kube.client_configuration())
    try:
        yield api
    finally:
        api.close()


def pod(name: str, *, ns: str = "shop", labels: dict[str, str] | None = None, ip: str = "", node: str = "n1",
        gates: list[str] | None = None, containers_ready: bool = True) -> dict[str, Any]:
    """A scheduled pod; ``containers_ready`` is the kubelet's ContainersReady (its probes pass)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "web"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "web"}],
            "readinessGates": [{"conditionType": g} for g in gates or []],
        },
        "status": {"podIP": ip, "podIPs": [{"ip": ip}] if ip else [], "conditions": [
            {"type": "ContainersReady", "status": "True" if containers_ready else "False"}]},
    }


def service(name: str = "web", *, ns: str = "shop", selector: dict[str, str] | None = None,
            ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": "web"} if selector is None else selector,
            "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def endpoint_slice(name: str, ips: list[str], *, ns: str = "shop", svc: str = "web", terminating: tuple[str, ...] = (),
                   not_ready: tuple[str, ...] = (), zone: str = "z1", port: int = 8080,
                   pods: dict[str, str] | None = None) -> dict[str, Any]:
    pods = pods or {}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {
                    "ready": ip not in terminating and ip not in not_ready,
                    "serving": ip not in not_ready,
                    "terminating": ip in terminating,
                },
                "nodeName": "n1",
                "zone": zone,
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pods.get(ip, f"pod-{ip.replace('.', '-')}")},
            }
            for ip in ips
        ],
    }


def binding(name: str = "web", *, ns: str = "shop", svc: str = "web", port: Any = "http",
            target: dict[str, Any] | None = None, gate: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "negsync.io/v1alpha1",
        "kind": "TargetBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "serviceRef": {"name": svc, "port": port},
            "target": target if target is not None else {"memory": {"name": f"{ns}-{name}"}},
            "readinessGate": gate,
        },
    }
