"""The protocol's invariants are inductive for the v4.10 and modern profiles, and each teardown or
fault-handler variant breaks one of them with a readable counterexample to induction."""

from __future__ import annotations

import pytest

from devdax.proofs import runner
from devdax.proofs.inductive import INVARIANTS, check_invariant, check_not_vacuous, context, position_facts
from devdax.proofs.obligations import obligations_for
from devdax.proofs.protocol import Action, Protocol, State
from devdax.proofs.runner import Status
from devdax.proofs.smt import Term
from devdax.spec import geometry as g
from devdax.spec.profiles import get_profile
from devdax.spec.variants import get_variant

ALIGN = g.PMD_SIZE


@pytest.mark.parametrize("profile", ["v4.10", "modern"])
def test_invariants_inductive(profile: str) -> None:
    prof = get_profile(profile)
    cx = context(prof, ALIGN)
    for inv in INVARIANTS:
        v = check_invariant(cx, inv.name, 120)
        assert v.status is Status.PROVED, f"{inv.name}: {v.counterexample}"
    assert check_not_vacuous(prof, ALIGN, 120).status is Status.PROVED


@pytest.mark.parametrize(
    ("variant", "broken"),
    [
        ("no-synchronize", "dead_quiesced"),
        ("unmap-before-synchronize", "no_entry_after_kill"),
        ("synchronize-before-clear", "dead_quiesced"),
        ("M20", "lock_balanced"),
        ("M22", "no_entry_after_kill"),
    ],
)
def test_variant_breaks_induction(variant: str, broken: str) -> None:
    cx = context(get_variant(variant).profile(), ALIGN)
    v = check_invariant(cx, broken, 30)
    assert v.status is Status.VIOLATED
    text = v.counterexample
    assert "state before (every invariant holds):" in text and "step: " in text
    assert "state after (what changed):" in text


def test_m1_private_vma_fails_vmas_shared() -> None:
    cx = context(get_variant("M1").profile(), ALIGN)
    v = check_invariant(cx, "vmas_shared", 30)
    assert v.status is Status.VIOLATED and "mayshare=False" in v.counterexample


def test_position_facts_follow_the_program() -> None:
    """The facts come from the profile's program: a correct teardown ends dead, a wrong order not."""
    v410 = context(get_profile("v4.10"), ALIGN).pr
    assert position_facts(v410, "remove")[-1] == {"not_alive", "clean_gp", "quiesced", "dead"}
    nosync = context(get_variant("no-synchronize").profile(), ALIGN).pr
    assert "dead" not in position_facts(nosync, "remove")[-1]


def test_v47_partial_munmap_breaks_vmas_aligned() -> None:
    """M8: without ->may_split (v4.7) a munmap of part of a vma cuts it at a page boundary that is not
    a multiple of align: the counterexample to induction is that step, and the checklist reports it
    as v4.7's documented finding."""
    cx = context(get_profile("v4.7"), ALIGN)
    v = check_invariant(cx, "vmas_aligned", 60)
    assert v.status is Status.VIOLATED
    step = next(ln for ln in v.counterexample.splitlines() if ln.startswith("step: "))
    assert step.startswith(("step: munmap_head(", "step: munmap_tail(", "step: munmap_punch(")), step
    cut = int(step.split("hi=" if "munmap_head" in step else "lo=")[1].split(",")[0].rstrip(")"), 16)
    assert cut % g.PAGE_SIZE == 0 and cut % ALIGN != 0
    (ob,) = [o for o in obligations_for("v4.7") if o.name == "proto_vmas_aligned"]
    r = runner.run([ob], 60)[0]
    assert r.verdict.status is Status.FINDING and "M8" in r.verdict.counterexample


def test_head_cut_needs_the_pgoff_shift(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept part of a head cut must advance vm_pgoff by the pages cut off (__split_vma): a
    protocol that forgets it breaks entries_exact on v4.10 through munmap_head."""
    real = Protocol.partial_munmap_actions

    def no_shift(self: Protocol, s: State, t: State, tag: str, v: Term) -> list[Action]:
        out = []
        for a in real(self, s, t, tag, v):
            if a.name == "munmap_head":
                ((cond, new),) = a.cases
                a = Action(a.name, a.params, a.guard, ((cond, new.replace(vpgoff=s.vpgoff)),), a.post)
            out.append(a)
        return out

    monkeypatch.setattr(Protocol, "partial_munmap_actions", no_shift)
    monkeypatch.setattr("devdax.proofs.inductive._CONTEXTS", {})
    v = check_invariant(context(get_profile("v4.10"), ALIGN), "entries_exact", 60)
    assert v.status is Status.VIOLATED and "step: munmap_head(" in v.counterexample
