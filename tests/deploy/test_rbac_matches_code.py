"""The ClusterRole and Role grant exactly the Kubernetes API calls negsync's code makes.

Every call negsync makes goes through a typed ``kubernetes.client`` API method (``list_namespaced_pod``,
``patch_namespaced_custom_object_status``, ...).  This test finds every such call in ``negsync/`` by
reading the source (ast), maps the method name to (apiGroup, resource, verb) and compares that set with
the rules in deploy/base/rbac.yaml, both ways: a call the role does not grant fails, and so does a grant
no code uses.  ``list`` implies ``watch`` (every list function feeds a watcher) and ``get`` (whoever may
list may read any object anyway), so those are not counted as unused.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
API_CLASSES = [client.CoreV1Api, client.DiscoveryV1Api, client.CoordinationV1Api, client.CustomObjectsApi,
               client.AdmissionregistrationV1Api]
GROUPS = {"CoreV1Api": "", "DiscoveryV1Api": "discovery.k8s.io", "CoordinationV1Api": "coordination.k8s.io",
          "AdmissionregistrationV1Api": "admissionregistration.k8s.io"}
VERBS = {"list": "list", "read": "get", "create": "create", "patch": "patch", "replace": "update", "delete": "delete"}
# snake_case kind -> plural resource (the typed API names the kind, RBAC the resource)
PLURALS = {"pod": "pods", "service": "services", "node": "nodes", "endpoint_slice": "endpointslices",
           "event": "events", "lease": "leases", "config_map": "configmaps", "namespace": "namespaces",
           "mutating_webhook_configuration": "mutatingwebhookconfigurations"}
CUSTOM = ("negsync.io", "targetbindings")


def api_methods() -> dict[str, str]:
    """Method name -> API class name, for every public method of the API classes negsync uses."""
    found: dict[str, str] = {}
    for cls in API_CLASSES:
        for name in dir(cls):
            if (name.split("_")[0] in VERBS and callable(getattr(cls, name))
                    and not name.endswith("_with_http_info")):
                found.setdefault(name, cls.__name__)
    return found


def calls_in_code() -> set[str]:
    methods = api_methods()
    called: set[str] = set()
    for path in (ROOT / "negsync").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in methods:
                called.add(node.attr)
    return called


def permission(method: str, api: str) -> tuple[str, str, str]:
    verb_word, _, rest = method.partition("_")
    verb = VERBS[verb_word]
    if api == "CustomObjectsApi":
        return CUSTOM[0], CUSTOM[1] + ("/status" if rest.endswith("_status") else ""), verb
    rest = re.sub(r"^namespaced_", "", rest)
    rest = re.sub(r"_for_all_namespaces$", "", rest)
    status = rest.endswith("_status")
    kind = rest.removesuffix("_status")
    return GROUPS[api], PLURALS[kind] + ("/status" if status else ""), verb


def used_permissions() -> set[tuple[str, str, str]]:
    methods = api_methods()
    used = {permission(m, methods[m]) for m in calls_in_code()}
    for group, resource, verb in list(used):
        if verb == "list":
            used |= {(group, resource, "watch"), (group, resource, "get")}
    return used


def granted_permissions() -> set[tuple[str, str, str]]:
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all((ROOT / "deploy/base/rbac.yaml").read_text()) if d]
    granted: set[tuple[str, str, str]] = set()
    for doc in docs:
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted |= {(group, resource, verb) for verb in rule["verbs"]}
    return granted


def test_the_code_calls_the_api_at_all() -> None:
    called = calls_in_code()
    assert {"list_namespaced_pod", "patch_namespaced_pod_status", "create_namespaced_lease"} <= called


def test_every_call_the_code_makes_is_granted() -> None:
    missing = used_permissions() - granted_permissions()
    assert not missing, f"the code calls the API without RBAC for: {sorted(missing)}"


def test_every_grant_is_used_by_the_code() -> None:
    unused = granted_permissions() - used_permissions()
    assert not unused, f"deploy/base/rbac.yaml grants what no code uses: {sorted(unused)}"


@pytest.mark.parametrize(
    ("method", "expected"),
    [("list_endpoint_slice_for_all_namespaces", ("discovery.k8s.io", "endpointslices", "list")),
     ("patch_namespaced_pod_status", ("", "pods/status", "patch")),
     ("patch_namespaced_custom_object_status", ("negsync.io", "targetbindings/status", "patch")),
     ("replace_namespaced_lease", ("coordination.k8s.io", "leases", "update")),
     ("read_namespace", ("", "namespaces", "get"))],
)
def test_method_names_map_to_rbac(method: str, expected: tuple[str, str, str]) -> None:
    assert permission(method, api_methods()[method]) == expected
