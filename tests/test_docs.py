"""The docs for people stay true: generated docs are current, outcome tables match the rules, and
every citation points inside the repository or at public kernel source.

Why here and not beside each generator: `make test` (CI) runs this file, and a reader who finds a
doc stale or a citation dangling should find the one test that says so and how to fix it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from devdax.docgen import GENERATED
from devdax.reftables import SKIPS, witness_scenario
from devdax.scenario import format as fmt
from devdax.scenario.parse import parse
from devdax.scenario.spec_backend import SpecBackend
from devdax.spec.outcomes import CALLS
from devdax.spec.profiles import PROFILES
from devdax.spec.teardown import PROGRAMS, WHY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_doc_is_current(name: str) -> None:
    """DEVDAX_UPDATE_GOLDEN=1 rewrites them, as it rewrites the goldens they quote."""
    path = ROOT / name
    if os.environ.get("DEVDAX_UPDATE_GOLDEN") == "1":
        path.write_text(GENERATED[name]())
    assert path.read_text() == GENERATED[name](), (
        f"{name} is stale: .venv/bin/python -m devdax.docgen --write"
    )


ROWS = [(call, i) for call, rows in CALLS.items() for i in range(len(rows))]


@pytest.mark.parametrize(("call", "i"), ROWS, ids=[f"{c}-{i + 1}" for c, i in ROWS])
def test_outcome_row_witness_ends_in_its_outcome(call: str, i: int) -> None:
    """Each row's witness, run through the spec, ends with the row's call giving the row's outcome."""
    row = CALLS[call][i]
    sc = parse(witness_scenario(call, i, row), f"spec/outcomes.py {call} row {i + 1}")
    assert sc.steps[-1].op == call, "a witness ends with the call its row is about"
    got = SpecBackend().run(sc)
    assert got[-1].split()[0] == row.outcome, (
        f"{call} row {i + 1}: witness gives {got}, row says {row.outcome}"
    )


def test_every_outcome_the_spec_gives_has_a_row() -> None:
    """Over the whole scenario suite, the spec never gives a call an outcome its table lacks."""
    missing: set[tuple[str, str, str]] = set()
    for sc in fmt.load_all(ROOT / "tests" / "scenarios"):
        for st, out in zip(sc.steps, SpecBackend().run(sc), strict=True):
            outcome = out.split()[0]
            if st.op in CALLS and outcome not in SKIPS and outcome not in {r.outcome for r in CALLS[st.op]}:
                missing.add((st.op, outcome, sc.file))
    assert not missing, f"outcomes with no row in spec/outcomes.py: {sorted(missing)[:5]}"


def test_every_program_step_has_its_reason() -> None:
    lacking = {e.rstrip("!") for p in PROFILES.values() for prog in PROGRAMS for e in getattr(p, prog)} - set(
        WHY
    )
    assert not lacking, f"steps with no reason in spec/teardown.py WHY: {sorted(lacking)}"


# ------------------------------------------------------------------------------ citations ----

#: what a citation outside the repository looks like: the research notes and design card beside the
#: project, and section numbers that only those notes define
OUTSIDE = re.compile(
    r"\.\./shared|research/|kernel-semantics|devdax-tests\.md|ndctl-pmdk|DESIGN\.md"
    r"|\b[Ss]ections? \d\.\d|§ ?\d"
)
SELF = {"tests/test_docs.py"}


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [
        f
        for f in out.splitlines()
        if f.endswith((".py", ".md", ".toml", ".txt", ".svg", ".json", ".c", ".h"))
        and f not in SELF
        and (ROOT / f).is_file()
    ]


def test_no_citation_points_outside_the_repository() -> None:
    hits = []
    for f in _tracked():
        for n, line in enumerate((ROOT / f).read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{f}:{n}: {line.strip()[:100]}")
    assert not hits, "cite docs/semantics.md (or kernel source) instead:\n" + "\n".join(hits[:20])


def test_semantics_anchors_cited_exist() -> None:
    """docs/semantics.md#anchor citations name a heading that exists."""
    headings = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", (ROOT / "docs" / "semantics.md").read_text(), re.M)
    }
    bad = []
    for f in _tracked():
        text = (ROOT / f).read_text(errors="replace")
        for m in re.finditer(r"semantics\.md#([\w\-]+)((?:, #[\w\-]+)*)", text):
            for anchor in [m.group(1), *re.findall(r"#([\w\-]+)", m.group(2))]:
                if anchor not in headings:
                    bad.append(f"{f}: #{anchor}")
    assert not bad, f"anchors docs/semantics.md does not have: {sorted(set(bad))[:10]}"


def test_explain_prints_a_calls_outcomes_in_order() -> None:
    """`devdax explain mmap`, the newcomer's first question, answers with the whole table."""
    import io

    from devdax import cli

    out = io.StringIO()
    assert cli.main(["explain", "mmap"], out, io.StringIO()) == 0
    text = out.getvalue()
    assert "outcomes of mmap(), first matching row decides (docs/reference.md#mmap):" in text
    got = re.findall(r"^\s+\d+\. (\S+)", text.split("outcomes of mmap()")[1], re.M)
    assert got == [row.outcome for row in CALLS["mmap"]]
