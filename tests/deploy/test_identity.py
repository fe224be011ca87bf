"""The permissions the deploy/ comments ask for are exactly the ones docs/gcp.md and docs/aws.md list.

Formats this test reads (keep them when editing either side):

* deploy/components/provider-{gcp,aws}/kustomization.yaml: a comment line ``# permissions:``
  followed by one ``#   <permission>`` line per permission (the list ends at the first other line).
* docs/gcp.md and docs/aws.md: when the markers ``<!-- permissions:begin -->`` and
  ``<!-- permissions:end -->`` exist, every permission-shaped token between them (backticked
  ``compute.<resource>.<verb>``, or a quoted/backticked ``<service>:<Action>``).  Without markers,
  in the section ``## IAM permissions`` (up to the next ``## `` heading): GCP — the first cell of
  each table row (``| `compute.x.y` | ...``); AWS — the ``Action`` strings of the first ```json
  policy block.  Prose around them (a permission named as an example, or "Not needed") is ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.test_manifests import DEPLOY, REPO

GCP_PERMISSION = re.compile(r"`((?:compute|iam|resourcemanager)\.[A-Za-z]+\.[A-Za-z]+)`")
AWS_ACTION = re.compile(r"[`\"]((?:elasticloadbalancing|ec2|sts|iam):[A-Za-z]+)[`\"]")


def manifest_permissions(component: str) -> set[str]:
    lines = (DEPLOY / "components" / component / "kustomization.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# permissions:") + 1
    found = set()
    for line in lines[start:]:
        match = re.fullmatch(r"#\s{3}(\S+)", line)
        if match is None:
            break
        found.add(match.group(1))
    assert found, f"{component}: empty permission list"
    return found


def doc_permissions(path: Path, pattern: re.Pattern[str]) -> set[str]:
    text = path.read_text(encoding="utf-8")
    marked = re.search(r"<!-- permissions:begin -->(.*?)<!-- permissions:end -->", text, re.S)
    if marked:
        return set(pattern.findall(marked.group(1)))
    section = re.search(r"^## IAM permissions\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, f"{path.name} has neither permission markers nor an '## IAM permissions' section"
    body = section.group(1)
    if pattern is GCP_PERMISSION:
        rows = re.findall(r"^\|\s*(`[^`]+`)\s*\|", body, re.M)
        return set(pattern.findall(" ".join(rows)))
    policy = re.search(r"```json\n(.*?)```", body, re.S)
    assert policy, f"{path.name}: no JSON policy in '## IAM permissions'"
    actions = [a for statement in json.loads(policy.group(1))["Statement"] for a in
               ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])]
    return set(pattern.findall(" ".join(f'"{a}"' for a in actions)))


@pytest.mark.parametrize(("component", "doc", "pattern"), [
    ("provider-gcp", "gcp.md", GCP_PERMISSION),
    ("provider-aws", "aws.md", AWS_ACTION),
], ids=["gcp", "aws"])
def test_manifest_permission_comments_match_the_docs(component: str, doc: str, pattern: re.Pattern[str]) -> None:
    in_manifest = manifest_permissions(component)
    in_doc = doc_permissions(REPO / "docs" / doc, pattern)
    assert in_doc, f"docs/{doc}: no permission found in its list"
    assert in_manifest == in_doc, (f"only in deploy/components/{component}: {sorted(in_manifest - in_doc)}; "
                                   f"only in docs/{doc}: {sorted(in_doc - in_manifest)}")


def test_every_overlay_names_its_identity_mechanism_and_provider() -> None:
    """Each identity variant is documented where a user picks it, with the command that sets it up."""
    expectations = {
        "gke": ("roles/iam.workloadIdentityUser", "provider-gcp"),
        "gke-wif": ("principal://iam.googleapis.com/", "provider-gcp"),
        "eks": ("eks.amazonaws.com/role-arn", "provider-aws"),
        "eks-pod-identity": ("create-pod-identity-association", "provider-aws"),
    }
    for overlay, (needle, component) in expectations.items():
        text = (DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text(encoding="utf-8")
        assert needle in text, overlay
        assert f"../../components/{component}" in text, overlay


def test_the_doc_parsers_read_lists_not_prose(tmp_path: Path) -> None:
    gcp = tmp_path / "gcp.md"
    gcp.write_text("## IAM permissions\n\n| Permission | Why |\n|---|---|\n| `compute.networkEndpointGroups.get` | x |\n\n"
                   "The pattern of `compute.globalNetworkEndpointGroups.get` is an example.\n"
                   "Not needed: `compute.networkEndpointGroups.use`.\n\n## Next\n")
    assert doc_permissions(gcp, GCP_PERMISSION) == {"compute.networkEndpointGroups.get"}
    aws = tmp_path / "aws.md"
    aws.write_text('## IAM permissions\n\n```json\n{"Statement": [{"Action": "ec2:DescribeVpcs"}, '
                   '{"Action": ["elasticloadbalancing:RegisterTargets"]}]}\n```\n\nNot `"iam:PassRole"`.\n\n## Next\n')
    assert doc_permissions(aws, AWS_ACTION) == {"ec2:DescribeVpcs", "elasticloadbalancing:RegisterTargets"}
    marked = tmp_path / "marked.md"
    marked.write_text("<!-- permissions:begin -->\n- `ec2:DescribeVpcs`\n<!-- permissions:end -->\n`ec2:RunInstances`\n")
    assert doc_permissions(marked, AWS_ACTION) == {"ec2:DescribeVpcs"}
