"""Imports flow one way — web layer (server/) → handler chain (handlers/) → shared pieces (core/)
→ keystore/ and storage/ — as the contracts in pyproject.toml say; lint-imports checks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support import ROOT

LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("server", "playground", "handlers", "core", "keystore", "storage")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)})


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check can fail: a copy of the tree where a shared piece imports the web layer."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom server import render  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "core.errors -> server.render" in result.stdout
