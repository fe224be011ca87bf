"""Builders for AdmissionReview requests and the webhook's caches, shared by the webhook's tests."""

from __future__ import annotations

import uuid
from typing import Any

from negsync.kube.caches import Caches, decode_binding, decode_service

GATE = "target-health.negsync.io/"


def put_binding(caches: Caches, raw: dict[str, Any]) -> None:
    caches.bindings.put((raw["metadata"]["namespace"], raw["metadata"]["name"]), decode_binding(raw))


def put_service(caches: Caches, raw: dict[str, Any]) -> None:
    caches.services.put((raw["metadata"]["namespace"], raw["metadata"]["name"]), decode_service(raw))


def review(*, ns: str = "shop", labels: dict[str, str] | None = None, operation: str = "CREATE",
           gates: list[str] | None = None, kind: str = "Pod") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "web"}]}
    if gates is not None:
        spec["readinessGates"] = [{"conditionType": g} for g in gates]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "namespace": ns,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            # As a ReplicaSet creates it: generateName, no name, no namespace in the object.
            "object": {"apiVersion": "v1", "kind": kind,
                       "metadata": {"generateName": "web-5d9c7-", "labels": labels or {"app": "web"}}, "spec": spec},
            "oldObject": None,
            "dryRun": False,
        },
    }
