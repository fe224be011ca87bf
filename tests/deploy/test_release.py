"""deploy/release/ is what `make release` renders from the kustomize tree, split so the safe orders work.

Rendering needs ``kubectl`` (its built-in kustomize), as for a user; these tests skip without it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy.test_manifests import DEPLOY, IMAGE, REPO

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the kustomize tree")

RELEASE = DEPLOY / "release"
DIGEST = "sha256:" + "ab" * 32


def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_release", DEPLOY / "render_release.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return renderer().render(version="0.1.0", digest=None)


def test_checked_in_release_is_in_sync_with_the_tree() -> None:
    """`make release` was run after the last change to deploy/ (the command the Makefile runs)."""
    result = subprocess.run([sys.executable, str(DEPLOY / "render_release.py"), "--check"], capture_output=True,
                            text=True, timeout=120, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_check_detects_a_stale_file(tmp_path: Path) -> None:
    for path in RELEASE.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    stale = tmp_path / "negsync-eks.yaml"
    stale.write_text(stale.read_text().replace("replicas: 2", "replicas: 1"))
    result = subprocess.run([sys.executable, str(DEPLOY / "render_release.py"), "--check", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert result.returncode == 1 and "negsync-eks.yaml is out of date" in result.stderr


def test_one_manifest_per_overlay_and_the_crd_apart(rendered: dict[str, str]) -> None:
    overlays = sorted(p.name for p in (DEPLOY / "overlays").iterdir())
    assert sorted(rendered) == sorted(["crds.yaml", "monitoring-gmp.yaml", "monitoring-prometheus-operator.yaml",
                                       *(f"negsync-{o}.yaml" for o in overlays)])
    (crd,) = docs_of(rendered["crds.yaml"])
    assert crd["kind"] == "CustomResourceDefinition"
    for overlay in overlays:
        docs = docs_of(rendered[f"negsync-{overlay}.yaml"])
        kinds = [d["kind"] for d in docs]
        # Deleting the controller's manifest must never delete the CRD (and with it every binding).
        assert "CustomResourceDefinition" not in kinds
        assert kinds[0] == "Namespace", "the namespace is created before what lives in it"
        full = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True,
                              text=True, timeout=60, check=True).stdout
        assert len(docs) + 1 == len(docs_of(full)), "everything the overlay renders is in the release"


def test_images_by_version_and_digest_at_release() -> None:
    module = renderer()
    plain = module.render(version="1.2.3", digest=None)
    pinned = module.render(version="1.2.3", digest=DIGEST)
    for name in plain:
        if not name.startswith("negsync-"):
            continue
        images = re.findall(r"image: (\S+)", plain[name])
        assert images == [f"{IMAGE}:1.2.3"], name
        assert re.findall(r"image: (\S+)", pinned[name]) == [f"{IMAGE}:1.2.3@{DIGEST}"], name
    # The checked-in files carry this checkout's version (digest filled when the release is cut).
    version = re.search(r'__version__ = "([^"]+)"', (REPO / "negsync" / "__init__.py").read_text()).group(1)  # type: ignore[union-attr]
    assert f"image: {IMAGE}:{version}\n" in (RELEASE / "negsync-gke.yaml").read_text()


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "ab" * 16, "ab" * 32])
def test_a_malformed_digest_is_refused(digest: str) -> None:
    result = subprocess.run([sys.executable, str(DEPLOY / "render_release.py"), "--digest", digest, "--check"],
                            capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert result.returncode == 2 and "--digest must be sha256:<64 lowercase hex>" in result.stderr


def test_makefile_has_a_release_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^release: .*\n\t\$\(BIN\)/python deploy/render_release.py", makefile, re.M)
