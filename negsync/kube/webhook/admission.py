"""The admission decision (pure): which readiness gates a new pod gets, as an AdmissionReview answer.

What it does
    On pod CREATE (and only then: ``readinessGates`` are immutable after creation) the API server
    sends an ``admission.k8s.io/v1`` AdmissionReview.  :func:`mutate` answers with a JSON patch
    adding ``{conditionType: target-health.negsync.io/<binding>}`` for every TargetBinding of the
    pod's namespace that (a) has a valid spec with ``readinessGate: true``, (b) is not being
    deleted, and (c) whose Service exists, has a selector that selects the pod and has the bound
    port (the selection is :func:`negsync.kube.selection.bindings_selecting`, shared with
    drain-wait).  (b) and (c) mirror the controller's own preconditions: the controller writes a
    gate's condition only for bindings it can reconcile, so a gate injected for any other binding
    would keep the pod un-Ready forever.  Gates the pod already declares are never added twice, so
    a re-invocation is harmless.  A gate whose condition type would be invalid (binding name
    longer than 63 characters) is skipped: the API server would reject the *pod* for it, and this
    webhook must never be the reason a pod cannot be created.

Never blocking
    ``failurePolicy: Ignore`` covers an unreachable or slow webhook; everything else is covered
    here: any internal error answers ``allowed: true`` without a patch (and is logged), and only
    a request that is not an AdmissionReview at all raises :class:`MalformedReview` (the server
    answers it with an HTTP 400).  Answers are computed from the controller's in-memory caches,
    with no API call on the request path.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from negsync.kube.caches import GATE_PREFIX, BindingRecord
from negsync.kube.selection import ServiceLookup, bindings_selecting

log = logging.getLogger("negsync.webhook")

ADMISSION_API_VERSION = "admission.k8s.io/v1"
INJECT_LABEL = "negsync.io/readiness-gate-inject"
INJECT_VALUE = "enabled"

# The name part of a qualified name (a condition type is "<dns prefix>/<name>").
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class MalformedReview(ValueError):
    """The request body is not an ``admission.k8s.io/v1`` AdmissionReview with a request and uid."""


def request_of(review: Any) -> Mapping[str, Any]:
    """The ``request`` of an AdmissionReview; raises :class:`MalformedReview`."""
    if not isinstance(review, Mapping):
        raise MalformedReview("body is not a JSON object")
    if review.get("kind") != "AdmissionReview" or review.get("apiVersion") != ADMISSION_API_VERSION:
        raise MalformedReview(f"expected kind AdmissionReview, apiVersion {ADMISSION_API_VERSION}")
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReview("request is missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing")
    return request


def _response(uid: str, patch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def gates_for(*, namespace: str, labels: Mapping[str, str], bindings: Iterable[BindingRecord], services: ServiceLookup,
              provider: str | None = None) -> list[str]:
    """The readiness-gate condition types a new pod with ``labels`` in ``namespace`` should carry, sorted."""
    wanted: set[str] = set()
    for selecting in bindings_selecting(namespace=namespace, labels=labels, bindings=bindings, services=services):
        record, spec = selecting.record, selecting.spec
        if record.deleting or not spec.readiness_gate or (provider is not None and spec.target.kind != provider):
            continue
        if selecting.service.port_named(spec.service_port) is None:
            continue
        if not _QUALIFIED_NAME.match(record.name):
            log.warning("binding name too long for a readiness gate; not injected",
                        extra={"binding": f"{namespace}/{record.name}"})
            continue
        wanted.add(f"{GATE_PREFIX}{record.name}")
    return sorted(wanted)


def mutate(review: Any, *, bindings: Iterable[BindingRecord], services: ServiceLookup,
           namespace_labels: Mapping[str, str] | None = None, provider: str | None = None,
           on_error: Callable[[], None] | None = None) -> dict[str, Any]:
    """The AdmissionReview answer to ``review``; raises only :class:`MalformedReview`.

    ``namespace_labels`` are the labels of the request's namespace when known: a namespace that
    has not opted in gets nothing even if the API server's namespaceSelector let it through (a
    hand-edited configuration).  ``None`` means unknown, and the selector is trusted.
    ``provider`` (e.g. ``"gcp"``) skips bindings for another provider, which this controller
    would never reconcile.  ``on_error`` is told when an internal error made the answer a plain
    "allowed" (the webhook-requests metric counts it as ``error``).
    """
    request = request_of(review)
    uid = str(request["uid"])
    try:
        kind = request.get("kind") or {}
        if request.get("operation") != "CREATE" or kind.get("kind") != "Pod" or kind.get("group", ""):
            return _response(uid)
        if request.get("subResource"):
            return _response(uid)
        if namespace_labels is not None and namespace_labels.get(INJECT_LABEL) != INJECT_VALUE:
            return _response(uid)
        pod = request.get("object")
        if not isinstance(pod, Mapping) or not isinstance(pod.get("spec"), Mapping):
            return _response(uid)  # not our problem: the API server's validation will answer it
        meta = pod.get("metadata") or {}
        # Pods created by a controller usually carry no metadata.namespace yet: the request's is authoritative.
        namespace = str(request.get("namespace") or meta.get("namespace") or "")
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        present = pod["spec"].get("readinessGates")
        existing = {str(g.get("conditionType")) for g in present or [] if isinstance(g, Mapping)}
        missing = [g for g in gates_for(namespace=namespace, labels=labels, bindings=bindings, services=services,
                                        provider=provider) if g not in existing]
        if not missing:
            return _response(uid)
        values = [{"conditionType": gate} for gate in missing]
        patch: list[dict[str, Any]]
        if isinstance(present, list):
            patch = [{"op": "add", "path": "/spec/readinessGates/-", "value": value} for value in values]
        else:  # absent or null: "add" creates (or replaces the null) member
            patch = [{"op": "add", "path": "/spec/readinessGates", "value": values}]
        log.info("readiness gates injected", extra={
            "namespace": namespace, "pod": meta.get("name") or f"{meta.get('generateName') or ''}*", "gates": missing})
        return _response(uid, patch)
    except Exception:
        # Never block a pod creation on our bug: answer without a patch.
        log.exception("webhook mutation failed; pod admitted without readiness gates", extra={"uid": uid})
        if on_error is not None:
            on_error()
        return _response(uid)


__all__ = ["ADMISSION_API_VERSION", "INJECT_LABEL", "INJECT_VALUE", "MalformedReview", "ServiceLookup", "gates_for",
           "mutate", "request_of"]
