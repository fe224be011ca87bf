"""Mutating admission for the API emulator: MutatingWebhookConfigurations called over HTTPS.

kube-apiserver runs every write through the webhooks registered in MutatingWebhookConfigurations
before it stores the object.  This module does the same for the emulator's HTTP writes (objects
stored through the Python-side control API skip admission, as if written to etcd directly).
Sources: the API reference for ``admissionregistration.k8s.io/v1`` and ``admission.k8s.io/v1``
("Dynamic Admission Control", https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/)
and apiserver ``pkg/admission/plugin/webhook``:

* **Which webhooks** (``generic/webhook.go`` ``ShouldCallHook``, ``predicates/rules``,
  ``predicates/namespace``, ``predicates/object``): configurations in name order, webhooks in list
  order; a rule matches on operation, API group, version, resource (``*`` and ``pods/*``
  forms) and scope; ``namespaceSelector`` is matched against the labels of the request's
  Namespace (for a Namespace itself, its own labels; cluster-scoped objects always match);
  ``objectSelector`` against the object's labels (old or new on UPDATE).  An absent Namespace
  object counts as one without labels (a real server would have refused the write earlier, in
  NamespaceLifecycle).  ``matchConditions`` and ``matchPolicy: Equivalent`` conversions are not
  evaluated: a webhook with ``matchConditions`` is an error here, stricter than the real server.
* **How it is called** (``pkg/util/webhook``): ``clientConfig.url`` as given, or
  ``clientConfig.service`` resolved to a ready endpoint of the Service's EndpointSlices and the
  target port of the named Service port (the endpoint resolver kube-apiserver uses with
  ``--enable-aggregator-routing``; the emulator has no ClusterIP network), with TLS server name
  ``<service>.<namespace>.svc`` verified against ``caBundle`` (no bundle: the system roots), the
  path plus ``?timeout=<N>s``, and ``timeoutSeconds`` (default 10) bounding the whole call.  The
  request is an ``admission.k8s.io/v1`` AdmissionReview; only webhooks that list ``v1`` in
  ``admissionReviewVersions`` can be called (the emulator speaks no v1beta1).
* **What the answer does** (``mutating/dispatcher.go``): the response must echo the request
  ``uid``; ``allowed: false`` rejects the write with the webhook's status (403 unless it gives a
  code); a ``JSONPatch`` is applied to the object, and a patch that does not apply fails the
  request whatever the failure policy.  Any failure to call — connection refused, TLS
  verification, timeout, non-200, a body that is not an AdmissionReview — is ignored under
  ``failurePolicy: Ignore`` and rejects the write with 500 under ``Fail`` (the v1 default).
  ``reinvocationPolicy: IfNeeded`` is not implemented (each webhook is called once).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

JSON = dict[str, Any]


class AdmissionRejected(Exception):
    """The write is refused: ``code``/``reason``/``message`` become the Status sent back."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass(frozen=True)
class AdmissionCall:
    """A record of one webhook call, for tests: which webhook, and what came of it."""

    configuration: str
    webhook: str
    operation: str
    outcome: str  # "patched", "allowed", "denied", "ignored: <error>", "failed: <error>"


@dataclass(frozen=True)
class Attributes:
    group: str
    version: str
    kind: str
    resource: str
    subresource: str
    namespaced: bool
    operation: str  # CREATE | UPDATE | DELETE
    namespace: str
    name: str
    obj: JSON | None
    old: JSON | None


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty or absent selector matches everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise AdmissionRejected(500, "InternalError", f"invalid label selector operator {op!r}")
    return True


def _rule_matches(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    def has(values: Sequence[str] | None, value: str) -> bool:
        return bool(values) and ("*" in values or value in values)  # type: ignore[operator]

    if not has(rule.get("operations"), attrs.operation):
        return False
    if not has(rule.get("apiGroups"), attrs.group) or not has(rule.get("apiVersions"), attrs.version):
        return False
    wanted = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    if not any(r == "*/*" or r == wanted or (r == "*" and not attrs.subresource)
               or (r == f"{attrs.resource}/*" and attrs.subresource)
               or (r == f"*/{attrs.subresource}" and attrs.subresource) for r in resources):
        return False
    scope = rule.get("scope") or "*"
    return scope == "*" or (scope == "Namespaced") == attrs.namespaced


def _labels(obj: JSON | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def matching_webhooks(configurations: Sequence[JSON], attrs: Attributes,
                      namespace_labels: Mapping[str, str]) -> list[tuple[str, JSON]]:
    found: list[tuple[str, JSON]] = []
    for config in sorted(configurations, key=lambda c: c["metadata"]["name"]):
        for hook in config.get("webhooks") or []:
            if not any(_rule_matches(rule, attrs) for rule in hook.get("rules") or []):
                continue
            if attrs.namespaced or attrs.resource == "namespaces":
                ns_labels = _labels(attrs.obj or attrs.old) if attrs.resource == "namespaces" else namespace_labels
                if not selector_matches(hook.get("namespaceSelector"), ns_labels):
                    continue
            selector = hook.get("objectSelector")
            if not (selector_matches(selector, _labels(attrs.obj)) or
                    (attrs.old is not None and selector_matches(selector, _labels(attrs.old)))):
                continue
            if hook.get("matchConditions"):
                raise AdmissionRejected(500, "InternalError",
                                        f"webhook {hook.get('name')!r}: matchConditions are not emulated")
            found.append((config["metadata"]["name"], hook))
    return found


Resolver = Callable[[str, str, int], tuple[str, int]]  # (namespace, service, port) -> (address, port)


class _VerifiedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address with certificate verification against another name (the Service's)."""

    def __init__(self, address: str, port: int, *, server_name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls_context.wrap_socket(sock, server_hostname=self._server_name)


def _call(hook: JSON, review: JSON, resolve: Resolver) -> JSON:
    """POST the review; the decoded AdmissionReview response or an exception saying why not."""
    timeout = float(hook.get("timeoutSeconds") or 10)
    deadline = time.monotonic() + timeout
    cfg = hook.get("clientConfig") or {}
    context = ssl.create_default_context()
    bundle = cfg.get("caBundle")
    if bundle:
        context = ssl.create_default_context(cadata=base64.b64decode(bundle).decode())
    if cfg.get("url"):
        url = urlsplit(cfg["url"])
        if url.scheme != "https":
            raise ValueError(f"webhook url must be https: {cfg['url']}")
        server_name, address, port = url.hostname or "", url.hostname or "", url.port or 443
        path = url.path or "/"
    elif cfg.get("service"):
        svc = cfg["service"]
        server_name = f"{svc['name']}.{svc['namespace']}.svc"
        address, port = resolve(svc["namespace"], svc["name"], int(svc.get("port") or 443))
        path = svc.get("path") or "/"
    else:
        raise ValueError("clientConfig has neither url nor service")
    body = json.dumps(review).encode()
    conn = _VerifiedHTTPSConnection(address, port, server_name=server_name, context=context, timeout=timeout)
    try:
        conn.request("POST", f"{path}?timeout={int(timeout)}s", body=body,
                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        if conn.sock is not None:
            conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError(f"webhook answered HTTP {response.status}")
    answer = json.loads(data)
    if not isinstance(answer, dict) or answer.get("kind") != "AdmissionReview" or \
            not isinstance(answer.get("response"), dict):
        raise ValueError("response is not an AdmissionReview with a response")
    return answer


def review_for(attrs: Attributes, user: str) -> JSON:
    gvk = {"group": attrs.group, "version": attrs.version, "kind": attrs.kind}
    gvr = {"group": attrs.group, "version": attrs.version, "resource": attrs.resource}
    request: JSON = {
        "uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": attrs.name, "namespace": attrs.namespace, "operation": attrs.operation,
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": attrs.obj, "oldObject": attrs.old, "dryRun": False,
        "options": {"kind": {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions",
                             "DELETE": "DeleteOptions"}[attrs.operation], "apiVersion": "meta.k8s.io/v1"},
    }
    if attrs.subresource:
        request["subResource"] = request["requestSubResource"] = attrs.subresource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def admit(*, configurations: Sequence[JSON], attrs: Attributes, namespace_labels: Mapping[str, str],
          resolve: Resolver, apply_patch: Callable[[JSON, list[Any]], JSON], record: Callable[[AdmissionCall], None],
          user: str = "system:serviceaccount:default:default") -> JSON | None:
    """Run the mutating webhooks for one write; returns the (possibly patched) object."""
    obj = attrs.obj
    for config_name, hook in matching_webhooks(configurations, attrs, namespace_labels):
        name = str(hook.get("name"))
        fail = (hook.get("failurePolicy") or "Fail") == "Fail"
        current = Attributes(**{**attrs.__dict__, "obj": obj})
        review = review_for(current, user)
        try:
            if "v1" not in (hook.get("admissionReviewVersions") or []):
                raise ValueError("webhook does not accept admission.k8s.io/v1 AdmissionReview")
            answer = _call(hook, review, resolve)
            response = answer["response"]
            if response.get("uid") != review["request"]["uid"]:
                raise ValueError(f"expected response.uid={review['request']['uid']!r}, got {response.get('uid')!r}")
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as exc:
            outcome = f"{type(exc).__name__}: {exc}"
            if not fail:
                record(AdmissionCall(config_name, name, attrs.operation, f"ignored: {outcome}"))
                continue
            record(AdmissionCall(config_name, name, attrs.operation, f"failed: {outcome}"))
            raise AdmissionRejected(500, "InternalError",
                                    f'Internal error occurred: failed calling webhook "{name}": {outcome}') from None
        if not response.get("allowed"):
            status = response.get("status") or {}
            record(AdmissionCall(config_name, name, attrs.operation, "denied"))
            raise AdmissionRejected(int(status.get("code") or 403), str(status.get("reason") or "Forbidden"),
                                    f'admission webhook "{name}" denied the request: {status.get("message", "")}')
        patch = response.get("patch")
        if patch:
            if response.get("patchType") != "JSONPatch":
                raise AdmissionRejected(500, "InternalError", f'webhook "{name}": unsupported patchType '
                                                              f'{response.get("patchType")!r}')
            try:
                operations = json.loads(base64.b64decode(patch))
                obj = apply_patch(obj or {}, operations)
            except Exception as exc:
                raise AdmissionRejected(500, "InternalError",
                                        f'Internal error occurred: webhook "{name}" patch: {exc}') from None
            record(AdmissionCall(config_name, name, attrs.operation, "patched"))
        else:
            record(AdmissionCall(config_name, name, attrs.operation, "allowed"))
    return obj
