"""The tree's own checks, run where CI runs the tests: the training core type-checks clean (mypy, configured in
pyproject.toml) and the whole tree passes the linter (ruff, the same rules as ``make lint``)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_iakd_core_type_checks_clean():
    pytest.importorskip("mypy", reason="the dev extra installs mypy: pip install -e '.[dev]'")
    proc = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0 and "Success: no issues found" in proc.stdout, proc.stdout[-4000:] + proc.stderr


def test_the_tree_passes_the_linter():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("the dev extra installs ruff: pip install -e '.[dev]'")
    proc = subprocess.run([ruff, "check", "."], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
