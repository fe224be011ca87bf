"""``negsync simulate FILE --json`` run in-process, for the tests that check its recommendation."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import yaml

from negsync.sim import command


def simulate_json(tmp_path: Path, raw: dict[str, Any], *extra: str) -> dict[str, Any]:
    """The JSON document ``negsync simulate`` prints for ``raw`` written to a file (exit code 0 asserted)."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert command.run(parser.parse_args([str(path), "--json", *extra])) == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc
