"""The layering of docs/ARCHITECTURE.md, checked on every import in the tree (nested ones too).

spec/ is the reference and imports nothing of the project; model/ checks it by enumeration and
imports only spec; proofs/ imports spec and, from model, only the three modules its BMC and
agreement checks share with the checker; impl/ imports only spec; the scenario backends import
spec and impl; conformance imports the scenario layer. The command layer (the CLIs and the
`devdax all` job list) may import anything. A new import across a line fails here, naming it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layer -> the layers (or single modules) it may import
ALLOWED: dict[str, set[str]] = {
    "spec": {"spec"},
    "model": {"spec", "model"},
    "proofs": {"spec", "proofs", "model.reduction", "model.checker", "model.render"},
    "impl": {"spec", "impl"},
    "scenario": {"spec", "scenario", "impl"},
    "conformance": {"spec", "scenario", "conformance", "impl.sys"},
}
COMMAND = {
    "devdax/cli.py",
    "devdax/summary.py",
    "devdax/scenario/cli.py",
    "devdax/conformance/cli.py",
    "proofs/cli.py",
}
FOLDERS = {
    "spec": "spec",
    "model": "model",
    "proofs": "proofs",
    "impl": "impl",
    "scenario": "devdax/scenario",
    "conformance": "devdax/conformance",
}


def _allowed(module: str, layer: str) -> bool:
    inner = module.removeprefix("devdax.")
    return any(inner == a or inner.startswith(a + ".") for a in ALLOWED[layer])


def violations(source: str, layer: str, name: str) -> list[str]:
    """Every import of the project in ``source`` that ``layer`` may not make. ``from P import n``
    passes when P is allowed or every P.n is (a layer may be allowed single modules of another)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = (
                [node.module]
                if _allowed(node.module, layer)
                else [f"{node.module}.{a.name}" for a in node.names]
            )
            wrong = [n for n in names if n.startswith("devdax.") and not _allowed(n, layer)]
        elif isinstance(node, ast.Import):
            wrong = [
                a.name for a in node.names if a.name.startswith("devdax.") and not _allowed(a.name, layer)
            ]
        else:
            continue
        bad += [
            f"{name}:{node.lineno} imports {w} ({layer} may import {sorted(ALLOWED[layer])})" for w in wrong
        ]
    return bad


CASES = [(layer, p) for layer, folder in FOLDERS.items() for p in sorted((ROOT / folder).glob("*.py"))]


@pytest.mark.parametrize(("layer", "path"), CASES, ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_imports_follow_the_layers(layer: str, path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in COMMAND:
        return
    bad = violations(path.read_text(), layer, rel)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("layer", "source"),
    [
        ("spec", "from devdax.model.checker import check"),
        ("model", "def f():\n    from devdax.proofs import runner\n"),
        ("proofs", "from devdax.model import summary"),
        ("proofs", "import devdax.impl.dax"),
        ("impl", "from devdax.scenario import format"),
    ],
)
def test_a_crossing_import_is_caught(layer: str, source: str) -> None:
    assert violations(source, layer, "x.py")


def test_allowed_single_modules_pass() -> None:
    assert not violations("from devdax.model import checker, render", "proofs", "x.py")
    assert violations("from devdax.model import checker, summary", "proofs", "x.py")


def test_the_command_layer_is_small() -> None:
    """Everything that may import anything is listed, and each file exists."""
    for rel in COMMAND:
        assert (ROOT / rel).is_file(), rel
