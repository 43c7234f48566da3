"""Packaging metadata: an SPDX license expression, no deprecated license table or classifier."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BUILD_METADATA = """
import sys, warnings
import setuptools.build_meta as backend
out = sys.argv[1]  # the backend rewrites sys.argv
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    name = backend.prepare_metadata_for_build_wheel(out)
for w in caught:
    if "licen" in str(w.message).lower():
        print("WARNING:", w.category.__name__, str(w.message).splitlines()[0])
print(open(f"{out}/{name}/METADATA", encoding="utf-8").read())
"""


def test_license_is_an_spdx_expression() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the metadata test below runs everywhere
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    assert not [c for c in project["project"]["classifiers"] if c.startswith("License ::")]
    assert "setuptools>=77" in project["build-system"]["requires"]  # the first setuptools that reads SPDX strings


def test_metadata_builds_without_license_warnings(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "qr_integrations", src / "qr_integrations", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "out").mkdir()
    done = subprocess.run([sys.executable, "-c", BUILD_METADATA, str(tmp_path / "out")], cwd=src,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNING:" not in done.stdout, done.stdout[:2000]
    assert "License-Expression: Apache-2.0" in done.stdout
