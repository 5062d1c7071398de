"""The size of each layer, today against a past commit, in today's layout.

Issue 11 asks for proofs/ "smaller than today (5.6k lines)", measured when the issue was filed
(commit 7e81b2d). The same issue then made ``ruff format`` the enforced layout, and that commit
(2d27daa) alone added about 1,700 lines to proofs/ without changing a token. Lines are only
comparable in one layout, so the past tree is taken with ``git archive`` and formatted with
today's pyproject.toml before it is counted; tokens and statements, which no layout changes, are
counted beside the lines as a check.

    .venv/bin/python bench/bench_size.py [--commit 7e81b2d] [--no-write]
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import sys
import tarfile
import tempfile
import tokenize
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_check import publish, revision

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Size of each layer (issue 11)"
#: issue 11 was filed at this commit ("proofs/ ... today (5.6k lines)")
FILED = "7e81b2d"
LAYERS = ("spec", "model", "proofs", "impl")
#: tokens that are layout, not content
LAYOUT = {
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.COMMENT,
    tokenize.ENDMARKER,
}


def measure(folder: Path) -> tuple[int, int, int]:
    """(lines, tokens, statements) of the Python files directly in ``folder``."""
    lines = tokens = stmts = 0
    for p in sorted(folder.glob("*.py")):
        src = p.read_text()
        lines += len(src.splitlines())
        toks = tokenize.generate_tokens(io.StringIO(src).readline)
        tokens += sum(1 for t in toks if t.type not in LAYOUT)
        stmts += sum(isinstance(n, ast.stmt) for n in ast.walk(ast.parse(src)))
    return lines, tokens, stmts


def past_tree(commit: str, into: Path) -> tuple[Path, str]:
    """The layers at ``commit``, formatted as today's tree is; returns the folder and the
    commit's date."""
    blob = subprocess.run(
        ["git", "archive", "--format=tar", commit, *LAYERS], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--config", str(ROOT / "pyproject.toml"), "--quiet", "."],
        cwd=into,
        check=True,
    )
    date = subprocess.run(
        ["git", "show", "-s", "--format=%ad", "--date=short", commit],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return into, date


def raw_lines(commit: str, layer: str) -> int:
    """Lines of ``layer`` at ``commit`` as committed (the figure the issue quoted)."""
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", commit, f"{layer}/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sum(
        len(
            subprocess.run(
                ["git", "show", f"{commit}:{n}"], cwd=ROOT, capture_output=True, check=True
            ).stdout.splitlines()
        )
        for n in names
        if n.endswith(".py")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", default=FILED)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    head = revision()
    with tempfile.TemporaryDirectory() as tmp:
        past, date = past_tree(a.commit, Path(tmp))
        rows = []
        for layer in LAYERS:
            was, now = measure(past / layer), measure(ROOT / layer)
            ratio = " | ".join(f"{n:,} / {w:,} ({n / w:.2f}x)" for w, n in zip(was, now, strict=True))
            rows.append(f"| {layer}/ | {raw_lines(a.commit, layer):,} | {ratio} |")
    text = "\n".join(
        [
            SECTION,
            "",
            f"Today ({head}) against {a.commit} ({date}, when issue 11 was filed), the past tree "
            "formatted with today's `ruff format` settings first: the issue's \"5.6k lines\" were "
            "counted before `ruff format` was enforced, and that change alone added about 1,700 "
            "lines to proofs/. Tokens (comments and layout excluded) and statements, counted on the "
            "same two formatted trees, barely depend on the layout. `.venv/bin/python bench/bench_size.py` "
            "regenerates this section.",
            "",
            "| layer | lines at the commit, as committed | lines now / then, same layout "
            "| tokens now / then | statements now / then |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    publish(text, SECTION, not a.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
