"""Minor uniqueness, the exact minor ida and minors in range for any number of devices (proofs/minor.py):
proved for v4.10 and modern, failed with a readable trace for v4.7 (its documented finding), M22 and
M19, and a planted wrong step is caught by the induction."""

from __future__ import annotations

import pytest
import z3

from devdax.proofs import minor as M
from devdax.proofs import runner
from devdax.proofs.engine import Sys, check_inductive, unchanged
from devdax.proofs.lifetime import SHARED_RW
from devdax.proofs.obligations import apply_variant, obligations_for
from devdax.proofs.runner import Status
from devdax.spec.admin import STEPS
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import get_profile
from devdax.spec.state import D_CREATING, State, set_at
from devdax.spec.system import init
from devdax.spec.variants import get_variant


def _minor_results(profile: str, variant: str | None = None) -> dict[str, runner.Verdict]:
    obs = [o for o in obligations_for(profile, variant) if o.name.startswith("minor")]
    return {r.obligation.name: r.verdict for r in runner.run(obs, timeout=120)}


@pytest.mark.parametrize("profile", ["v4.10", "modern"])
def test_proved(profile: str) -> None:
    results = _minor_results(profile)
    assert len(results) == 7
    bad = {n: v.counterexample for n, v in results.items() if v.status is not Status.PROVED}
    assert not bad


def test_v47_minor_freed_at_unregister_is_its_documented_finding() -> None:
    results = _minor_results("v4.7")
    v = results["minor_unique"]
    assert v.status is Status.FINDING
    text = v.counterexample
    assert "reachable violation of minor_unique" in text and "ida_free_minor(d=" in text
    assert "documented finding: M22" in text
    # the last state shows two live devices on the same minor
    last = text.split("state 5:")[1]
    assert last.count("live, minor 0") == 2
    assert results["minor_held_while_live"].status is Status.FINDING
    assert results["minor_ida_exact"].status is Status.PROVED


def test_m22_breaks_minor_unique() -> None:
    results = _minor_results("v4.10", "M22")
    assert results["minor_unique"].status is Status.VIOLATED
    assert "ida_free_minor" in results["minor_unique"].counterexample
    assert results["minors_in_range"].status is Status.PROVED


def test_m19_breaks_minors_in_range() -> None:
    results = _minor_results("v4.10", "M19")
    v = results["minors_in_range"]
    assert v.status is Status.VIOLATED and "reachable violation of minors_in_range" in v.counterexample
    assert "minor 1 (held)" in v.counterexample and "(reserved minors: 1)" in v.counterexample
    assert results["minor_unique"].status is Status.PROVED


def test_rules_follow_the_profile() -> None:
    """The step effects are read from the profile's programs and switches, not per version."""
    r410, r47 = M.rules_of(get_profile("v4.10")), M.rules_of(get_profile("v4.7"))
    assert r410 == M.MinorRules(
        bounded=True, free_at_unregister=False, free_at_release=True, kfree_path=False
    )
    assert r47 == M.MinorRules(
        bounded=False, free_at_unregister=True, free_at_release=False, kfree_path=False
    )
    assert M.rules_of(apply_variant(get_profile("modern"), "M18")).kfree_path
    assert not M.rules_of(apply_variant(get_profile("v4.10"), "M22")).free_at_release


def test_alloc_is_the_spec_lowest_free_minor() -> None:
    """Agreement: spec/admin.py ida_alloc_minor on a concrete state takes a minor the proof's alloc
    allows (the lowest free one), and the proof's alloc allows no other."""
    c = Ctx.of(Config(profile="v4.10", devices=3, nr_minors=4))
    s: State = init(c)
    s = s._replace(minors=0b101)
    s = s._replace(devs=set_at(s.devs, 1, s.devs[1]._replace(phase=D_CREATING)))
    outs = STEPS["ida_alloc_minor"](c, s, 1)
    assert outs is not None
    ((_, nxt),) = outs
    assert isinstance(nxt, State)
    spec_minor = nxt.devs[1].minor
    sys = M.system(M.rules_of(c.prof))
    pre, post = sys.fresh("a"), sys.fresh("b")
    d = z3.Const("d@x", M.DEV)
    alloc = {n: f for n, f, _ in sys.step(pre, post, "x")}["ida_alloc_minor"]
    solver = z3.Solver()
    solver.add(
        alloc,
        pre["live"][d],
        pre["minor"][d] == -1,
        pre["nr"] == 4,
        *(pre["ida"][k] == bool(s.minors >> k & 1) for k in range(4)),
    )
    allowed = []
    for m in range(-1, 6):
        solver.push()
        solver.add(z3.Int("m@x") == m)
        if solver.check() == z3.sat:
            allowed.append(m)
        solver.pop()
    assert allowed == [spec_minor] == [1]


def test_planted_alloc_forgetting_the_ida_is_caught() -> None:
    """A bad ida_alloc_minor that does not mark the minor taken: the induction of ida_exact fails with
    a counterexample to induction (two states and the step; depth 0: no search for a trace)."""
    sys = M.system(M.rules_of(get_profile("v4.10")))

    def forgetful(
        s: dict[str, z3.ExprRef], t: dict[str, z3.ExprRef], tag: str
    ) -> tuple[z3.ExprRef, dict[str, z3.ExprRef]]:
        d, m = z3.Const(f"d@{tag}", M.DEV), z3.Int(f"m@{tag}")
        return z3.And(
            s["live"][d],
            s["minor"][d] == -1,
            m >= 0,
            m < s["nr"],
            z3.Not(s["ida"][m]),
            t["minor"] == z3.Store(s["minor"], d, m),
            t["held"] == z3.Store(s["held"], d, True),
            unchanged(s, t, "minor", "held"),
        ), {"d": d, "m": m}

    bad = Sys(
        sys.vars,
        sys.init,
        {**sys.actions, "ida_alloc_minor": forgetful},
        sys.invariants,
        sys.render,
        sys.frozen,
    )
    v = check_inductive(bad, "ida_exact", 60, depth=0)
    assert v.status is Status.VIOLATED
    text = v.counterexample
    assert text.startswith("counterexample to induction of ida_exact")
    assert "state before (every invariant holds):" in text and "step: ida_alloc_minor(d=" in text
    assert "state after (what changed):" in text


# ------------------------------------------------------------------------------------------------
# One source of truth: the minor step relation against spec/system.successors, read through abstract()
# ------------------------------------------------------------------------------------------------


def _cfg(profile: str, variant: str | None = None, devices: int = 2, generations: int = 1) -> Config:
    """Two instances and one reserved minor (the second ida_alloc_minor finds the ida full, or under
    M19 goes beyond the range), one file holding a device across its teardown."""
    return Config(
        profile=profile,
        variant=variant,
        devices=devices,
        generations=generations,
        files=1,
        vmas=1,
        cpus=0,
        mmaps=(SHARED_RW,),
        add_failure=True,
        nr_minors=1,
    )


MINOR_AGREEMENT = {
    "v4.10": _cfg("v4.10"),
    "v4.10, two generations (a released minor is reused)": _cfg("v4.10", devices=1, generations=2),
    "modern": _cfg("modern"),
    "modern, two generations": _cfg("modern", devices=1, generations=2),
    "v4.7": _cfg("v4.7"),
    "M22": _cfg("v4.10", "M22"),
    "M19": _cfg("v4.10", "M19"),
}


@pytest.mark.parametrize("name", list(MINOR_AGREEMENT))
def test_step_relation_agrees_with_spec(name: str) -> None:
    """Every transition of every reachable spec state is a stutter of the minor model or one of its
    steps, and that step (on the device the spec touched) has no other outcome than the spec's.

    The converse, every model step being a spec step, does not hold and is not asserted: the model
    deliberately over-approximates *when* things happen. ``ida_alloc_id`` may create any fresh device,
    ``ida_alloc_minor`` give any live device without a minor its minor, ``release`` release any live
    device and (v4.7, M22) ``ida_free_minor`` free any held minor, at any moment, whereas the spec
    runs them only at their place in the admin programs and when the reference counts reach zero. The
    invariants proved (minor_unique, ida_exact, minors_in_range) are safety properties: they hold on
    every run of the model, hence, by the inclusion checked here, on every run of the spec; more runs
    can only make a proof harder, never wrong."""
    c = Ctx.of(MINOR_AGREEMENT[name])
    states, visible, bad = M.check_agreement(c)
    assert states > 100 and visible > 30
    assert not bad, "\n".join(map(str, bad[:3]))


def test_agreement_sees_a_wrong_model() -> None:
    """The comparison can fail, in both ways a model can be wrong: M22's rules (the minor freed at
    unregister, not at release) against the v4.10 spec miss the release that returns the minor; the
    v4.10 rules (a bounded ida) against the M19 spec miss the allocation beyond the reserved range."""
    _, _, bad = M.check_agreement(Ctx.of(_cfg("v4.10")), M.rules_of(get_variant("M22").profile()))
    assert bad and all(b.kind == "unsound" for b in bad)
    assert any("put_device" in str(b) for b in bad)
    _, _, bad = M.check_agreement(Ctx.of(_cfg("v4.10", "M19")), M.rules_of(get_profile("v4.10")))
    assert bad and any("ida_alloc_minor" in str(b) for b in bad)
