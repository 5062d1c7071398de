"""Golden counterexamples (CrossHair style): each variant's rendered report is checked in under
tests/golden/<variant>.txt and compared here, so any change to a trace, to the rendering or to a
variant shows up as a diff in review. Regenerate after an intended change with

    DEVDAX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/model/test_render.py

Each golden also ends with the pytest snippet a person would paste; it is executed here, so a
counterexample that no longer replays (or no longer breaks its invariant) fails loudly.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

from devdax.model.checker import CheckResult, check
from devdax.model.render import diff, extract_snippets, py, step_call, summary_line, variant_report
from devdax.model.trace import StepSpec, replay, steps_of
from devdax.spec.ctx import Ctx
from devdax.spec.system import init
from devdax.spec.variants import VARIANTS, variant_config

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("DEVDAX_UPDATE_GOLDEN") == "1"


@cache
def _result(name: str) -> CheckResult:
    return check(Ctx.of(variant_config(VARIANTS[name])))


def _report(name: str) -> str:
    v = VARIANTS[name]
    return variant_report(v, variant_config(v), _result(name))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    got = _report(name)
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"no golden for {name}: run with DEVDAX_UPDATE_GOLDEN=1"
    assert got == path.read_text(), f"{path} differs; rerun with DEVDAX_UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize("name", ["M22", "M20", "no-synchronize"])
def test_golden_is_what_the_cli_prints(name: str) -> None:
    """`devdax check --variant V` prints the golden, then one line of statistics."""
    import io

    from devdax import cli

    out = io.StringIO()
    assert cli.main(["check", "--variant", name], out, io.StringIO()) == 1
    body, _, stats = out.getvalue().rstrip("\n").rpartition("\n")
    assert body + "\n" == (GOLDEN / f"{name}.txt").read_text()
    assert " states, " in stats and " transitions, " in stats


def test_no_stale_goldens() -> None:
    stale = {p.stem for p in GOLDEN.glob("*.txt")} - set(VARIANTS)
    assert not stale, f"goldens without a variant: {sorted(stale)}"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_golden_snippets_run(name: str) -> None:
    """What a person pastes must pass as it is: exec every snippet of the checked-in golden."""
    text = (GOLDEN / f"{name}.txt").read_text()
    snippets = extract_snippets(text)
    caught = [b for b in VARIANTS[name].breaks if b in _result(name).violations]
    assert len(snippets) == len(caught) >= 1
    for src in snippets:
        ns: dict[str, object] = {}
        exec(compile(src, f"<golden {name}>", "exec"), ns)
        tests = [f for k, f in ns.items() if k.startswith("test_") and callable(f)]
        assert len(tests) == 1
        tests[0]()


def test_replay_reaches_the_checkers_states() -> None:
    name = "M22"
    cfg = variant_config(VARIANTS[name])
    for v in _result(name).violations.values():
        states = replay(cfg, steps_of(v))
        assert states[1:] == [st.state for st in v.trace]


def test_replay_names_the_step_that_matches_nothing() -> None:
    cfg = variant_config(VARIANTS["M22"])
    steps: list[StepSpec] = [
        *steps_of(_result("M22").violations["minor_unique"])[:3],
        ("open", (7, "O_RDWR")),
    ]
    with pytest.raises(ValueError, match=r"step 4 open\(7, 'O_RDWR'\) matches no transition"):
        replay(cfg, steps)


def test_replay_refuses_to_guess_between_outcomes() -> None:
    cfg = variant_config(VARIANTS["M6"])
    steps = [(a, b) for a, b, _ in steps_of(_result("M6").violations["alive_implies_registered"])]
    with pytest.raises(ValueError, match="ambiguous, give its outcome"):
        replay(cfg, steps)


def test_step_lines() -> None:
    assert step_call("admin", ("remove", 0, "clear_alive", 0)) == "admin remove(region0): clear_alive(dax0)"
    assert (
        step_call("fault_lock+fault_check", (0, 0, 0x7F0000200000, 0x200000))
        == "cpu0 fault_lock+fault_check(vma0 @0x7f0000200000, pmd)"
    )
    assert step_call("mmap", (1, "shared-rw")) == "user mmap(file1, shared-rw)"
    assert step_call("open", (0, "O_RDWR")) == "user open(dax0, O_RDWR)"


def test_diff_shows_only_what_changed() -> None:
    c = Ctx.of(variant_config(VARIANTS["no-synchronize"]))
    s = init(c)
    dev = s.devs[0]
    t = s._replace(devs=(dev._replace(alive=False),))
    assert diff(s, t) == ["dax0: alive true -> false"]
    assert diff(s, s) == []


def test_summary_line_and_python_values() -> None:
    v = _result("no-synchronize").violations["no_entry_after_kill"]
    line = summary_line(v)
    assert line.startswith("no_entry_after_kill: dax0 is killed") and line.endswith("[4 steps]")
    assert py(("a", 0x7F0000200000, (1,))) == '("a", 0x7f0000200000, (1,))'
