"""Bounded model checking of the protocol: a correct race is clean to a depth, each teardown or lock
variant yields a trace at the depth of its shortest `devdax check` counterexample, replayed in the spec
and rendered as `devdax check` renders it, also on races larger than the variant's own; and the unfused
relation (bench/bench_prove.py's workload) finds what the fused one finds."""

from __future__ import annotations

import re

import pytest

from devdax.model.checker import check
from devdax.model.trace import replay
from devdax.proofs.bmc import abstract, bmc, bmc_config, bmc_verdict, concretize
from devdax.proofs.runner import Status
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS

#: the race variants of spec/variants.py and the invariant each breaks first
RACE_VARIANTS = [
    ("no-synchronize", "no_entry_after_kill"),
    ("synchronize-before-clear", "no_entry_after_kill"),
    ("unmap-before-synchronize", "no_entry_after_kill"),
    ("M20", "lock_balanced"),
    ("M22", "no_entry_after_kill"),
]


def test_correct_race_clean_to_depth() -> None:
    """Two CPUs: depth 6 of the fused relation is every interleaving of six explorer steps."""
    status, trace, note = bmc(Ctx.of(bmc_config("v4.10", None, cpus=2)), 6, 120)
    assert status is Status.PROVED, (trace, note)


@pytest.mark.parametrize(("variant", "broken"), RACE_VARIANTS)
def test_variant_found_at_its_shortest_depth(variant: str, broken: str) -> None:
    """The fused relation steps as the explorer does, so BMC's first violating depth is the length
    of `devdax check`'s shortest counterexample; the trace replays in the spec and breaks there."""
    cfg = bmc_config("v4.10", variant)
    c = Ctx.of(cfg)
    status, trace, _ = bmc(c, 8, 120)
    assert status is Status.VIOLATED and trace is not None and trace.invariant == broken
    shortest = check(c, only={broken}, stop_on_violation=True).violations[broken]
    assert len(trace.steps) == len(shortest.trace)
    transitions = concretize(c, trace)
    assert transitions is not None
    assert abstract(c, transitions[-1].state) == trace.steps[-1][1]
    steps = [(t.action, t.args, t.outcome) for t in transitions]
    states = replay(cfg, steps, symmetry=False, reduce=trace.fused)
    inv = INVARIANTS[broken]
    assert inv.check is not None and inv.check(c, states[-1]) is not None


def test_rendered_like_devdax_check() -> None:
    v = bmc_verdict(bmc_config("v4.10", "no-synchronize"), 6, 60, "nosync")
    assert v.status is Status.VIOLATED
    text = v.counterexample
    assert text.startswith("violation: no_entry_after_kill")
    assert "admin remove(region0): unmap_mapping_range(dax0)" in text
    assert "# --- paste as a test ---" in text and "def test_nosync_no_entry_after_kill" in text


def test_variant_on_a_larger_race() -> None:
    """Three CPUs with two faults each on a three-unit device: the same violation at the same depth,
    rendered with the fused fault steps `devdax check` prints."""
    small = bmc(Ctx.of(bmc_config("v4.10", "no-synchronize")), 6, 120)[1]
    v = bmc_verdict(bmc_config("v4.10", "no-synchronize", cpus=3, faults=2, units=3), 6, 120, "big")
    assert v.status is Status.VIOLATED and small is not None
    text = v.counterexample
    assert text.startswith("violation: no_entry_after_kill")
    assert "fault_lock+fault_check" in text and "fault_insert+fault_unlock" in text
    numbered = [ln for ln in text.splitlines() if re.match(r"\s+[1-9][0-9]*\. ", ln)]
    assert len(numbered) == len(small.steps)


@pytest.mark.parametrize(("variant", "depth"), [(None, 4), ("no-synchronize", 6), ("M20", 4)])
def test_unfused_relation_agrees_with_fused(variant: str | None, depth: int) -> None:
    """Unfused, BMC reaches a verdict, and a violation it finds breaks the invariant the fused
    relation's trace breaks (a fused step is two or three unfused ones)."""
    c = Ctx.of(bmc_config("v4.10", variant, cpus=2 if variant is None else 1))
    unfused = bmc(c, depth, 120, fused=False)
    fused = bmc(c, depth, 120)
    assert unfused[0] is not Status.UNKNOWN and fused[0] is not Status.UNKNOWN
    assert (unfused[0] is Status.PROVED) == (variant is None)
    if unfused[1] is not None:
        assert fused[1] is not None and unfused[1].invariant == fused[1].invariant
