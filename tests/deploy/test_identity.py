"""The permissions the deploy/ comments ask for are exactly the ones docs/gcp.md and docs/aws.md list.

Formats this test reads (keep them when editing either side):

* deploy/components/provider-{gcp,aws}/kustomization.yaml: a comment line ``# permissions:``
  followed by one ``#   <permission>`` line per permission (the list ends at the first other line).
* docs/gcp.md and docs/aws.md: the permissions between ``<!-- permissions:begin -->`` and
  ``<!-- permissions:end -->`` when those markers exist; otherwise the section ``## IAM
  permissions`` up to the next ``## `` heading.  Inside, a permission is any backticked or quoted
  token shaped like one: ``compute.<resource>.<verb>`` (GCP) or ``"<service>:<Action>"`` (AWS
  policy JSON), so a table or a policy document both work.
"""

from __future__ import annotations

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


def doc_section(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    marked = re.search(r"<!-- permissions:begin -->(.*?)<!-- permissions:end -->", text, re.S)
    if marked:
        return marked.group(1)
    section = re.search(r"^## IAM permissions\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, f"{path.name} has neither permission markers nor an '## IAM permissions' section"
    return section.group(1)


def doc_permissions(path: Path, pattern: re.Pattern[str]) -> set[str]:
    section = doc_section(path)
    # Rows that say what is NOT needed are not part of the list.
    kept = "\n".join(line for line in section.splitlines() if not line.lstrip().lower().startswith("not needed"))
    return set(pattern.findall(kept))


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
