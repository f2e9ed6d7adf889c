"""The layout holds: modules stay small, and the import contracts catch a library or a stage out of its room."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "dispatch"
LINT = Path(sys.executable).with_name("lint-imports")


def test_no_module_passes_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("layout")
    shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
    shutil.copytree(PACKAGE, tree / "src" / "dispatch", ignore=shutil.ignore_patterns("__pycache__", "skeleton"))
    return tree


def test_the_contracts_hold_on_the_code_as_it_is(copy):
    result = _lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("module, line, contract", [
    ("stages/check.py", "import weasyprint", "PDF libraries only in pdf and printing"),
    ("stages/track.py", "import sqlite3", "SQLite only in the journal"),
    ("stages/render.py", "import smtplib", "SMTP and IMAP only in mail"),
    ("stages/proof.py", "from dispatch.stages import send", "Stages do not import each other"),
    ("cli/records.py", "from dispatch import journal", "The command line imports only campaign"),
    ("journal.py", "import typer", "Typer and Rich only in the command line"),
    ("models.py", "from dispatch import journal", "One way down"),
])
def test_a_deliberate_violation_breaks_a_contract(copy, module, line, contract):
    target = copy / "src" / "dispatch" / module
    original = target.read_text(encoding="utf-8")
    marker = "from __future__ import annotations\n"
    assert marker in original
    target.write_text(original.replace(marker, marker + line + "\n", 1), encoding="utf-8")
    try:
        result = _lint(copy)
    finally:
        target.write_text(original, encoding="utf-8")
    assert result.returncode != 0
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), result.stdout
