"""The IAM permissions in docs/aws.md and docs/gcp.md are exactly what negsync's code needs.

AWS: every AWS call of the AWS provider package (``negsync/providers/aws/``) goes through one
function, ``_call(service, region, operation, **params)`` (also handed around as ``call``).  The
test reads the source (ast), collects every such call whose service and operation are literal
strings, maps them to IAM actions (``elbv2`` → ``elasticloadbalancing``) and compares the set with
the policy document in docs/aws.md, both ways: a call the policy does not grant fails, and so does
a grant no code uses.  A call whose service or operation is not a literal fails too, so the set
cannot silently miss one.

GCP: the provider builds its Compute client from the discovery document and binds collections
(``x = service.networkEndpointGroups()``); every ``x.<method>(...)`` (or ``getattr(x, name)``) is
one Compute API method.  The scan maps each to the permissions Google's REST reference lists for
it (``GCP_REFERENCE``, its source cited there) and compares them with the table in docs/gcp.md
"IAM permissions" and the custom-role commands in docs/gcp.md and docs/quickstart-gke.md.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from negsync.providers.aws.errors import iam_action

ROOT = Path(__file__).resolve().parents[2]
CALLERS = {"_call", "call"}


def calls_in_code() -> set[str]:
    actions: set[str] = set()
    for path in sorted((ROOT / "negsync" / "providers" / "aws").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in CALLERS or len(node.args) < 3:
                continue
            service, operation = node.args[0], node.args[2]
            where = f"{path.name}:{node.lineno}"
            assert isinstance(service, ast.Constant) and isinstance(operation, ast.Constant), (
                f"{where}: the service and operation of an AWS call must be literal strings")
            actions.add(iam_action(str(service.value), str(operation.value)))
    return actions


def granted_in_docs() -> set[str]:
    text = (ROOT / "docs" / "aws.md").read_text()
    section = text.split("## IAM permissions", 1)[1]
    policy = json.loads(re.search(r"```json\n(.*?)```", section, re.S)[1])  # type: ignore[index]
    granted: set[str] = set()
    for statement in policy["Statement"]:
        actions = statement["Action"]
        granted.update([actions] if isinstance(actions, str) else actions)
    return granted


def test_the_documented_policy_grants_exactly_what_the_code_calls() -> None:
    used = calls_in_code()
    assert {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
            "elasticloadbalancing:DescribeTargetHealth"} <= used  # the scan found the calls
    granted = granted_in_docs()
    assert not used - granted, f"called but not in the docs/aws.md policy: {sorted(used - granted)}"
    assert not granted - used, f"granted in docs/aws.md but never called: {sorted(granted - used)}"


def test_describe_actions_are_granted_on_every_resource() -> None:
    # Describe* support no resource-level permissions: a narrower Resource would deny them.
    text = (ROOT / "docs" / "aws.md").read_text().split("## IAM permissions", 1)[1]
    policy = json.loads(re.search(r"```json\n(.*?)```", text, re.S)[1])  # type: ignore[index]
    for statement in policy["Statement"]:
        if any(":Describe" in a for a in statement["Action"]):
            assert statement["Resource"] == "*", statement


# -- GCP ----------------------------------------------------------------------------------------
#: Per Compute API method, the permissions in the "IAM Permissions" block of its REST reference
#: page (https://cloud.google.com/compute/docs/reference/rest/v1/<collection>/<method>), as read
#: from iann0036/iam-dataset gcp/map.json at commit 2073fa52ac008a45477aa0b1b4580cd99135bf60
#: (2026-08-22): the entries tagged ``restcrawliamblockv1``, which that repo's util/gcp_crawl.py
#: takes from the page's ``<h3 id="iam-permissions">`` list.  Only methods negsync calls.
GCP_REFERENCE: dict[str, frozenset[str]] = {
    "compute.networkEndpointGroups.get": frozenset({"compute.networkEndpointGroups.get"}),
    "compute.networkEndpointGroups.listNetworkEndpoints": frozenset({"compute.networkEndpointGroups.get"}),
    "compute.networkEndpointGroups.aggregatedList": frozenset({"compute.networkEndpointGroups.list"}),
    "compute.networkEndpointGroups.insert": frozenset({
        "compute.networkEndpointGroups.create", "compute.networks.use", "compute.subnetworks.use"}),
    "compute.networkEndpointGroups.delete": frozenset({
        "compute.networkEndpointGroups.delete", "compute.instances.use"}),
    "compute.networkEndpointGroups.attachNetworkEndpoints": frozenset({
        "compute.networkEndpointGroups.attachNetworkEndpoints"}),
    "compute.networkEndpointGroups.detachNetworkEndpoints": frozenset({
        "compute.networkEndpointGroups.detachNetworkEndpoints"}),
    "compute.zoneOperations.wait": frozenset({"compute.zoneOperations.get"}),
}

#: Granted on belief, beyond the reference: the crawl reads the IAM block and the path/query
#: parameter tables, not request-body fields, and each attached endpoint names its VM
#: (``networkEndpoints[].instance``).  Google's k8s-hybrid-neg-controller role grants it too.
GCP_BELIEF: dict[str, frozenset[str]] = {
    "compute.networkEndpointGroups.attachNetworkEndpoints": frozenset({"compute.instances.use"}),
}

PAGINATION_SUFFIX = "_next"  # googleapiclient's client-side helper: pages of the same method


def compute_collections() -> dict[str, set[str]]:
    """Collection name → its method names, from the discovery document the client is built from."""
    from tests.emulators.compute import discovery_document_path

    doc = json.loads(discovery_document_path().read_text(encoding="utf-8"))
    return {name: set(resource.get("methods", {})) for name, resource in doc["resources"].items()}


def _last_name(node: ast.expr) -> str | None:
    """``self._client.negs`` → ``negs``: the attribute a collection is held under (a bare local name
    is no attribute: ``negs = []`` elsewhere is not the collection)."""
    return node.attr if isinstance(node, ast.Attribute) else None


def gcp_methods_in_code(providers: Path = ROOT / "negsync" / "providers") -> set[str]:
    """Every Compute method the provider modules call.

    A collection is bound once (``self.negs = service.networkEndpointGroups()``) and used from other
    modules through that attribute (``self._client.negs.get(...)``), so the bindings are collected
    across every module first, by the name they are held under.  Calls count when made directly, via
    ``getattr(collection, name)``, or through the paging helper ``pages(project, collection,
    "method", ...)``."""
    collections = compute_collections()
    trees = [(path, ast.parse(path.read_text(), filename=str(path))) for path in sorted(providers.rglob("*.py"))]
    bound: dict[str, str] = {}  # name a collection is held under ("negs") → collection
    for _, tree in trees:
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                    and value.func.attr in collections and not value.args:
                for target in targets:
                    if (name := _last_name(target)) is not None:
                        bound[name] = value.func.attr
    called: set[str] = set()
    for path, tree in trees:
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and _last_name(func.value) in bound:
                collection = bound[_last_name(func.value) or ""]
                method = func.attr.removesuffix(PAGINATION_SUFFIX)
                assert method in collections[collection], f"{path.name}:{node.lineno}: {collection}.{method}?"
                called.add(f"compute.{collection}.{method}")
                continue
            held: ast.expr | None = None
            name: ast.expr | None = None
            if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
                held, name = node.args[0], node.args[1]
            elif isinstance(func, ast.Attribute) and func.attr == "pages" and len(node.args) >= 3:
                held, name = node.args[1], node.args[2]
            if held is None or name is None or _last_name(held) not in bound:
                continue
            collection = bound[_last_name(held) or ""]
            # A computed name: every literal in the module that names a method of the collection
            # counts as called: over-counting fails loudly; only a name built at run time escapes.
            names = {str(name.value)} if isinstance(name, ast.Constant) else strings & collections[collection]
            for method in names:
                assert method in collections[collection], f"{path.name}:{node.lineno}: {collection}.{method}?"
            called.update(f"compute.{collection}.{m}" for m in names)
    return called


def gcp_doc_section() -> str:
    text = (ROOT / "docs" / "gcp.md").read_text(encoding="utf-8")
    section = re.search(r"^## IAM permissions\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "docs/gcp.md has no '## IAM permissions' section"
    return section.group(1)


def gcp_doc_table() -> dict[str, tuple[set[str], str]]:
    """Permission → (the API methods its row names, the row's Source cell)."""
    rows: dict[str, tuple[set[str], str]] = {}
    for line in gcp_doc_section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(compute\.[A-Za-z]+\.[A-Za-z]+)`", cells[0]) if len(cells) == 3 else None
        if match:
            methods = {f"compute.{m}" for m in re.findall(r"`([A-Za-z]+\.[A-Za-z]+)`", cells[1])}
            rows[match.group(1)] = (methods, cells[2])
    return rows


def role_command_permissions(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8").replace("\\\n", "")
    found = re.findall(r"gcloud iam roles create .*?--permissions=(\S+)", text)
    assert len(found) == 1, f"{path.name}: expected one 'gcloud iam roles create ... --permissions=' command"
    return set(found[0].split(","))


def test_gcp_doc_lists_exactly_the_methods_the_code_calls_with_their_reference_permissions() -> None:
    called = gcp_methods_in_code()
    assert {"compute.networkEndpointGroups.attachNetworkEndpoints",
            "compute.networkEndpointGroups.detachNetworkEndpoints",
            "compute.networkEndpointGroups.listNetworkEndpoints",
            "compute.zoneOperations.wait"} <= called  # the scan found the calls
    unknown = called - GCP_REFERENCE.keys()
    assert not unknown, f"called, but its reference permissions are not recorded in GCP_REFERENCE: {sorted(unknown)}"
    needed: dict[str, set[str]] = {}  # permission → the methods that need it
    for method in called:
        for permission in GCP_REFERENCE[method] | GCP_BELIEF.get(method, frozenset()):
            needed.setdefault(permission, set()).add(method)
    table = gcp_doc_table()
    assert table.keys() == needed.keys(), (f"missing from docs/gcp.md: {sorted(needed.keys() - table.keys())}; "
                                           f"not needed: {sorted(table.keys() - needed.keys())}")
    for permission, (methods, source) in table.items():
        assert methods == needed[permission], (
            f"{permission}: the row names {sorted(methods)}, needed by {sorted(needed[permission])}")
        verified = any(permission in GCP_REFERENCE[m] for m in methods)
        believed = any(permission in GCP_BELIEF.get(m, ()) for m in methods)
        assert ("verified" in source) == verified, f"{permission}: Source cell must say 'verified' iff the reference lists it"
        assert ("belief" in source) == believed, f"{permission}: Source cell must say 'belief' iff a belief grants it"
    listed = {f"compute.{m}" for m in re.findall(r"`([A-Za-z]+\.[A-Za-z]+)`", gcp_doc_section().split("|", 1)[0])}
    assert listed == called, f"the method list above the table: {sorted(listed ^ called)}"


def test_gcp_custom_role_commands_grant_exactly_the_table() -> None:
    table = set(gcp_doc_table())
    for path in (ROOT / "docs" / "gcp.md", ROOT / "docs" / "quickstart-gke.md"):
        granted = role_command_permissions(path)
        assert granted == table, f"{path.name}: extra {sorted(granted - table)}, missing {sorted(table - granted)}"


def test_gcp_scan_reads_bound_collections_getattr_and_pagination(tmp_path: Path) -> None:
    """The scanner itself, on a module shaped like the provider (it must not miss a dynamic call)."""
    source = (
        "class P:\n"
        "    def __init__(self, service):\n"
        "        self._negs = service.networkEndpointGroups()\n"
        "        self._ops = service.zoneOperations()\n"
        "    def run(self, method):\n"
        "        self._negs.aggregatedList_next(None, None)\n"
        "        self._ops.wait(project='p')\n"
        "        getattr(self._negs, method)()\n"
        "        return {'x': 1}.get('x'), 'attachNetworkEndpoints'\n"
    )
    (tmp_path / "fake_gcp.py").write_text(source)
    assert gcp_methods_in_code(tmp_path) == {"compute.networkEndpointGroups.aggregatedList", "compute.zoneOperations.wait",
                     "compute.networkEndpointGroups.attachNetworkEndpoints"}


def test_gcp_scan_sees_every_method_a_neg_lifecycle_sends() -> None:
    """Cross-check of the scan: what the real client sends through create, attach, list, detach, delete."""
    from negsync.core.bindings import GcpNegTarget
    from negsync.core.model import BindingKey, TargetEndpoint
    from negsync.providers.gcp import GcpProvider
    from tests.emulators.compute import FakeCompute

    project, zone, key = "proj-iam", "us-central1-a", BindingKey("shop", "web")
    spec = GcpNegTarget(project=project, network="default", subnetwork="nodes")
    with FakeCompute() as fake:
        fake.add_subnetwork(project, "us-central1", "nodes", cidr="10.0.0.0/8")
        fake.provision(project, zone, "vm-1", ["10.0.0.7"], subnetwork="nodes")
        provider = GcpProvider(cluster_uid="0f3c2a9e-5b7d-4e21-9a10-5d6f7e8a9b0c", compute_endpoint=fake.api_endpoint,
                               credentials=fake.credentials(), operation_timeout=5.0, http_timeout=5.0)
        endpoint = TargetEndpoint("10.0.0.7", 8080, "vm-1")
        assert provider.existing_targets(binding=key, spec=spec) == []
        ref = provider.ref(key, spec, zone)
        provider.ensure_target(ref, binding=key, spec=spec)
        provider.attach(ref, [endpoint])
        assert endpoint in provider.list_endpoints(ref)
        provider.detach(ref, [endpoint])
        assert provider.delete_target(ref, binding=key, spec=spec)
        sent = {str(call.method_id) for call in fake.calls if call.method_id}
    assert {"compute.networkEndpointGroups.insert", "compute.networkEndpointGroups.delete"} <= sent
    assert sent <= gcp_methods_in_code(), f"sent but not found by the scan: {sorted(sent - gcp_methods_in_code())}"
