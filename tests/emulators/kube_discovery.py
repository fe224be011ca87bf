"""What a real client asks the API emulator before it asks for objects: discovery, OpenAPI, Tables.

kubectl does not talk to a resource path until it has mapped a kind or a short name to it, so the
emulator must answer the documents kubectl reads first.  Each answer is the smallest one that
kubectl accepts *and* that says what kube-apiserver says; the sources:

* **Legacy discovery** (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``): the
  ``APIVersions``, ``APIGroupList`` and ``APIResourceList`` documents of
  apimachinery ``pkg/apis/meta/v1/types.go``, with ``shortNames`` and ``categories`` (kubectl's
  RESTMapper expands ``tb`` and ``all`` from them: client-go ``restmapper/shortcut.go``,
  ``restmapper/category_expansion.go``).  Aggregated discovery (``apidiscovery.k8s.io/v2``) is
  not served: the server answers plain JSON and client-go falls back to per-group documents, as
  it does against any server without the feature (``discovery/aggregated_discovery.go``).
* **OpenAPI v3** (``/openapi/v3`` and one document per group-version): kubectl refuses to apply
  without it ("failed to download openapi", ``kubectl/pkg/cmd/apply``).  Each PATCH operation
  carries ``x-kubernetes-group-version-kind`` and the ``fieldValidation`` query parameter, which
  is exactly what cli-runtime ``resource/query_param_verifier_v3.go`` looks for before it leaves
  validation to the server (``fieldValidation=Strict``).  No request bodies or schemas are
  published, so kubectl's client-side apply computes strategic merge patches from its compiled-in
  types and JSON merge patches for custom resources (``kubectl/pkg/cmd/apply/patcher.go``,
  ``gvkSupportsPatchOpenAPIV3`` returning false) — the same patches it sends a real server for
  built-in kinds and CRDs.  OpenAPI v2 is a 404, which kubectl tolerates once v3 answers.
* **Tables** (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``, what ``kubectl get``
  sends): custom resources get the CRD's ``additionalPrinterColumns`` evaluated as apiextensions
  ``registry/customresource/tableconvertor/tableconvertor.go`` does (Name first, ``date``
  columns as a human age, missing values as null); built-in kinds get apiserver's default
  convertor columns (``apiserver/pkg/registry/rest/table.go``: Name, Created At), which is
  sparser than the real per-kind printers but never wrong — except Pods, whose printer
  (``pkg/printers/internalversion/printers.go`` ``printPod``: Ready, Status, Restarts, Age and,
  for ``-o wide``, IP, Node, Nominated Node, Readiness Gates) the quickstarts rely on.  Each row carries the object as
  ``PartialObjectMetadata``, the default ``includeObject=Metadata``
  (``apiserver/pkg/endpoints/handlers/response.go``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.emulators.kubeapi import ResourceType

JSON = dict[str, Any]

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-negsync-emulator", "gitCommit": "",
           "gitTreeState": "clean", "buildDate": "", "goVersion": "", "compiler": "gc",
           "platform": "linux/amd64"}


def api_versions() -> JSON:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def api_group_list(types: Iterable[ResourceType]) -> JSON:
    groups: dict[str, list[str]] = {}
    for r in types:
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
         "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
        for g, vs in groups.items()]}


def api_resource_list(types: Iterable[ResourceType], group_version: str) -> JSON | None:
    resources: list[JSON] = []
    for r in types:
        if r.api_version != group_version:
            continue
        entry: JSON = {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": VERBS}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        if r.status_subresource:
            resources.append({"name": f"{r.plural}/status", "singularName": "",
                              "namespaced": r.namespaced, "kind": r.kind,
                              "verbs": ["get", "patch", "update"]})
    if not resources:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources}


def _gv_path(group_version: str) -> str:
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


def openapi_v3_root(types: Iterable[ResourceType]) -> JSON:
    """The discovery document of OpenAPI v3: one entry per group-version, with a content hash."""
    paths: JSON = {}
    for gv in sorted({r.api_version for r in types}):
        rel = _gv_path(gv)
        digest = hashlib.sha256(rel.encode()).hexdigest()[:16].upper()
        paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_group_version(types: Iterable[ResourceType], rel: str) -> JSON | None:
    """Paths (no schemas) for one group-version; PATCH operations advertise fieldValidation."""
    paths: JSON = {}
    for r in types:
        if _gv_path(r.api_version) != rel:
            continue
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        scope = f"/{rel}/namespaces/{{namespace}}" if r.namespaced else f"/{rel}"
        params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
                   "description": "Ignore, Warn or Strict"},
                  {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                  {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}]
        item = {"x-kubernetes-group-version-kind": gvk, "parameters": params,
                "responses": {"200": {"description": "OK"}}}
        paths[f"{scope}/{r.plural}/{{name}}"] = {
            "get": {**item, "x-kubernetes-action": "get", "parameters": []},
            "put": {**item, "x-kubernetes-action": "put"},
            "patch": {**item, "x-kubernetes-action": "patch"},
            "delete": {**item, "x-kubernetes-action": "delete", "parameters": []},
        }
        paths[f"{scope}/{r.plural}"] = {
            "get": {**item, "x-kubernetes-action": "list", "parameters": []},
            "post": {**item, "x-kubernetes-action": "post"},
        }
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}


# -------------------------------------------------------------------------------- Tables

def wants_table(accept: str | None) -> bool:
    """True when the Accept header asks for meta.k8s.io/v1 Table (the media type kubectl get sends)."""
    for media in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in media.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") == "v1":
            return True
    return False


_NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
                "description": "Name must be unique within a namespace. Is required when creating "
                               "resources, although some resources may allow a client to request "
                               "the generation of an appropriate name automatically."}
_CREATED_COLUMN = {"name": "Created At", "type": "date", "format": "", "priority": 0,
                   "description": "CreationTimestamp is a timestamp representing the server time "
                                  "when this object was created."}


_POD_COLUMNS = [_NAME_COLUMN, *({"name": n, "type": "string", "format": "", "priority": p, "description": d}
                                for n, p, d in (
    ("Ready", 0, "The aggregate readiness state of this pod for accepting traffic."),
    ("Status", 0, "The aggregate status of the containers in this pod."),
    ("Restarts", 0, "The number of times the containers in this pod have been restarted."),
    ("Age", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
    ("IP", 1, "IP address allocated to the pod. Routable at least within the cluster."),
    ("Node", 1, "NodeName is a request to schedule this pod onto a specific node."),
    ("Nominated Node", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
    ("Readiness Gates", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
))]


def _pod_cells(obj: JSON, now: datetime) -> list[Any]:
    """kubernetes pkg/printers/internalversion/printers.go printPod, the columns kubectl shows."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
    gate_text = f"{sum(1 for g in gates if conditions.get(g) == 'True')}/{len(gates)}" if gates else "<none>"
    return [meta.get("name", ""), f"{ready}/{len(spec.get('containers') or [])}", reason, str(restarts),
            _cell("date", meta.get("creationTimestamp"), now), status.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gate_text]


def to_table(items: Sequence[JSON], *, printer_columns: Sequence[Mapping[str, Any]] | None,
             resource_version: str, include_object: str = "Metadata", now: datetime | None = None,
             continue_token: str = "", remaining: int | None = None, kind: str = "") -> JSON:
    now = now or datetime.now(UTC)
    if kind == "Pod" and printer_columns is None:
        columns: list[JSON] = list(_POD_COLUMNS)
    elif printer_columns is None:
        columns: list[JSON] = [_NAME_COLUMN, _CREATED_COLUMN]
    else:
        columns = [_NAME_COLUMN, *({
            "name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
            "priority": int(c.get("priority", 0)),
            "description": c.get("description")
            or f"Custom resource definition column (in JSONPath format): {c['jsonPath']}"}
            for c in printer_columns)]
    rows: list[JSON] = []
    for obj in items:
        meta = obj.get("metadata") or {}
        cells: list[Any] = [meta.get("name", "")]
        if kind == "Pod" and printer_columns is None:
            cells = _pod_cells(obj, now)
        elif printer_columns is None:
            # DefaultTableConvertor writes the creation time itself; kubectl renders it as an age.
            cells.append(meta.get("creationTimestamp"))
        else:
            for col in printer_columns:
                cells.append(_cell(col.get("type", "string"), _jsonpath(obj, col["jsonPath"]), now))
        row: JSON = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": meta}
        rows.append(row)
    metadata: JSON = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": columns, "rows": rows}


_MISSING = object()
_STEP = re.compile(r"""\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)\]""")


def _jsonpath(obj: Any, path: str) -> Any:
    """The simple JSONPath subset CRD printer columns use: ``.a.b``, ``[0]``, ``[?(@.k=="v")]``.

    Returns the first match, as the table convertor keeps only ``results[0][0]``; a missing key is
    no match (``AllowMissingKeys(true)``).
    """
    current: list[Any] = [obj]
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        pos = m.end()
        nxt: list[Any] = []
        for value in current:
            if m.group(1) is not None and isinstance(value, dict) and m.group(1) in value:
                nxt.append(value[m.group(1)])
            elif m.group(2) is not None and isinstance(value, list) and int(m.group(2)) < len(value):
                nxt.append(value[int(m.group(2))])
            elif m.group(3) is not None and isinstance(value, list):
                nxt.extend(v for v in value
                           if isinstance(v, dict) and str(_jsonpath(v, "." + m.group(3))) == m.group(4))
        current = nxt
    return current[0] if current else _MISSING


def _cell(column_type: str, value: Any, now: datetime) -> Any:
    if value is _MISSING or value is None:
        return None
    if column_type == "string":
        # JSONPath printing: strings verbatim, everything else as its JSON-ish text.
        return value if isinstance(value, str) else _print(value)
    if column_type == "integer":
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "number":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        return human_duration((now - when).total_seconds())
    return None


def _print(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)


def human_duration(seconds: float) -> str:
    """apimachinery ``util/duration.HumanDuration``, the age kubectl shows."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"
