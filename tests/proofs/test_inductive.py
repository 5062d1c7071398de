"""The protocol's invariants are inductive for the v4.10 and modern profiles, and each teardown or
fault-handler variant breaks one of them with a readable counterexample to induction."""

from __future__ import annotations

import pytest

from devdax.proofs.inductive import INVARIANTS, check_invariant, check_not_vacuous, context, position_facts
from devdax.proofs.runner import Status
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


@pytest.mark.parametrize(("variant", "broken"), [
    ("no-synchronize", "dead_quiesced"),
    ("unmap-before-synchronize", "no_entry_after_kill"),
    ("synchronize-before-clear", "dead_quiesced"),
    ("M20", "lock_balanced"),
    ("M22", "no_entry_after_kill"),
])
def test_variant_breaks_induction(variant: str, broken: str) -> None:
    cx = context(get_variant(variant).profile(), ALIGN)
    v = check_invariant(cx, broken, 30)
    assert v.status is Status.VIOLATED
    text = v.counterexample
    assert "state before (all invariants hold):" in text and "step: " in text
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
