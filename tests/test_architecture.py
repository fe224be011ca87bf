"""docs/architecture.md lists every module of the package, and only modules that exist.

A newcomer reads the tree there before the code; a module added without a line, or a line left
behind by a move, makes that map wrong.  (A docs test, like tests/test_reference.py: it spans the
package on purpose.)
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def listed_modules() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = re.search(r"^## The tree, one line per module\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "docs/architecture.md has no '## The tree, one line per module' section"
    return set(re.findall(r"^\| `(negsync/[\w/]+\.py)` \| \d+ \|", section.group(1), re.M))


def package_modules() -> set[str]:
    found = set()
    for path in (ROOT / "negsync").rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        # An empty __init__ marks a package and says nothing; one with a docstring is a module.
        if path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
            continue
        found.add(path.relative_to(ROOT).as_posix())
    return found


def test_every_module_has_its_line_and_every_line_a_module() -> None:
    listed, actual = listed_modules(), package_modules()
    assert not actual - listed, f"modules missing from docs/architecture.md: {sorted(actual - listed)}"
    assert not listed - actual, f"docs/architecture.md lists modules that do not exist: {sorted(listed - actual)}"
