"""The IAM policy in docs/aws.md grants exactly the AWS API calls negsync's code makes.

Every AWS call of the AWS provider package (``negsync/providers/aws/``) goes through one
function, ``_call(service, region, operation, **params)`` (also handed around as ``call``).  This
test reads the source (ast), collects every such call whose service and operation are literal
strings, maps them to IAM actions (``elbv2`` → ``elasticloadbalancing``) and compares the set with
the policy document in docs/aws.md, both ways: a call the policy does not grant fails, and so does
a grant no code uses.  A call whose service or operation is not a literal fails too, so the set
cannot silently miss one.
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
