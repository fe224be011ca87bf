"""docs/reference.md is generated from the CLI's own flag definitions and must stay in sync."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from negsync import reference
from negsync.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reference.md"
REGENERATE = "docs/reference.md is out of date: run `python -m negsync.reference > docs/reference.md`"


def test_reference_page_matches_the_parser() -> None:
    assert PAGE.read_text(encoding="utf-8") == reference.render(), REGENERATE


def test_every_flag_of_every_subcommand_is_on_the_page() -> None:
    page = reference.render()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert len(subparsers.choices) >= 3
    for name, sub in subparsers.choices.items():
        assert f"## negsync {name}\n" in page
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in page, f"{name} {flag} missing"


def test_render_ignores_terminal_width_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = reference.render()
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("POD_NAMESPACE", "somewhere-else")
    assert reference.render() == baseline
    assert os.environ["POD_NAMESPACE"] == "somewhere-else"  # restored after rendering
    assert "`negsync-system`" in baseline


def test_module_entry_point_prints_the_page() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "negsync.reference"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env=env, check=True).stdout
    assert out == PAGE.read_text(encoding="utf-8"), REGENERATE
