"""In-process Kubernetes API server emulator for tests.

The real ``kubernetes`` Python client — and the real ``kubectl`` — talk to this
server over HTTP (or HTTPS with a bearer token) on 127.0.0.1, so controller code
can be tested end to end without a cluster.  The core is stdlib only; TLS
certificates, CRD schemas (PyYAML) and CEL rules (cel-python) are imported when
used.

Design
------
* **Storage.** One dict keyed by ``(resource key, namespace, name)`` holds
  every object as plain JSON (``dict``).  A single ``threading.Condition``
  guards storage, the resourceVersion counter and the history; every write
  (HTTP or Python-side control API) goes through the same code path, so both
  emit identical watch events.
* **resourceVersion.** One global integer, like etcd's revision.  Each write
  that changes an object bumps it and appends a ``_HistoryEvent`` (type, new
  object, previous object).  A write that changes nothing is a no-op: same
  resourceVersion, no event (as the real API does for no-op updates).
* **History window.** The history is a deque of at most ``max_history``
  events.  Events older than the window, or dropped by ``compact()``, are
  gone; a watch that starts before the oldest retained event gets the same
  ``410 Expired`` ERROR event as kube-apiserver's watch cache.
* **Watch fan-out.** Each watch request is served by its own handler thread
  that keeps a cursor (last resourceVersion sent), waits on the condition for
  new history, and filters events through the request's namespace and
  label/field selectors.  Like the watch cache, an object that stops matching
  a selector is reported as DELETED (previous content, new resourceVersion)
  and one that starts matching as ADDED.  Output is newline-delimited JSON in
  HTTP/1.1 chunked encoding.  ``drop_watches()`` shuts the sockets down without
  the terminating zero-length chunk so clients see a truncated response.

Copied from kube-apiserver
--------------------------
* paged lists (``limit``/``continue`` tokens, ``remainingItemCount``, 410 for a
  compacted continue token) and list ``resourceVersion``/``resourceVersionMatch``
  semantics, including resourceVersion "0" answered whole by the watch cache
  and 504 "Too large resource version" (see ``KubeApiEmulator._list``);
* what kubectl reads first (``tests/emulators/kube_discovery.py``): discovery
  with short names and categories, OpenAPI v3 advertising ``fieldValidation``,
  Tables with a CRD's printer columns; CustomResourceDefinitions serve their
  kinds once created (Established at once) and take their objects with them;
* list resourceVersion, label selectors (``=``, ``==``, ``!=``, ``in``,
  ``notin``, exists, ``!``exists), field selectors with per-resource supported
  fields (unsupported field labels are a 400 like the real API);
* watch from a resourceVersion, from ""/"0" (synthetic ADDED first), from a
  future resourceVersion (silent until the store passes it, as the watch cache),
  ``timeoutSeconds``, ``allowWatchBookmarks``, 410 Expired after compaction,
  selector transitions reported as ADDED/DELETED;
* status subresource isolation (main resource writes keep stored status,
  ``/status`` writes keep everything except status; for core types the status
  endpoint may also change labels and annotations, as the real strategies
  allow), create-time status reset for pods, services and custom resources;
  a GET of ``/status`` returns the whole object, as kube-apiserver's status
  REST storage does (``kubectl patch --subresource=status`` reads it first,
  then PATCHes ``/status``; tests/kube/test_runbook.py runs that);
* ``metadata.generation`` for custom resources and pods (bumped on spec
  change and when deletion with finalizers starts);
* strategic merge patch with the merge keys a controller typically touches
  (conditions by ``type``, containers by ``name``, finalizers as a set,
  ``$patch: delete``, ``$deleteFromPrimitiveList``), JSON merge patch,
  JSON patch (422 on a failed ``test``), 415 for strategic merge on custom
  resources;
* optimistic concurrency: 409 on stale resourceVersion, 422 when a PUT to a
  resource that disallows unconditional update omits it, 409 for a PUT with a
  different uid, 422 for a PATCH that changes the uid, DELETE preconditions;
* finalizers: delete sets ``deletionTimestamp``; the write that empties the
  finalizers removes the object; no new finalizers once deletion started;
* ``Status`` error bodies with reason, message, code and details;
* HTTPS with a CA of its own and bearer-token authentication (401 before
  routing), so clients can run on in-cluster configuration;
* mutating admission webhooks called over HTTPS on create
  (``tests/emulators/kube_admission.py``); custom resources validated against
  the CRD's schema and CEL rules, defaulted, pruned or refused under
  ``fieldValidation=Strict`` (``tests/emulators/kube_schema.py``);
* pod validation where negsync writes: readiness gates are qualified names
  and immutable, status conditions are qualified names with status
  True/False/Unknown (``_validate_pod``);
* ``metadata.managedFields`` written for every HTTP write (the manager from
  ``fieldManager`` or the User-Agent), so objects weigh what they weigh on a
  cluster;
* timestamps in built-in types are re-encoded as Go would (``Z``, seconds for
  metav1.Time, microseconds for MicroTime fields such as ``renewTime``), so a
  read-modify-write of an unchanged object is a no-op, as on a real cluster.

Not copied (known gaps)
-----------------------
* Authentication is one optional bearer token (``token=``), over HTTPS with
  the emulator's own CA when ``tls=True``; there is no authorization (RBAC is
  checked statically by tests/deploy).  Mutating admission runs on HTTP
  creates only (no UPDATE/DELETE admission, no validating webhooks, no
  built-in admission plugins such as NamespaceLifecycle).  Schema validation,
  defaulting and pruning exist for custom resources only; built-in kinds are
  stored verbatim apart from the pod checks listed above (names are not
  validated).  Python-side writes (``create``,
  ``update``, ``patch``) are the test's own etcd: no admission, no validation,
  no managedFields.
* Pods are deleted at once (no graceful termination period, there is no
  kubelet); namespaces are deleted at once and do not cascade to contents.
* core/v1 Events and events.k8s.io/v1 Events are stored separately, not as two
  views of one resource.
* ``sendInitialEvents`` (watch-list) is not supported.  The "watch cache" is
  never behind storage, so a resourceVersion "0" read is never stale.
* Server-side apply (``application/apply-patch+yaml`` is a 415, stricter than a
  real server: kubectl's documented client-side apply is what works),
  ``dryRun``, ``deletecollection``, ``fieldManager``/``managedFields``,
  ``ownerReferences`` garbage collection, and protobuf are not implemented.
  Strategic merge only knows the merge keys listed in ``_SMP_MERGE_KEYS``;
  other lists are replaced atomically.
* Timestamp normalisation is a heuristic (any RFC 3339 string outside labels,
  annotations and ConfigMap data); MicroTime fields are recognised by name.
  ``stop()`` cuts open watches abruptly rather than ending them cleanly.
* Which built-in resources allow an unconditional PUT is a per-type flag
  (pods, services, configmaps, nodes, namespaces, events: yes; leases and
  custom resources: no).
"""

from __future__ import annotations

import base64
import copy
import functools
import hmac
import json
import random
import re
import select
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from tests.emulators import kube_admission as admission
from tests.emulators import kube_discovery as discovery
from tests.emulators import kube_schema as schema

if TYPE_CHECKING:
    from kubernetes.client import Configuration

JSON = dict[str, Any]

# --------------------------------------------------------------------------
# Resource registry
# --------------------------------------------------------------------------

_METADATA_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    custom: bool = False
    has_generation: bool = False
    # PUT without metadata.resourceVersion is accepted (last write wins).
    unconditional_update: bool = True
    # DELETE answers with the object rather than a Status (generic store flag).
    return_deleted_object: bool = False
    # Field selector labels beyond metadata.name/namespace -> JSON path.
    fields: tuple[tuple[str, str], ...] = ()
    # Discovery: what kubectl expands `tb` and `all` from.
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}"

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def field_paths(self) -> dict[str, str]:
        paths = {f: f for f in _METADATA_FIELDS}
        paths.update(dict(self.fields))
        return paths


_EVENT_FIELDS: tuple[tuple[str, str], ...] = (
    *((f"involvedObject.{f}", f"involvedObject.{f}")
      for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")),
    ("reason", "reason"), ("type", "type"), ("source", "source.component"),
    ("reportingComponent", "reportingComponent"),
)

_ALL = ("all",)

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
                 fields=(("status.phase", "status.phase"),)),
    ResourceType("", "v1", "nodes", "Node", namespaced=False, status_subresource=True,
                 short_names=("no",), fields=(("spec.unschedulable", "spec.unschedulable"),)),
    ResourceType("", "v1", "pods", "Pod", status_subresource=True, has_generation=True,
                 return_deleted_object=True, short_names=("po",), categories=_ALL,
                 fields=tuple((f, f) for f in (
                     "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                     "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                     "status.podIP", "status.nominatedNodeName"))),
    ResourceType("", "v1", "services", "Service", status_subresource=True,
                 return_deleted_object=True, short_names=("svc",), categories=_ALL,
                 fields=(("spec.type", "spec.type"), ("spec.clusterIP", "spec.clusterIP"))),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    ResourceType("", "v1", "resourcequotas", "ResourceQuota", status_subresource=True,
                 short_names=("quota",)),
    ResourceType("", "v1", "events", "Event", fields=_EVENT_FIELDS, short_names=("ev",)),
    ResourceType("apps", "v1", "deployments", "Deployment", status_subresource=True,
                 has_generation=True, short_names=("deploy",), categories=_ALL),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget",
                 status_subresource=True, has_generation=True, short_names=("pdb",)),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy",
                 has_generation=True, short_names=("netpol",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole",
                 namespaced=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                 namespaced=False),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice",
                 fields=(("addressType", "addressType"),)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", unconditional_update=False),
    ResourceType("events.k8s.io", "v1", "events", "Event", fields=_EVENT_FIELDS,
                 short_names=("ev",)),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "CustomResourceDefinition", namespaced=False, status_subresource=True,
                 has_generation=True, short_names=("crd", "crds")),
    ResourceType("negsync.io", "v1alpha1", "targetbindings", "TargetBinding",
                 status_subresource=True, custom=True, has_generation=True,
                 unconditional_update=False, return_deleted_object=True,
                 short_names=("tb",), categories=("negsync",)),
    ResourceType("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
                 "MutatingWebhookConfiguration", namespaced=False, has_generation=True),
    ResourceType("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
                 "ValidatingWebhookConfiguration", namespaced=False, has_generation=True),
)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


_REPO_CRDS = Path(__file__).resolve().parents[2] / "deploy" / "base"


@functools.cache
def _repository_crds() -> tuple[JSON, ...]:
    import yaml  # kept local: only custom resources need it

    found: list[JSON] = []
    for path in sorted(_REPO_CRDS.glob("crd-*.yaml")):
        found.extend(d for d in yaml.safe_load_all(path.read_text())
                     if d and d.get("kind") == "CustomResourceDefinition")
    return tuple(found)


def _repository_crd_version(rt: ResourceType) -> JSON | None:
    for crd in _repository_crds():
        spec = crd["spec"]
        if (spec["group"], spec["names"]["plural"]) == (rt.group, rt.plural):
            for v in spec["versions"]:
                if v["name"] == rt.version:
                    return copy.deepcopy(v)
    return None


def resolve_resource(api_version: str, kind_or_plural: str) -> ResourceType:
    """Find a resource type by apiVersion plus Kind, plural or lower-case kind."""
    group, _, version = api_version.rpartition("/")
    for r in RESOURCES:
        if (r.group, r.version) == (group, version) and kind_or_plural in (
            r.kind, r.plural, r.kind.lower()
        ):
            return r
    raise KeyError(f"unknown resource {api_version} {kind_or_plural}")


# --------------------------------------------------------------------------
# Errors (metav1.Status)
# --------------------------------------------------------------------------

_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType",
    422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An API failure; ``status`` is the metav1.Status body sent to clients."""

    def __init__(self, code: int, reason: str, message: str,
                 details: JSON | None = None) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.list_continue = ""

    @property
    def status(self) -> JSON:
        body: JSON = {"kind": "Status", "apiVersion": "v1",
                      "metadata": {"continue": self.list_continue} if self.list_continue else {},
                      "status": "Failure", "message": self.message,
                      "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def _res_details(rt: ResourceType, name: str) -> JSON:
    details: JSON = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return details


def _not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _res_details(rt, name))


def _conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
                    _res_details(rt, name))


_STALE = "the object has been modified; please apply your changes to the latest version and try again"


def _invalid(rt: ResourceType, name: str, path: str, value: Any, detail: str) -> ApiError:
    msg = f"Invalid value: {json.dumps(value)}: {detail}"
    details: JSON = {"name": name, "kind": rt.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": path}]}
    if rt.group:
        details["group"] = rt.group
    return ApiError(422, "Invalid", f'{rt.kind} "{name}" is invalid: {path}: {msg}', details)


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# --------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_LABEL_RE = (
    (re.compile(rf"^!\s*({_KEY})$"), "!exists"),
    (re.compile(rf"^({_KEY})\s+(in|notin)\s+\((.*)\)$"), "set"),
    (re.compile(rf"^({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)$"), "eq"),
    (re.compile(rf"^({_KEY})$"), "exists"),
)


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects that lack the label, as in apimachinery.
        return not present or labels[self.key] not in self.values


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur).strip())
    return [t for t in terms if t]


def parse_label_selector(selector: str | None) -> list[_Requirement]:
    reqs: list[_Requirement] = []
    for term in _split_terms(selector or ""):
        for pattern, kind in _LABEL_RE:
            m = pattern.match(term)
            if not m:
                continue
            if kind == "set":
                values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
                reqs.append(_Requirement(m.group(1), m.group(2), values))
            elif kind == "eq":
                op = "!=" if m.group(2) == "!=" else "="
                reqs.append(_Requirement(m.group(1), op, frozenset([m.group(3)])))
            else:
                reqs.append(_Requirement(m.group(1), kind))
            break
        else:
            raise _bad_request(f"unable to parse requirement: {term!r}")
    return reqs


def _lookup(obj: JSON, dotted: str) -> str:
    cur: Any = obj
    for part in dotted.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return "false" if dotted == "spec.hostNetwork" else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(rt: ResourceType, selector: str | None) -> list[tuple[str, bool, str]]:
    """Parse into (json path, negated, value); unknown labels are a 400 as in the API."""
    supported = rt.field_paths()
    out: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector or ""):
        m = re.match(r"^([A-Za-z.]+)\s*(==|!=|=)\s*(.*)$", term)
        if not m:
            raise _bad_request(f"invalid field selector: {term!r}")
        label, op, value = m.groups()
        if label not in supported:
            raise _bad_request(f'field label not supported: {label}')
        out.append((supported[label], op == "!=", value))
    return out


@dataclass(frozen=True)
class _Filter:
    namespace: str | None
    labels: list[_Requirement]
    fields: list[tuple[str, bool, str]]

    def matches(self, obj: JSON) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        return all((_lookup(obj, p) != v) if neg else (_lookup(obj, p) == v)
                   for p, neg, v in self.fields)


# --------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------

# Paths (dict keys only; list items add no segment) -> strategic merge key.
_SMP_MERGE_KEYS: dict[str, str] = {
    "metadata.ownerReferences": "uid",
    "spec.containers": "name",
    "spec.initContainers": "name",
    "spec.ephemeralContainers": "name",
    "spec.containers.env": "name",
    "spec.initContainers.env": "name",
    "spec.containers.ports": "containerPort",
    "spec.containers.volumeMounts": "mountPath",
    "spec.volumes": "name",
    "spec.imagePullSecrets": "name",
    "spec.ports": "port",
    "spec.taints": "key",
    "status.conditions": "type",
    "status.containerStatuses": "name",
    "status.initContainerStatuses": "name",
    "status.addresses": "type",
    "status.podIPs": "ip",
}
_SMP_PRIMITIVE_SETS = {"metadata.finalizers"}
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def strategic_merge(original: JSON, patch: JSON, path: str = "") -> JSON:
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return {}
    result = copy.deepcopy(original)
    # Deletions first so "finalizers: [b]" plus "$deleteFromPrimitiveList: [a]" composes.
    for k, v in patch.items():
        if k.startswith(_DELETE_PRIMITIVE) and isinstance(v, list):
            name = k[len(_DELETE_PRIMITIVE):]
            if isinstance(result.get(name), list):
                result[name] = [x for x in result[name] if x not in v]
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        child = _join(path, k)
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            base = result.get(k)
            result[k] = strategic_merge(base if isinstance(base, dict) else {}, v, child)
        elif isinstance(v, list):
            base = result.get(k)
            result[k] = _smp_list(base if isinstance(base, list) else [], v, child)
        else:
            result[k] = copy.deepcopy(v)
    return result


def _smp_list(original: list[Any], patch: list[Any], path: str) -> list[Any]:
    if path in _SMP_PRIMITIVE_SETS:
        merged = list(original)
        merged.extend(x for x in patch if x not in merged)
        return merged
    key = _SMP_MERGE_KEYS.get(path)
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        key = None
    if key is None:
        return [strategic_merge({}, i, path) if isinstance(i, dict) else copy.deepcopy(i)
                for i in patch
                if not (isinstance(i, dict) and i.get("$patch") in ("replace", "delete"))]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict):
            result.append(copy.deepcopy(item))
            continue
        idx = next((n for n, r in enumerate(result)
                    if isinstance(r, dict) and r.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
        elif idx is None:
            result.append(strategic_merge({}, item, path))
        else:
            result[idx] = strategic_merge(result[idx], item, path)
    return result


def merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


class _JsonPatchError(Exception):
    pass


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _JsonPatchError(f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _walk(doc: Any, tokens: list[str]) -> Any:
    for t in tokens:
        if isinstance(doc, dict) and t in doc:
            doc = doc[t]
        elif isinstance(doc, list) and t.isdigit() and int(t) < len(doc):
            doc = doc[int(t)]
        else:
            raise _JsonPatchError(f"path element {t!r} not found")
    return doc


def _jp_add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _walk(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _JsonPatchError(f"index {last!r} out of range")
    else:
        raise _JsonPatchError("cannot add to a scalar")
    return doc


def _jp_remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _JsonPatchError("cannot remove the document root")
    parent, last = _walk(doc, tokens[:-1]), tokens[-1]
    _walk(parent, [last])
    if isinstance(parent, dict):
        return parent.pop(last)
    return parent.pop(int(last))


def json_patch(document: Any, operations: list[Any]) -> Any:
    """RFC 6902 JSON patch; raises _JsonPatchError when an operation cannot apply."""
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _bad_request(f"invalid JSON patch operation: {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _jp_add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _jp_remove(doc, tokens)
        elif kind == "replace":
            _walk(doc, tokens)
            if tokens:
                _jp_remove(doc, tokens)
            doc = _jp_add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                _jp_remove(doc, src)
            doc = _jp_add(doc, tokens, value)
        elif kind == "test":
            if _walk(doc, tokens) != op.get("value"):
                raise _JsonPatchError(f"testing value {op['path']} failed")
        else:
            raise _bad_request(f"unsupported JSON patch operation {kind!r}")
    return doc


# --------------------------------------------------------------------------
# Emulator
# --------------------------------------------------------------------------


class RecordedRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any


@dataclass
class _HistoryEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    rt: ResourceType
    obj: JSON
    prev: JSON | None


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: int | None
    reason: str
    message: str


@dataclass(eq=False)
class _Watcher:
    sock: socket.socket
    dropped: threading.Event = field(default_factory=threading.Event)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _generate_suffix() -> str:
    # Same alphabet as apimachinery's rand.String (no vowels, no confusable digits).
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# metav1.MicroTime fields; every other timestamp in a built-in type is a metav1.Time.
_MICRO_TIME_KEYS = {"renewTime", "acquireTime", "eventTime", "lastObservedTime"}
# Free-form string maps whose values must never be reinterpreted.
_OPAQUE_KEYS = {"annotations", "labels", "data", "binaryData", "stringData"}


def _normalize_times(value: Any, key: str = "") -> Any:
    """Re-encode timestamps the way the API server does after decoding into Go types.

    The Python client writes ``+00:00`` offsets (and microseconds for Time fields);
    the real server stores second-precision ``Z`` times, so a read-modify-write of an
    unchanged object is a no-op there and must be one here too.
    """
    if isinstance(value, dict):
        return {k: v if k in _OPAQUE_KEYS else _normalize_times(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize_times(v, key) for v in value]
    if isinstance(value, str) and _TIMESTAMP.match(value):
        try:
            when = datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            return value
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if key in _MICRO_TIME_KEYS else "%Y-%m-%dT%H:%M:%SZ"
        return when.strftime(fmt)
    return value


_SERVER_META = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "name",
                "namespace", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "generateName"}


def _fields_v1(new: Any, old: Any, path: str = "") -> JSON:
    """The FieldsV1 set of what ``new`` sets differently from ``old`` (everything when old is None).

    Maps become ``f:<key>`` entries, list items with a strategic merge key ``k:{...}`` entries,
    other lists are atomic (apimachinery ``managedfields``/structured-merge-diff encoding).
    """
    out: JSON = {}
    if not isinstance(new, dict):
        return out
    for key, value in new.items():
        if path == "" and key in ("apiVersion", "kind"):
            continue
        if path == "metadata" and key in _SERVER_META:
            continue
        before = old.get(key) if isinstance(old, dict) else None
        if before == value:
            continue
        child = _join(path, key)
        if isinstance(value, dict):
            out[f"f:{key}"] = _fields_v1(value, before, child)
            if before is None:
                out[f"f:{key}"]["."] = {}
        elif isinstance(value, list) and _SMP_MERGE_KEYS.get(child) and all(isinstance(i, dict) for i in value):
            merge_key = _SMP_MERGE_KEYS[child]
            old_items = {json.dumps(i.get(merge_key)): i for i in before or [] if isinstance(i, dict)}
            items: JSON = {}
            for item in value:
                ident = json.dumps({merge_key: item.get(merge_key)}, separators=(",", ":"))
                prev = old_items.get(json.dumps(item.get(merge_key)))
                if prev != item:
                    items[f"k:{ident}"] = {".": {}, **_fields_v1(item, prev, child)}
            out[f"f:{key}"] = items
        else:
            out[f"f:{key}"] = {}
    return out


def _merge_sets(a: JSON, b: JSON) -> JSON:
    merged = copy.deepcopy(a)
    for key, value in b.items():
        merged[key] = _merge_sets(merged.get(key) or {}, value)
    return merged


def _managed_entry(entries: list[JSON], *, manager: str, api_version: str, subresource: str | None,
                   fields: JSON) -> list[JSON]:
    """Record an Update by ``manager``: its entry (per manager, operation and subresource) gains
    the fields it set, with the time of the write (apiserver ``fieldmanager``)."""
    if not fields:
        return entries
    result = [copy.deepcopy(e) for e in entries]
    for entry in result:
        if (entry.get("manager"), entry.get("operation"), entry.get("subresource")) == (manager, "Update",
                                                                                        subresource):
            entry["fieldsV1"] = _merge_sets(entry.get("fieldsV1") or {}, fields)
            entry["time"] = _now()
            return result
    entry: JSON = {"manager": manager, "operation": "Update", "apiVersion": api_version, "time": _now(),
                   "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    result.append(entry)
    return result


def _crd_status(crd: JSON) -> JSON:
    """What the naming and establishing controllers write once a CRD's names are accepted
    (apiextensions-apiserver pkg/controller/status/naming_controller.go, pkg/controller/establish):
    the emulator has no name conflicts to report, so both conditions are True at once."""
    now = _now()
    spec = crd.get("spec") or {}
    return {
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _qualified_name_errors(value: str) -> list[str]:
    """apimachinery ``validation.IsQualifiedName``: [DNS-1123 subdomain "/"] name (63 chars)."""
    prefix, _, name = value.rpartition("/")
    errors: list[str] = []
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        errors.append("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                      "characters, '-' or '.', and must start and end with an alphanumeric character")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.match(name):
        errors.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
                      "and end with an alphanumeric character")
    return errors


def _validate_pod(pod: JSON, *, old: JSON | None, status_only: bool) -> None:
    """The parts of pod validation negsync's writes meet (kubernetes pkg/apis/core/validation):
    readiness gates are qualified names and immutable after create (``ValidateReadinessGates``,
    ``ValidatePodUpdate``), condition types are qualified names with status True/False/Unknown
    (``validatePodConditions``, on status writes)."""
    name = str((pod.get("metadata") or {}).get("name") or "")
    causes: list[tuple[str, Any, str]] = []
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not status_only:
        for i, gate in enumerate(spec.get("readinessGates") or []):
            value = str((gate or {}).get("conditionType") or "")
            causes += [(f"spec.readinessGates[{i}].conditionType", value, e) for e in _qualified_name_errors(value)]
        if old is not None and spec.get("readinessGates") != (old.get("spec") or {}).get("readinessGates"):
            causes.append(("spec", "", "Forbidden: pod updates may not change fields other than `spec.containers[*]"
                                       ".image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
                                       "`spec.tolerations` (only additions to existing tolerations), "
                                       "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                                       "previously negative)"))
    else:
        for i, condition in enumerate(status.get("conditions") or []):
            ctype = str((condition or {}).get("type") or "")
            causes += [(f"status.conditions[{i}].type", ctype, e) for e in _qualified_name_errors(ctype)]
            if (condition or {}).get("status") not in ("True", "False", "Unknown"):
                causes.append((f"status.conditions[{i}].status", (condition or {}).get("status"),
                               'supported values: "False", "True", "Unknown"'))
    if causes:
        path, value, detail = causes[0]
        details: JSON = {"name": name, "kind": "Pod", "causes": [
            {"reason": "FieldValueInvalid", "message": f"Invalid value: {json.dumps(v)}: {d}", "field": p}
            for p, v, d in causes]}
        raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: {path}: Invalid value: {json.dumps(value)}: '
                                       f"{detail}", details)


def _storage_key(obj: JSON) -> str:
    """The object's etcd key below the resource prefix: lists come back in this byte order."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start "
    "a new list without the continue parameter, or use the continue token in this response to "
    "retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list.")


def _encode_continue(rv: int, start: str) -> str:
    # apiserver storage/continue.go: base64.RawURLEncoding of {"v","rv","start"}.
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("unexpected version")
        rv, start = int(data["rv"]), str(data["start"])
        if rv == 0 or not start or ".." in start.split("/"):
            raise ValueError("bad token")
        return rv, start
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise _bad_request(f"continue key is not valid: {exc}") from None


def _too_large(requested: int, current: int) -> ApiError:
    return ApiError(504, "Timeout", f"Timeout: Too large resource version: {requested}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def _spec_part(rt: ResourceType, obj: JSON) -> Any:
    if rt.custom:
        return {k: v for k, v in obj.items()
                if k not in ("metadata", "status", "kind", "apiVersion")}
    return obj.get("spec")


class KubeApiEmulator:
    """HTTP Kubernetes API emulator; see the module docstring for semantics."""

    def __init__(self, *, bookmark_interval: float = 1.0, max_history: int = 10_000,
                 max_watch_seconds: float = 1800.0, too_large_wait: float = 3.0,
                 watch_cache: bool = True, tls: bool = False, token: str | None = None) -> None:
        self.bookmark_interval = bookmark_interval
        self.max_history = max_history
        self.max_watch_seconds = max_watch_seconds
        # How long a read "not older than" a future resourceVersion waits (watch cache: 3 s).
        self.too_large_wait = too_large_wait
        # False: like kube-apiserver --watch-cache=false, every list is read from storage, so
        # resourceVersion "0" lists honour limit (clients then see continue tokens).
        self.watch_cache = watch_cache
        # HTTPS with a CA of its own (what a pod trusts from ca.crt) and a bearer token that every
        # request must carry (the mounted service-account token); see ``_authenticate``.
        self.token = token
        self._tls_dir: Path | None = None
        self._tls_context: ssl.SSLContext | None = None
        self.ca_pem = b""
        if tls:
            self._enable_tls()
        self._cond = threading.Condition()
        self._objects: dict[tuple[str, str, str], JSON] = {}
        self._rv = 1
        # Watches from a resourceVersion below this are 410 Expired.
        self._compacted_rv = 1
        self._history: deque[_HistoryEvent] = deque()
        self._aux = threading.Lock()  # requests log, faults, connections, watchers
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._latency = 0.0
        self._watchers: set[_Watcher] = set()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        # Served resource types: the built-ins plus what CustomResourceDefinitions add.
        self._types: dict[tuple[str, str, str], ResourceType] = dict(_BY_PATH)
        # rt.key -> the CRD's version entry (schema, printer columns) for custom resources.
        self._crd_versions: dict[str, JSON] = {}
        # Every mutating webhook call made on an HTTP create, in order.
        self.admission_calls: list[admission.AdmissionCall] = []

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> KubeApiEmulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="kubeapi-emulator", daemon=True)
        self._serve_thread.start()
        return self

    def _enable_tls(self) -> None:
        import tempfile

        from negsync.kube.webhook import generate_serving_certificate

        # The kube-apiserver's serving certificate names the Service and the loopback address.
        ca_pem, cert_pem, key_pem = generate_serving_certificate(
            service="kubernetes", namespace="default", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
        self._tls_dir = Path(tempfile.mkdtemp(prefix="kubeapi-emulator-tls-"))
        (self._tls_dir / "ca.crt").write_bytes(ca_pem)
        (self._tls_dir / "tls.crt").write_bytes(cert_pem)
        (self._tls_dir / "tls.key").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._tls_dir / "tls.crt", self._tls_dir / "tls.key")
        self._tls_context = context
        self.ca_pem = ca_pem

    @property
    def ca_file(self) -> Path:
        if self._tls_dir is None:
            raise RuntimeError("emulator started without tls=True")
        return self._tls_dir / "ca.crt"

    @property
    def host_port(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("emulator not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.host_port
        return f"{'https' if self._tls_context else 'http'}://{host}:{port}"

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        server.shutdown()
        with self._aux:
            conns = list(self._connections)
            threads = list(self._threads)
        # Unblocks idle keep-alive handlers stuck in readline and live watches.
        for sock in conns:
            _shutdown(sock)
        server.server_close()
        deadline = time.monotonic() + 2.0
        for t in [*threads, self._serve_thread]:
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._serve_thread = None
        if self._tls_dir is not None:
            import shutil

            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None
            self._tls_context = None

    def __enter__(self) -> KubeApiEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        path = Path(path)
        cluster: JSON = {"server": self.url}
        if self._tls_context is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "emulator", "cluster": cluster}],
            "users": [{"name": "emulator", "user": {"token": self.token} if self.token else {}}],
            "contexts": [{"name": "emulator",
                          "context": {"cluster": "emulator", "user": "emulator",
                                      "namespace": namespace}}],
            "current-context": "emulator",
        }
        # JSON is valid YAML, so the kubernetes config loader reads it as is.
        path.write_text(json.dumps(config, indent=2))
        return path

    def client_configuration(self) -> Configuration:
        from kubernetes import client  # kept local: the emulator itself is stdlib-only

        # no_proxy keeps an HTTP(S)_PROXY from the environment away from loopback.
        configuration = client.Configuration(host=self.url, no_proxy="127.0.0.1,localhost")
        if self._tls_context is not None:
            configuration.ssl_ca_cert = str(self.ca_file)
        if self.token:
            configuration.api_key = {"authorization": f"Bearer {self.token}"}
        return configuration

    # ----------------------------------------------------------- test controls

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._aux:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._aux:
            self._requests.clear()

    def inject(self, method: str, path_regex: str, status: int, *, count: int = 1,
               retry_after: int | None = None, body_reason: str | None = None,
               message: str = "injected fault") -> None:
        """Fail the next ``count`` requests whose method (or ``*``) and path match."""
        fault = _Fault(method.upper(), re.compile(path_regex), status, count, retry_after,
                       body_reason or _REASONS.get(status, "InternalError"), message)
        with self._aux:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every injected fault not yet used up: the API server recovers."""
        with self._aux:
            self._faults.clear()

    def set_latency(self, seconds: float) -> None:
        self._latency = seconds

    def compact(self) -> int:
        """Forget all history; watches from any older resourceVersion get 410."""
        with self._cond:
            self._history.clear()
            self._compacted_rv = self._rv
            self._cond.notify_all()
            return self._rv

    def drop_watches(self) -> int:
        """Abruptly cut every open watch (no terminating chunk); returns how many."""
        with self._aux:
            watchers = list(self._watchers)
        for w in watchers:
            w.dropped.set()
            _shutdown(w.sock)
        return len(watchers)

    @property
    def watch_count(self) -> int:
        with self._aux:
            return len(self._watchers)

    def wait_for_watches(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.watch_count >= count:
                return True
            time.sleep(0.01)
        return self.watch_count >= count

    # ------------------------------------------------------ Python-side CRUD

    def create(self, obj: JSON) -> JSON:
        """Store an object as-is (status included, unlike an HTTP create)."""
        rt = self._resolve(obj["apiVersion"], obj["kind"])
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        for k in ("resourceVersion", "uid", "creationTimestamp"):
            meta.pop(k, None)
        ns = meta.get("namespace") or "default" if rt.namespaced else ""
        with self._cond:
            return self._create(rt, ns, body, reset_status=False)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSON | None:
        rt = self._resolve(api_version, kind)
        with self._cond:
            obj = self._objects.get((rt.key, namespace or "" if rt.namespaced else "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[JSON]:
        rt = self._resolve(api_version, kind)
        with self._cond:
            return [copy.deepcopy(o) for o in self._select(rt, _Filter(namespace, [], []))]

    def update(self, obj: JSON, *, subresource: str | None = None) -> JSON:
        """PUT semantics; conditional only if the object carries a resourceVersion."""
        rt = self._resolve(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or "default" if rt.namespaced else ""
        with self._cond:
            return self._update(rt, ns, meta["name"], copy.deepcopy(obj), subresource,
                                lenient=True)

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str,
              patch: Any, *, patch_type: str = "merge", subresource: str | None = None) -> JSON:
        rt = self._resolve(api_version, kind)
        ctype = {"merge": "application/merge-patch+json",
                 "strategic": "application/strategic-merge-patch+json",
                 "json": "application/json-patch+json"}[patch_type]
        with self._cond:
            return self._patch(rt, namespace or "" if rt.namespaced else "", name,
                               ctype, patch, subresource)

    def patch_status(self, api_version: str, kind: str, namespace: str | None, name: str,
                     status: JSON) -> JSON:
        rt = self._resolve(api_version, kind)
        sub = "status" if rt.status_subresource else None
        return self.patch(api_version, kind, namespace, name, {"status": status},
                          subresource=sub)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSON:
        rt = self._resolve(api_version, kind)
        with self._cond:
            return self._delete(rt, namespace or "" if rt.namespaced else "", name, {})

    def _resolve(self, api_version: str, kind_or_plural: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        for r in self._types.values():
            if (r.group, r.version) == (group, version) and kind_or_plural in (
                r.kind, r.plural, r.kind.lower()
            ):
                return r
        raise KeyError(f"unknown resource {api_version} {kind_or_plural}")

    @property
    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    def crd_version(self, rt: ResourceType) -> JSON | None:
        """The CRD version entry serving ``rt``: the stored CRD's, else the repository's CRD.

        TargetBinding is served without a CRD object (tests need not install it first); it then
        behaves as if deploy/base/crd-targetbindings.yaml were installed, schema and all.
        """
        if not rt.custom:
            return None
        found = self._crd_versions.get(rt.key)
        if found is None and (rt.group, rt.version, rt.plural) in _BY_PATH:
            found = _repository_crd_version(rt)
        return found

    def _crd_changed(self, crd: JSON | None, old: JSON | None) -> None:
        """Serve (or stop serving) the resources a CRD defines, as apiextensions-apiserver does."""
        if old is not None:
            for v in (old.get("spec") or {}).get("versions") or []:
                key = (old["spec"]["group"], v.get("name"), old["spec"]["names"]["plural"])
                rt = self._types.get(key)
                if rt is not None:
                    self._crd_versions.pop(rt.key, None)
                    if key not in _BY_PATH and crd is None:
                        del self._types[key]
        if crd is None:
            return
        spec, names = crd.get("spec") or {}, (crd.get("spec") or {}).get("names") or {}
        for v in spec.get("versions") or []:
            if not v.get("served", True):
                continue
            key = (spec["group"], v["name"], names["plural"])
            rt = self._types.get(key) or ResourceType(
                spec["group"], v["name"], names["plural"], names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                status_subresource="status" in (v.get("subresources") or {}),
                custom=True, has_generation=True, unconditional_update=False,
                return_deleted_object=True, short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()))
            self._types[key] = rt
            self._crd_versions[rt.key] = copy.deepcopy(v)

    # ----------------------------------------------------- schema validation

    def _defaulted(self, rt: ResourceType, obj: JSON) -> JSON:
        root = ((self.crd_version(rt) or {}).get("schema") or {}).get("openAPIV3Schema") or {}
        obj = copy.deepcopy(obj)
        for key, sub in (root.get("properties") or {}).items():
            if key in obj and key not in ("metadata", "apiVersion", "kind"):
                obj[key] = schema.prune_and_default(sub, obj[key], key, [])
        return obj

    def _validate_custom(self, rt: ResourceType, obj: JSON, old: JSON | None, field_validation: str, *,
                         only_status: bool = False) -> JSON:
        """Prune or reject unknown fields, default, validate (``tests/emulators/kube_schema.py``).

        Only HTTP writes get here; objects stored through the Python-side API skip it, like
        objects written before a CRD's schema was tightened.  A status write checks the status
        (the rest is the stored object, unchanged, so ratcheting would excuse it anyway).
        """
        version = self.crd_version(rt)
        root = ((version or {}).get("schema") or {}).get("openAPIV3Schema")
        if not root:
            return obj
        obj = copy.deepcopy(obj)
        unknown: list[str] = []
        props = root.get("properties") or {}
        if only_status:
            props = {k: v for k, v in props.items() if k == "status"}
            root = {"type": "object", "properties": props}
        for key in list(obj):
            if key in ("apiVersion", "kind", "metadata") or (only_status and key != "status"):
                continue
            if key not in props and not root.get("x-kubernetes-preserve-unknown-fields"):
                unknown.append(key)
                del obj[key]
            elif key in props:
                obj[key] = schema.prune_and_default(props[key], obj[key], key, unknown)
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
        if unknown and field_validation == "Strict":
            # apiextensions' strict decoding (fieldValidation=Strict, kubectl's default).
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise _bad_request(f"{rt.kind} in version \"{rt.version}\" cannot be handled as a "
                               f"{rt.kind}: strict decoding error: {fields}")
        errors: list[schema.FieldError] = []
        body = {k: v for k, v in obj.items() if k in props}
        old_body = {k: v for k, v in old.items() if k in props} if old is not None else None
        schema.validate({**root, "properties": {k: v for k, v in props.items() if k != "metadata"}},
                        body, "", errors, old=old_body, has_old=old is not None)
        if errors and old_body is not None:
            # Validation ratcheting (KEP-4008, on by default since 1.30): on update, an error in a
            # part of the object the write did not change is not held against it, so a status
            # write on a binding stored before the schema tightened still goes through.
            errors = [e for e in errors if schema.value_at(body, e.path) != schema.value_at(old_body, e.path)]
        if errors:
            name = str(obj.get("metadata", {}).get("name") or "")
            causes = [{"reason": e.reason, "message": e.message, "field": e.path} for e in errors]
            text = [f"{e.path}: {e.message}" for e in errors]
            summary = text[0] if len(text) == 1 else f"[{', '.join(text)}]"
            raise ApiError(422, "Invalid", f'{rt.kind}.{rt.group} "{name}" is invalid: {summary}',
                           {"name": name, "group": rt.group, "kind": rt.kind, "causes": causes})
        return obj

    # ------------------------------------------------------------ admission

    def _admit_create(self, rt: ResourceType, namespace: str, body: JSON) -> JSON:
        """Mutating admission of an HTTP create (``tests/emulators/kube_admission.py``).

        Runs outside the storage lock: a webhook may take its full timeout.
        """
        mwc = self._types[("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")]
        with self._cond:
            configurations = [copy.deepcopy(o) for o in self._select(mwc, _Filter(None, [], []))]
            ns_obj = self._objects.get((_BY_PATH[("", "v1", "namespaces")].key, "", namespace))
        if not configurations:
            return body
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            meta["namespace"] = namespace
        attrs = admission.Attributes(
            group=rt.group, version=rt.version, kind=rt.kind, resource=rt.plural, subresource="",
            namespaced=rt.namespaced, operation="CREATE", namespace=namespace if rt.namespaced else "",
            # generateName is resolved after mutating admission (rest.BeforeCreate), so a webhook
            # sees an empty name for it, as on a real server.
            name=str(meta.get("name") or ""), obj=obj, old=None)
        ns_labels = dict(((ns_obj or {}).get("metadata") or {}).get("labels") or {})
        try:
            patched = admission.admit(configurations=configurations, attrs=attrs, namespace_labels=ns_labels,
                                      resolve=self._resolve_service, apply_patch=json_patch,
                                      record=self.admission_calls.append)
        except admission.AdmissionRejected as rejected:
            raise ApiError(rejected.code, rejected.reason, rejected.message) from None
        return patched if patched is not None else body

    def _resolve_service(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """A Service port to a ready endpoint, via the Service's EndpointSlices."""
        with self._cond:
            svc = self._objects.get((_BY_PATH[("", "v1", "services")].key, namespace, name))
            if svc is None:
                raise ValueError(f'service "{name}" not found')
            entry = next((p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port), None)
            if entry is None:
                raise ValueError(f'service "{name}" has no port {port}')
            slices = self._select(_BY_PATH[("discovery.k8s.io", "v1", "endpointslices")],
                                  _Filter(namespace, parse_label_selector(f"kubernetes.io/service-name={name}"), []))
        for sl in slices:
            slice_port = next((p.get("port") for p in sl.get("ports") or []
                               if (p.get("name") or "") == (entry.get("name") or "")), None)
            for endpoint in sl.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is not False and endpoint.get("addresses") \
                        and slice_port:
                    return str(endpoint["addresses"][0]), int(slice_port)
        raise ValueError(f'service "{name}" has no ready endpoints for port {port}')

    # ----------------------------------------------------- storage internals
    # All underscore methods below expect self._cond to be held.

    def _select(self, rt: ResourceType, flt: _Filter) -> list[JSON]:
        items = [o for (key, _, _), o in self._objects.items() if key == rt.key and flt.matches(o)]
        items.sort(key=_storage_key)
        return items

    def _objects_at(self, rt: ResourceType, rv: int, *, continuing: bool) -> list[JSON]:
        """Every object of ``rt`` as of revision ``rv`` (etcd's MVCC read), in key order.

        Rolls the history back from the current state; a revision older than the history window
        is compacted in etcd too, and answers 410 Expired with etcd3 store's messages
        (apiserver ``storage/etcd3/store.go``, ``interpretListError``).
        """
        current = {k: o for k, o in self._objects.items() if k[0] == rt.key}
        if rv < self._rv:
            if rv < self._compacted_rv:
                if continuing:
                    raise ApiError(410, "Expired", _CONTINUE_EXPIRED)
                raise ApiError(410, "Expired", "The resourceVersion for the provided list is too old.")
            for ev in reversed(self._history):
                if ev.rv <= rv:
                    break
                if ev.rt.key != rt.key:
                    continue
                meta = ev.obj["metadata"]
                key = (rt.key, meta.get("namespace", "") if rt.namespaced else "", meta["name"])
                if ev.type == "ADDED" or ev.prev is None:
                    current.pop(key, None)
                else:
                    current[key] = ev.prev
        return sorted(current.values(), key=_storage_key)

    def _wait_fresh(self, rv: int) -> None:
        """A read "not older than" ``rv`` from the watch cache: wait for the cache to catch up,
        then give up with 504 "Too large resource version" (apiserver ``storage/cacher/
        watch_cache.go`` ``waitUntilFreshAndBlock``, 3 s; ``storage/errors.go``
        ``NewTooLargeResourceVersionError``), which client-go's reflector answers with a
        consistent relist (``isTooLargeResourceVersionError``)."""
        deadline = time.monotonic() + self.too_large_wait
        while self._rv < rv:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                raise _too_large(rv, self._rv)
            self._cond.wait(left)

    def _list(self, rt: ResourceType, flt: _Filter, query: dict[str, str]) -> tuple[list[JSON], JSON]:
        """One list response: items and ListMeta, with kube-apiserver's resourceVersion and
        paging rules (https://kubernetes.io/docs/reference/using-api/api-concepts/ "Retrieving
        large results sets in chunks" and "Semantics for get and list"):

        * ``continue`` pages are served from storage at the first page's revision; a
          resourceVersion other than ""/"0" next to it is a 400 (etcd3 ``GetList``); a revision
          compacted meanwhile is 410 Expired with a fresh *inconsistent* token in the Status
          (``handleCompactedErrorForPaging``);
        * ``limit`` with resourceVersion "0" is served from the watch cache, which ignores the
          limit and returns everything (cacher.go ``shouldDelegateList``: "Serve paginated
          requests about revision "0" from watch cache to avoid overwhelming etcd");
        * ``limit`` with resourceVersion "" (or NotOlderThan N) is paged from storage at the
          current revision; with resourceVersion N and no match (legacy) or ``Exact`` it is
          paged at exactly N: 410 once N is compacted, 504 "Too large" beyond the head;
        * without ``limit``, a resourceVersion N is "not older than N" from the watch cache
          (waits, then 504 Too large);
        * ``remainingItemCount`` only when no selector filters the list (etcd3 ``GetList``:
          the count is only known for an unfiltered range).
        """
        raw_rv = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        token = query.get("continue", "")
        try:
            limit = int(query.get("limit") or 0)
            rv_value = int(raw_rv) if raw_rv else 0
        except ValueError:
            raise _bad_request(f"invalid limit or resourceVersion: {query}") from None
        # apimachinery ValidateListOptions.
        if match and not raw_rv:
            raise _bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match and token:
            raise _bad_request("resourceVersionMatch is forbidden when continue is provided")
        if match not in ("", "NotOlderThan", "Exact"):
            raise _bad_request(f"resourceVersionMatch: Unsupported value: {match!r}")
        if match == "Exact" and raw_rv == "0":
            raise _bad_request('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        start = ""
        if token:
            if raw_rv not in ("", "0"):
                raise _bad_request("specifying resource version is not allowed when using continue")
            at, start = _decode_continue(token)
            if at == -1:
                at = self._rv  # an inconsistent token continues at the current revision
            elif at > self._rv:
                raise _bad_request("continue key is not valid: resource version is in the future")
            candidates = self._objects_at(rt, at, continuing=True)
        elif (raw_rv == "0" or (raw_rv and not limit and match != "Exact")) and self.watch_cache:
            self._wait_fresh(rv_value)
            at, limit = self._rv, 0  # the watch cache serves the whole list
            candidates = self._select(rt, _Filter(None, [], []))
        elif raw_rv == "0" or (raw_rv and match != "Exact" and not limit):
            # --watch-cache=false: etcd answers "any"/"not older than" at its head, paged.
            if rv_value > self._rv:
                raise _too_large(rv_value, self._rv)
            at = self._rv
            candidates = self._select(rt, _Filter(None, [], []))
        elif raw_rv and (match == "Exact" or not match):
            if rv_value > self._rv:
                raise _too_large(rv_value, self._rv)
            at = rv_value
            candidates = self._objects_at(rt, at, continuing=False)
        else:
            if rv_value > self._rv:
                raise _too_large(rv_value, self._rv)
            at = self._rv
            candidates = self._select(rt, _Filter(None, [], []))
        keyed = [(_storage_key(o), o) for o in candidates]
        if start:
            keyed = [(k, o) for k, o in keyed if k >= start]
        matching = [(k, o) for k, o in keyed if flt.matches(o)]
        meta: JSON = {"resourceVersion": str(at)}
        if limit and len(matching) > limit:
            page = matching[:limit]
            meta["continue"] = _encode_continue(at, page[-1][0] + "\x00")
            if not flt.labels and not flt.fields:
                meta["remainingItemCount"] = len(matching) - limit
        else:
            page = matching
        return [copy.deepcopy(o) for _, o in page], meta

    def _record(self, rt: ResourceType, kind: str, obj: JSON, prev: JSON | None) -> None:
        self._history.append(_HistoryEvent(self._rv, kind, rt, copy.deepcopy(obj), prev))
        while len(self._history) > self.max_history:
            self._compacted_rv = self._history.popleft().rv
        self._cond.notify_all()

    def _create(self, rt: ResourceType, namespace: str, body: JSON, *, reset_status: bool,
                validation: str | None = None, manager: str | None = None) -> JSON:
        if body.get("apiVersion", rt.api_version) != rt.api_version or \
                body.get("kind", rt.kind) != rt.kind:
            raise _bad_request(f"the API version in the data ({body.get('apiVersion')}) does "
                               f"not match the expected API version ({rt.api_version})")
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind
        if not rt.custom:
            body = _normalize_times(body)
        meta = body.setdefault("metadata", {})
        if meta.get("resourceVersion"):
            raise ApiError(500, "InternalError", "Internal error occurred: "
                           "resourceVersion should not be set on objects to be created")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise _bad_request("the namespace of the provided object does not match "
                                   "the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _invalid(rt, "", "metadata.name", "", "name or generateName is required")
            for _ in range(100):
                meta["name"] = meta["generateName"] + _generate_suffix()
                if (rt.key, namespace, meta["name"]) not in self._objects:
                    break
        name = meta["name"]
        if (rt.key, namespace, name) in self._objects:
            raise ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists',
                           _res_details(rt, name))
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if rt.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if reset_status:
            # Mirrors PrepareForCreate: clients cannot create status, except for nodes.
            if rt.plural == "pods":
                body["status"] = {"phase": "Pending"}
            elif rt.plural == "services":
                body["status"] = {"loadBalancer": {}}
            elif rt.plural == "namespaces":
                body["status"] = {"phase": "Active"}
            elif rt.status_subresource and rt.plural != "nodes":
                body.pop("status", None)
        if rt.plural == "customresourcedefinitions":
            body["status"] = _crd_status(body)
        if validation is not None and rt.custom:
            body = self._validate_custom(rt, body, None, validation)
            meta = body["metadata"]
        if validation is not None and rt.plural == "pods":
            _validate_pod(body, old=None, status_only=False)
        if manager:
            meta["managedFields"] = _managed_entry([], manager=manager, api_version=rt.api_version,
                                                   subresource=None, fields=_fields_v1(body, None))
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects[(rt.key, namespace, name)] = body
        self._record(rt, "ADDED", body, None)
        if rt.plural == "customresourcedefinitions":
            self._crd_changed(body, None)
        return copy.deepcopy(body)

    def _existing(self, rt: ResourceType, namespace: str, name: str) -> JSON:
        obj = self._objects.get((rt.key, namespace, name))
        if obj is None:
            raise _not_found(rt, name)
        return obj

    def _update(self, rt: ResourceType, namespace: str, name: str, body: JSON,
                subresource: str | None, *, lenient: bool = False,
                validation: str | None = None, manager: str | None = None) -> JSON:
        old = self._existing(rt, namespace, name)
        if not isinstance(body, dict):
            raise _bad_request("request body must be a JSON object")
        meta = body.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise _bad_request(f"the name of the object ({meta.get('name')}) does not match "
                               f"the name on the URL ({name})")
        uid = meta.get("uid")
        if uid and uid != old["metadata"]["uid"]:
            raise _conflict(rt, name, f"Precondition failed: UID in precondition: {uid}, "
                                      f"UID in object meta: {old['metadata']['uid']}")
        rv = meta.get("resourceVersion")
        if not rv and not (lenient or rt.unconditional_update):
            raise _invalid(rt, name, "metadata.resourceVersion", 0,
                           "must be specified for an update")
        return self._commit(rt, old, body, subresource, validation=validation, manager=manager)

    def _patch(self, rt: ResourceType, namespace: str, name: str, content_type: str,
               patch: Any, subresource: str | None, *, validation: str | None = None,
               manager: str | None = None) -> JSON:
        old = self._existing(rt, namespace, name)
        ctype = content_type.split(";")[0].strip().lower()
        if ctype == "application/json-patch+json":
            if not isinstance(patch, list):
                raise _bad_request("json patch must be a list of operations")
            try:
                patched = json_patch(old, patch)
            except _JsonPatchError as exc:
                # patch.go reports apply failures as a generic 422.
                raise ApiError(422, "Invalid", str(exc)) from None
        elif ctype == "application/merge-patch+json":
            if not isinstance(patch, dict):
                raise _bad_request("merge patch must be a JSON object")
            patched = merge_patch(old, patch)
        elif ctype == "application/strategic-merge-patch+json" and not rt.custom:
            if not isinstance(patch, dict):
                raise _bad_request("strategic merge patch must be a JSON object")
            patched = strategic_merge(old, patch)
        else:
            accepted = ["application/json-patch+json", "application/merge-patch+json"]
            if not rt.custom:
                accepted.append("application/strategic-merge-patch+json")
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted "
                           f"media types include: {', '.join(accepted)}")
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "patch produced a non-object document")
        meta = patched.setdefault("metadata", {})
        if meta.get("uid") != old["metadata"]["uid"]:
            raise _invalid(rt, name, "metadata.uid", meta.get("uid"), "field is immutable")
        if meta.get("name") != name:
            raise _bad_request(f"the name of the object ({meta.get('name')}) does not match "
                               f"the name on the URL ({name})")
        return self._commit(rt, old, patched, subresource, validation=validation, manager=manager)

    def _commit(self, rt: ResourceType, old: JSON, new: JSON, subresource: str | None, *,
                validation: str | None = None, manager: str | None = None) -> JSON:
        """Apply update strategies, preconditions and store; no-op writes change nothing."""
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        name = old_meta["name"]
        rv = meta.get("resourceVersion")
        if rv and rv != old_meta["resourceVersion"]:
            raise _conflict(rt, name, _STALE)
        if rt.namespaced and meta.get("namespace", old_meta["namespace"]) != old_meta["namespace"]:
            raise _bad_request("the namespace of the provided object does not match the "
                               "namespace sent on the request")
        if subresource == "status":
            # Status strategies keep everything but status (core types: labels too).
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            if not rt.custom:
                for k in ("labels", "annotations"):
                    if k in meta:
                        merged["metadata"][k] = meta[k]
                    else:
                        merged["metadata"].pop(k, None)
            new, meta = merged, merged["metadata"]
        elif rt.status_subresource:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if not rt.custom:
            new = _normalize_times(new)
            meta = new["metadata"]
        for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "namespace", "resourceVersion"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta.pop("selfLink", None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise ApiError(422, "Invalid", f'{rt.kind} "{name}" is invalid: '
                               "metadata.finalizers: Forbidden: no new finalizers can be "
                               "added if the object is being deleted")
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        if validation is not None and rt.plural == "pods":
            _validate_pod(new, old=old, status_only=subresource == "status")
        compare_old = old
        if validation is not None and rt.custom:
            new = self._validate_custom(rt, new, old, validation,
                                        only_status=subresource == "status")
            meta = new["metadata"]
            # Reads from etcd are defaulted too, so defaults alone are no spec change.
            compare_old = self._defaulted(rt, old)
        if rt.has_generation and _spec_part(rt, new) != _spec_part(rt, compare_old):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        # managedFields are the server's: kept as stored, then the writer's entry is updated, and
        # only when the write changed something (a no-op write leaves the object alone).
        if "managedFields" in old_meta:
            meta["managedFields"] = copy.deepcopy(old_meta["managedFields"])
        else:
            meta.pop("managedFields", None)
        if new == old:
            return copy.deepcopy(old)
        if manager:
            scope = ({"status": new.get("status")} if subresource == "status"
                     else {k: v for k, v in new.items() if k != "status" or not rt.status_subresource})
            old_scope = ({"status": old.get("status")} if subresource == "status" else old)
            meta["managedFields"] = _managed_entry(old_meta.get("managedFields") or [], manager=manager,
                                                   api_version=rt.api_version, subresource=subresource,
                                                   fields=_fields_v1(scope, old_scope))
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = (rt.key, old_meta.get("namespace", ""), name)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._objects[key]
            self._record(rt, "DELETED", new, old)
            if rt.plural == "customresourcedefinitions":
                self._crd_deleted(old)
        else:
            self._objects[key] = new
            self._record(rt, "MODIFIED", new, old)
            if rt.plural == "customresourcedefinitions":
                self._crd_changed(new, old)
        return copy.deepcopy(new)

    def _crd_deleted(self, crd: JSON) -> None:
        # The CRD's cleanup finalizer deletes every custom resource before the CRD goes
        # (apiextensions-apiserver pkg/controller/finalizer/crd_finalizer.go).
        spec = crd.get("spec") or {}
        for v in spec.get("versions") or []:
            rt = self._types.get((spec.get("group", ""), v.get("name", ""),
                                  (spec.get("names") or {}).get("plural", "")))
            if rt is None:
                continue
            for key in [k for k in self._objects if k[0] == rt.key]:
                prev = self._objects.pop(key)
                self._rv += 1
                gone = copy.deepcopy(prev)
                gone["metadata"]["resourceVersion"] = str(self._rv)
                self._record(rt, "DELETED", gone, prev)
        self._crd_changed(None, crd)

    def _delete(self, rt: ResourceType, namespace: str, name: str, options: JSON) -> JSON:
        old = self._existing(rt, namespace, name)
        old_meta = old["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old_meta["uid"]:
            raise _conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {old_meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != old_meta["resourceVersion"]:
            raise _conflict(rt, name, "Precondition failed: ResourceVersion in precondition: "
                            f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                            f"{old_meta['resourceVersion']}")
        if old_meta.get("finalizers"):
            if old_meta.get("deletionTimestamp"):
                return copy.deepcopy(old)
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if rt.has_generation:
                # rest.BeforeDelete bumps generation when graceful deletion starts.
                new["metadata"]["generation"] = int(old_meta.get("generation", 0)) + 1
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[(rt.key, namespace, name)] = new
            self._record(rt, "MODIFIED", new, old)
            return copy.deepcopy(new)
        del self._objects[(rt.key, namespace, name)]
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._record(rt, "DELETED", gone, old)
        if rt.plural == "customresourcedefinitions":
            self._crd_deleted(old)
        if rt.return_deleted_object:
            return copy.deepcopy(gone)
        details = _res_details(rt, name)
        details["uid"] = old_meta["uid"]
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    # ------------------------------------------------------------ HTTP glue

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._aux:
            for fault in self._faults:
                if fault.method in ("*", method) and fault.pattern.search(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _watch_events(self, rt: ResourceType, flt: _Filter, since: int) -> Iterator[JSON]:
        """Translate history after ``since`` into watch events for one watcher."""
        pending: list[_HistoryEvent] = []
        for ev in reversed(self._history):
            if ev.rv <= since:
                break
            if ev.rt.key == rt.key:
                pending.append(ev)
        for ev in reversed(pending):
            now_match = flt.matches(ev.obj)
            was_match = ev.prev is not None and flt.matches(ev.prev)
            if ev.type == "MODIFIED" and was_match and not now_match:
                # Watch cache: previous content, labelled with the new resourceVersion.
                gone = copy.deepcopy(ev.prev) if ev.prev else {}
                gone.setdefault("metadata", {})["resourceVersion"] = str(ev.rv)
                yield {"type": "DELETED", "object": gone}
            elif ev.type == "MODIFIED" and now_match and not was_match:
                yield {"type": "ADDED", "object": ev.obj}
            elif now_match:
                yield {"type": ev.type, "object": ev.obj}


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _too_old(requested: int, oldest: int) -> JSON:
    return {"type": "ERROR", "object": ApiError(
        410, "Expired", f"too old resource version: {requested} ({oldest})").status}


# --------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler],
                 emulator: KubeApiEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Own thread bookkeeping (instead of ThreadingMixIn's) so stop() can join
        # with a deadline after shutting every connection down.
        em = self.emulator
        thread = threading.Thread(target=self._serve_one, args=(request, client_address),
                                  daemon=True)
        with em._aux:
            em._connections.add(request)
            em._threads = [t for t in em._threads if t.is_alive()]
            em._threads.append(thread)
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        em = self.emulator
        try:
            context = em._tls_context
            if context is not None:
                # The handshake runs here, in the connection's thread, never in accept().
                raw = request
                raw.settimeout(10)
                request = context.wrap_socket(raw, server_side=True)
                request.settimeout(None)
                with em._aux:
                    em._connections.discard(raw)
                    em._connections.add(request)
            self.finish_request(request, client_address)
        except OSError:
            pass
        finally:
            with self.emulator._aux:
                self.emulator._connections.discard(request)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client disconnects are routine in watch-heavy tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "negsync-kubeapi-emulator"
    timeout = 60  # safety net; stop() shuts sockets down explicitly
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def em(self) -> KubeApiEmulator:
        return self.server.emulator

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------- plumbing

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise _bad_request("request body is not valid JSON") from None

    def _field_manager(self, query: dict[str, str]) -> str:
        """``fieldManager``, else the User-Agent up to its first "/" (apiserver
        ``handlers.prefixFromUserAgent``), as every write is attributed to a manager."""
        return query.get("fieldManager") or (self.headers.get("User-Agent") or "unknown").split("/")[0][:128]

    def _authenticated(self) -> bool:
        token = self.em.token
        if not token:
            return True
        scheme, _, credential = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip(), token)

    def _dispatch(self, method: str) -> None:
        em = self.em
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        ctype = self.headers.get("Content-Type")
        body_error: ApiError | None = None
        try:
            body = self._read_body()
        except ApiError as err:
            body, body_error = None, err
        with em._aux:
            em._requests.append(RecordedRequest(method, path, query, ctype, body))
        if not self._authenticated():
            # The authentication filter answers before routing, for every path
            # (apiserver endpoints/filters/authentication.go, responsewriters.Unauthorized).
            self._send_json(401, ApiError(401, "Unauthorized", "Unauthorized").status)
            return
        if em._latency:
            time.sleep(em._latency)
        fault = em._take_fault(method, path)
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            self._send_json(fault.status, ApiError(fault.status, fault.reason,
                                                   fault.message).status, headers)
            return
        try:
            if body_error is not None:
                raise body_error
            self._route(method, path, query, ctype, body)
        except ApiError as err:
            self._send_json(err.code, err.status)
        except OSError:
            raise  # the client went away: nothing to answer (handled by the server loop)
        except Exception as exc:
            # An emulator bug answers 500 with its cause instead of a silently dropped connection.
            self._send_json(500, ApiError(500, "InternalError", f"emulator error: {exc!r}").status)

    def _route(self, method: str, path: str, query: dict[str, str], ctype: str | None,
               body: Any) -> None:
        is_group_version = path == "/api/v1" or (path.startswith("/apis/")
                                                  and path.count("/") == 3)
        if method == "GET" and (path in ("/api", "/apis", "/version") or is_group_version
                                or path.startswith("/openapi/v3")):
            doc = _discovery(self.em, path)
            if doc is None:
                raise _not_found_path(path)
            self._send_json(200, doc)
            return
        em = self.em
        segs = path.strip("/").split("/")
        if segs[0] == "api" and len(segs) >= 3:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[0] == "apis" and len(segs) >= 4:
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            raise _not_found_path(path)
        namespace: str | None = None
        if (rest[0] == "namespaces" and len(rest) >= 3
                and (group, version, rest[2]) in em._types):
            namespace, rest = rest[1], rest[2:]
        rt = em._types.get((group, version, rest[0]))
        if rt is None or len(rest) > 3 or (namespace is not None and not rt.namespaced):
            raise _not_found_path(path)
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and not (sub == "status" and (rt.status_subresource
                                                        or rt.plural == "namespaces")):
            raise _not_found_path(path)
        if rt.namespaced and name is not None and namespace is None:
            raise _not_found_path(path)
        ns_key = namespace or "" if rt.namespaced else ""
        if name is None:
            if method == "GET":
                flt = _Filter(namespace if rt.namespaced else None,
                              parse_label_selector(query.get("labelSelector")),
                              parse_field_selector(rt, query.get("fieldSelector")))
                if query.get("watch") in ("true", "1", "True"):
                    self._watch(rt, flt, query)
                    return
                with em._cond:
                    try:
                        items, list_meta = em._list(rt, flt, query)
                    except ApiError as err:
                        if err.code == 410 and query.get("continue"):
                            # The Status carries an inconsistent token to carry on with.
                            start = _decode_continue(query["continue"])[1]
                            err.list_continue = _encode_continue(-1, start)
                        raise
                if discovery.wants_table(self.headers.get("Accept")):
                    self._send_table(rt, items, list_meta["resourceVersion"], query,
                                     list_meta.get("continue", ""), list_meta.get("remainingItemCount"))
                    return
                if not rt.custom:
                    # Built-in list items carry no kind/apiVersion on the wire.
                    for item in items:
                        item.pop("kind", None)
                        item.pop("apiVersion", None)
                self._send_json(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                                      "metadata": list_meta, "items": items})
            elif method == "POST":
                if not isinstance(body, dict):
                    raise _bad_request("request body must be a JSON object")
                if rt.namespaced and namespace is None:
                    raise ApiError(405, "MethodNotAllowed", "create requires a namespace")
                body = em._admit_create(rt, ns_key, body)
                with em._cond:
                    created = em._create(rt, ns_key, body, reset_status=True,
                                         validation=query.get("fieldValidation", ""),
                                         manager=self._field_manager(query))
                self._send_json(201, created)
            else:
                raise ApiError(405, "MethodNotAllowed",
                               f"the server does not allow this method on {rt.qualified}")
            return
        with em._cond:
            if method == "GET":
                result = copy.deepcopy(em._existing(rt, ns_key, name))
            elif method == "PUT":
                result = em._update(rt, ns_key, name, body, sub,
                                    validation=query.get("fieldValidation", ""),
                                    manager=self._field_manager(query))
            elif method == "PATCH":
                result = em._patch(rt, ns_key, name, ctype or "", body, sub,
                                   validation=query.get("fieldValidation", ""),
                                   manager=self._field_manager(query))
            elif method == "DELETE" and sub is None:
                result = em._delete(rt, ns_key, name, body if isinstance(body, dict) else {})
            else:
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
        if method == "GET" and discovery.wants_table(self.headers.get("Accept")):
            self._send_table(rt, [result], result["metadata"]["resourceVersion"], query)
            return
        self._send_json(200, result)

    def _send_table(self, rt: ResourceType, items: list[JSON], rv: str,
                    query: dict[str, str], continue_token: str = "",
                    remaining: int | None = None) -> None:
        version = self.em.crd_version(rt)
        columns = None if version is None else list(version.get("additionalPrinterColumns") or [
            # CRD defaulting adds an Age column when none are given (apiextensions v1 defaults).
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}])
        self._send_json(200, discovery.to_table(
            items, printer_columns=columns, resource_version=rv,
            include_object=query.get("includeObject") or "Metadata",
            continue_token=continue_token, remaining=remaining, kind=rt.kind if not rt.custom else ""))

    # ---------------------------------------------------------------- watch

    def _chunk(self, event: JSON) -> None:
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _client_gone(self) -> bool:
        conn = self.connection
        try:
            if isinstance(conn, ssl.SSLSocket):
                if not select.select([conn], [], [], 0)[0] and not conn.pending():
                    return False
                timeout = conn.gettimeout()
                conn.setblocking(False)
                try:
                    # A watch client sends nothing; what is readable is close_notify or EOF.
                    return conn.recv(1) == b""
                except ssl.SSLWantReadError:
                    return False
                finally:
                    conn.settimeout(timeout)
            readable, _, _ = select.select([conn], [], [], 0)
            return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _watch(self, rt: ResourceType, flt: _Filter, query: dict[str, str]) -> None:
        em = self.em
        raw_rv = query.get("resourceVersion", "")
        try:
            # timeoutSeconds=0 means "server default", as in the real API.
            timeout = float(query.get("timeoutSeconds") or 0) or em.max_watch_seconds
            since = int(raw_rv) if raw_rv not in ("", "0") else None
        except ValueError:
            raise _bad_request(f"invalid resourceVersion or timeoutSeconds: {query}") from None
        deadline = time.monotonic() + min(timeout, em.max_watch_seconds)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        initial: list[JSON] = []
        with em._cond:
            if since is None:
                initial = [{"type": "ADDED", "object": copy.deepcopy(o)}
                           for o in em._select(rt, flt)]
                cursor = em._rv
            else:
                cursor = since
        watcher = _Watcher(self.connection)
        with em._aux:
            em._watchers.add(watcher)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            for ev in initial:
                self._chunk(ev)
            next_bookmark = time.monotonic() + em.bookmark_interval
            head = 0
            while True:
                if watcher.dropped.is_set() or em._stopping.is_set():
                    raise ConnectionAbortedError("watch dropped")
                with em._cond:
                    if cursor < em._compacted_rv:
                        expired: JSON | None = _too_old(cursor, em._compacted_rv + 1)
                        events: list[JSON] = []
                    else:
                        expired = None
                        events = [copy.deepcopy(e) for e in em._watch_events(rt, flt, cursor)]
                        if not events:
                            wait = min(0.1, max(0.0, deadline - time.monotonic()))
                            if bookmarks:
                                wait = min(wait, max(0.0, next_bookmark - time.monotonic()))
                            em._cond.wait(wait)
                            events = [copy.deepcopy(e)
                                      for e in em._watch_events(rt, flt, cursor)]
                        head = em._rv
                        cursor = max(cursor, head)
                if expired is not None:
                    self._chunk(expired)
                    break
                for ev in events:
                    self._chunk(ev)
                now = time.monotonic()
                # A watch from a future resourceVersion sends nothing, bookmarks included, until
                # the store passes it (cacheWatcher.process only forwards events newer than the
                # requested revision); it neither fails nor replays what it skipped.
                if bookmarks and now >= next_bookmark and head >= cursor:
                    self._chunk({"type": "BOOKMARK", "object": {
                        "kind": rt.kind, "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(cursor)}}})
                    next_bookmark = now + em.bookmark_interval
                if now >= deadline or self._client_gone():
                    break
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            # Dropped by drop_watches()/stop() or the client went away: no terminator.
            self.close_connection = True
            _shutdown(self.connection)
        finally:
            with em._aux:
                em._watchers.discard(watcher)


def _not_found_path(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})",
                    {})


def _discovery(em: KubeApiEmulator, path: str) -> JSON | None:
    with em._cond:
        types = em.types
    if path == "/version":
        return dict(discovery.VERSION)
    if path == "/api":
        return discovery.api_versions()
    if path == "/apis":
        return discovery.api_group_list(types)
    if path == "/openapi/v3":
        return discovery.openapi_v3_root(types)
    if path.startswith("/openapi/v3/"):
        return discovery.openapi_v3_group_version(types, path[len("/openapi/v3/"):])
    group_version = "v1" if path == "/api/v1" else path[len("/apis/"):]
    return discovery.api_resource_list(types, group_version)
