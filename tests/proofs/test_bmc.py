"""Bounded model checking of the protocol: a correct race is clean to a small depth, and each teardown
or lock variant yields a trace that is replayed in the spec and rendered as `devdax check` does."""

from __future__ import annotations

import pytest

from devdax.model.trace import replay
from devdax.proofs.bmc import abstract, bmc, bmc_config, bmc_verdict, concretize
from devdax.proofs.runner import Status
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS


def test_correct_race_clean_to_depth_5() -> None:
    status, trace, note = bmc(Ctx.of(bmc_config("v4.10", None)), 5, 60)
    assert status is Status.PROVED, (trace, note)


@pytest.mark.parametrize(("variant", "broken"), [
    ("no-synchronize", "no_entry_after_kill"),
    ("M20", "lock_balanced"),
])
def test_variant_trace_is_a_spec_trace(variant: str, broken: str) -> None:
    cfg = bmc_config("v4.10", variant)
    c = Ctx.of(cfg)
    status, trace, _ = bmc(c, 8, 60)
    assert status is Status.VIOLATED and trace is not None and trace.invariant == broken
    transitions = concretize(c, trace)
    assert transitions is not None
    assert abstract(c, transitions[-1].state) == trace.steps[-1][1]
    steps = [(t.action, t.args, t.outcome) for t in transitions]
    states = replay(cfg, steps, symmetry=False, reduce=False)
    assert INVARIANTS[broken].check is not None
    assert INVARIANTS[broken].check(c, states[-1]) is not None


def test_rendered_like_devdax_check() -> None:
    v = bmc_verdict(bmc_config("v4.10", "no-synchronize"), 6, 60, "nosync")
    assert v.status is Status.VIOLATED
    text = v.counterexample
    assert text.startswith("violation: no_entry_after_kill")
    assert "admin remove(region0): unmap_mapping_range(dax0)" in text
    assert "# --- paste as a test ---" in text and "def test_nosync_no_entry_after_kill" in text
