"""ruff and mypy --strict are part of the test run (issue 2: "ruff and mypy --strict are clean and
run in the tests"). They run as subprocesses of the interpreter running pytest, so CI's venv is the
one that answers, and from the repository root, so pyproject.toml's settings apply."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.lint


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_ruff_clean() -> None:
    r = run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_clean() -> None:
    # one layout for the whole tree, so that a diff shows only what changed in meaning (issue 11)
    r = run("ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_clean() -> None:
    # pyproject.toml's [tool.mypy] sets strict = true and the files to check
    r = run("mypy")
    assert r.returncode == 0, r.stdout + r.stderr
