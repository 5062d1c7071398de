"""Pictures (issue 13, item 4): the sequence diagrams and the state graph are well-formed SVG, show
the trace's own steps with one lane per actor and the breaking step highlighted, and the committed
docs/pictures/ are what `python -m devdax.picture` writes today."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest

from devdax import cli
from devdax.model.checker import CheckResult, Violation, check
from devdax.model.render import render_steps, step_call
from devdax.picture import (
    DOCS_GRAPH_VARIANT,
    GRAPH_LIMIT,
    chosen,
    docs_pictures,
    explore,
    lanes,
    sequence_mermaid,
    sequence_svg,
)
from devdax.spec.ctx import Ctx
from devdax.spec.variants import VARIANTS, variant_config

ROOT = Path(__file__).resolve().parents[2]
PICTURES = ROOT / "docs" / "pictures"
SVG = "{http://www.w3.org/2000/svg}"


@cache
def _result(name: str) -> CheckResult:
    return check(Ctx.of(variant_config(VARIANTS[name])))


def _violation(name: str) -> Violation:
    v = chosen(_result(name), name)
    assert v is not None, f"variant {name} is not caught"
    return v


def _classes(root: ET.Element, prefix: str) -> list[ET.Element]:
    return [e for e in root.iter() if any(c.startswith(prefix) for c in e.get("class", "").split())]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_sequence_svg_lanes_steps_and_breaking_step(name: str) -> None:
    cfg, v = variant_config(VARIANTS[name]), _violation(name)
    root = ET.fromstring(sequence_svg(cfg, v, f"variant {name}"))
    assert root.tag == f"{SVG}svg"
    actors = lanes(v.trace)
    assert len(_classes(root, "lifeline")) == len(actors) == len(set(actors))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    for a in actors:
        assert a in texts, f"no lane header for {a}"
    markers = _classes(root, "step")
    assert len(markers) == len(v.trace)
    for st, m in zip(v.trace, markers, strict=True):
        first = step_call(st.action, st.args).split()[0]
        assert f"lane-{first if first in actors else 'kernel'}" in m.get("class", "").split()
    # the last step, and only it, is highlighted, and its marker is red
    (breaking,) = _classes(root, "breaking")
    assert float(breaking.get("y", "0")) >= max(float(m.get("y", "0")) for m in markers) - 10
    assert markers[-1].get("fill") == "#c0392b" and markers[0].get("fill") != "#c0392b"


@pytest.mark.parametrize("name", ["no-synchronize", "M22", "M15"])
def test_picture_shows_the_text_traces_steps(name: str) -> None:
    """Every numbered line of the text trace (model/render.py) appears in the picture, call and
    changes alike (the picture may wrap a long line at a blank)."""
    cfg, v = variant_config(VARIANTS[name]), _violation(name)
    root = ET.fromstring(sequence_svg(cfg, v, name))
    drawn = " ".join((t.text or "").strip() for t in root.iter(f"{SVG}text"))
    for line in render_steps(cfg, v.trace):
        words = line.strip().split(". ", 1)[-1] if line.strip()[:1].isdigit() else line.strip()
        for word in words.split():
            assert word in drawn, f"{word!r} of {line.strip()!r} is not in the picture"


def test_mermaid_has_a_participant_per_lane_and_a_red_last_step() -> None:
    cfg, v = variant_config(VARIANTS["M22"]), _violation("M22")
    text = sequence_mermaid(cfg, v, "variant M22")
    assert text.startswith("sequenceDiagram\n")
    assert [ln.split()[1] for ln in text.splitlines() if ln.strip().startswith("participant")] == lanes(
        v.trace
    )
    assert text.count("->>") == len(v.trace)
    tail = text[text.index("rect ") :]
    assert f"{len(v.trace)}. " in tail and tail.rstrip().endswith("end")
    assert ";" not in text.replace("#59;", "").replace("#35;", "")


def test_docs_pictures_are_current() -> None:
    want = docs_pictures()
    examples = {f"example-{p.stem}.svg" for p in (PICTURES.parent / "examples").glob("*.toml")}
    assert set(want) - examples == {f"{n}.svg" for n in VARIANTS} | {f"graph-{DOCS_GRAPH_VARIANT}.svg"}
    assert "example-unbind-no-grace.svg" in want and "example-unbind-no-grace-fixed.svg" not in want
    have = {p.name for p in PICTURES.glob("*.svg")}
    assert have == set(want), f"docs/pictures differs in files: {sorted(have ^ set(want))}"
    for fname, text in want.items():
        ET.fromstring(text)
        assert (PICTURES / fname).read_text() == text, (
            f"docs/pictures/{fname} is stale: .venv/bin/python -m devdax.picture"
        )


def test_graph_marks_breaking_states_and_refuses_big_configurations(tmp_path: Path) -> None:
    g = explore(variant_config(VARIANTS[DOCS_GRAPH_VARIANT]))
    assert 0 < len(g.bad) < len(g.states) <= GRAPH_LIMIT
    out, err = io.StringIO(), io.StringIO()
    svg, dot = tmp_path / "g.svg", tmp_path / "g.dot"
    args = ["graph", "--variant", DOCS_GRAPH_VARIANT, "--svg", str(svg), "--dot", str(dot)]
    assert cli.main(args, out, err) == 0, err.getvalue()
    root = ET.fromstring(svg.read_text())
    assert len(_classes(root, "node")) == len(g.states)
    assert dot.read_text().startswith("digraph devdax {")
    err = io.StringIO()
    assert cli.main(["graph", "--variant", "M22"], io.StringIO(), err) == 2
    assert err.getvalue().count("\n") == 1 and f"more than {GRAPH_LIMIT} reachable states" in err.getvalue()


def test_check_writes_svg_and_mermaid(tmp_path: Path) -> None:
    svg, mmd = tmp_path / "c.svg", tmp_path / "c.mmd"
    args = ["check", "--variant", "no-synchronize", "--quiet", "--svg", str(svg), "--mermaid", str(mmd)]
    assert cli.main(args, io.StringIO(), io.StringIO()) == 1  # the variant is caught: a violation
    assert svg.read_text() == (PICTURES / "no-synchronize.svg").read_text()
    assert mmd.read_text().startswith("sequenceDiagram")
    err = io.StringIO()
    bad = ["check", "--variant", "no-synchronize", "--quiet", "--svg", str(tmp_path / "no" / "x.svg")]
    assert cli.main(bad, io.StringIO(), err) == 2
    assert err.getvalue().startswith("devdax: error: --svg/--mermaid: cannot write")
