"""ruff and mypy --strict are part of the test run (issue 2: "ruff and mypy --strict are clean and
run in the tests"). They run as subprocesses of the interpreter running pytest, so CI's venv is the
one that answers, and from the repository root, so pyproject.toml's settings apply."""

from __future__ import annotations

import ast
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


#: a function longer than this needs a comment saying why (issue 11: "no function over 50 lines
#: outside tests without a comment saying why")
LONG = 50
#: the marker the comment starts with, so that the reason is easy to find and to grep
WHY = "# Over 50 lines on purpose:"


def long_functions(path: Path) -> list[str]:
    """``path``'s functions over LONG lines whose body has no WHY comment, as file:line name."""
    src = path.read_text()
    lines = src.splitlines()
    out = []
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
            continue
        if node.end_lineno - node.lineno + 1 > LONG:
            body = lines[node.lineno - 1 : node.end_lineno]
            if not any(line.strip().startswith(WHY) for line in body):
                name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                out.append(f"{name}:{node.lineno} {node.name}")
    return out


def sources() -> list[Path]:
    """Every Python file outside tests/, the venv and build output; the layer folders once (not
    again through their devdax/ symlinks)."""
    skip = {"tests", ".venv", "build", ".git"}
    out = []
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT)
        linked = any((ROOT / Path(*rel.parts[:i])).is_symlink() for i in range(1, len(rel.parts)))
        if rel.parts[0] not in skip and not linked:
            out.append(p)
    return out


def test_long_functions_say_why() -> None:
    bad = [hit for p in sources() for hit in long_functions(p)]
    assert not bad, f"functions over {LONG} lines without a '{WHY}' comment: {bad}"


def test_a_long_function_without_a_reason_is_caught(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(LONG))
    bad = tmp_path / "long.py"
    bad.write_text(f"def f() -> None:\n{body}")
    assert long_functions(bad) == ["long.py:1 f"]
    bad.write_text(f"def f() -> None:\n    {WHY} a table.\n{body}")
    assert long_functions(bad) == []
