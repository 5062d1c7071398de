"""The Z3 step relation of proofs/protocol.py agrees with the spec's explicit successors.

For every reachable state of small race configurations (the fault-vs-teardown race: a mapped device,
faults in flight, the provider removed), every spec transition is a protocol step or a stutter, and
every protocol step (but the admin's `end`, the abstraction's one over-approximation) is a spec
transition. Variants change the admin program; the protocol follows them with no edit, and the test
shows it agrees with each variant's spec too.
"""

from __future__ import annotations

import os

import pytest
import z3

from devdax.proofs.agreement import abstract, check_config, layout, observe, pin, protocol_for, universe_for
from devdax.proofs.protocol import Protocol
from devdax.spec.ctx import Ctx
from devdax.spec.system import init
from devdax.spec.variants import _race

CONFIGS = {
    "v4.10 race": _race(),
    "modern race": _race(profile="modern"),
    "no-synchronize": _race(variant="no-synchronize"),
    "M20 (lock leaked on pud fallback)": _race(variant="M20", first_fault="pud"),
    "M3 (no fallback, no vma bounds)": _race(variant="M3", align="4K"),
}
#: larger ones (5-25 s each): DEVDAX_SLOW=1 pytest tests/proofs
SLOW = {
    "v4.10 pud fault, 4K align (fallback chain)": _race(first_fault="pud", align="4K"),
    "v4.10 two ranges": _race(units=2, ranges=2, first_fault="pud"),
    "synchronize-before-clear": _race(variant="synchronize-before-clear"),
    "unmap-before-synchronize": _race(variant="unmap-before-synchronize"),
    "v4.10 two CPUs": _race(cpus=2),
}
if os.environ.get("DEVDAX_SLOW"):
    CONFIGS |= SLOW


@pytest.mark.parametrize("name", list(CONFIGS))
def test_protocol_agrees_with_spec(name: str) -> None:
    c = Ctx.of(CONFIGS[name])
    states, bad = check_config(c)
    assert states > 20
    assert not bad, "\n".join(f"{b.kind}: {b.detail}\n  from {b.state}" for b in bad[:3])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_steps_agree_with_reduced_spec(name: str) -> None:
    """The fused CPU steps BMC unrolls (Protocol.fused_cpu_actions) have exactly the successors of the
    movers reduction (model/reduction.py) on every state the reduced explorer stores."""
    c = Ctx.of(CONFIGS[name])
    states, bad = check_config(c, fused=True)
    assert states > 15
    assert not bad, "\n".join(f"{b.kind}: {b.detail}\n  from {b.state}" for b in bad[:3])


def test_agreement_check_catches_a_planted_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fused relation that stops after every first step (no check after a lock) is not the
    reduction's: the comparison says so, in both directions."""
    monkeypatch.setattr(Protocol, "_then", lambda self, t, tag, c, cond, s, last: [(cond, s)])
    _, bad = check_config(Ctx.of(_race()), fused=True)
    assert {b.kind for b in bad} == {"unsound", "incomplete"}


def test_scalar_and_array_encodings_have_the_same_steps() -> None:
    """From the race's initial state, the per-element encoding's step models are the array
    encoding's (compared as observations, entries as sets, CPUs as multisets)."""
    c = Ctx.of(_race(cpus=2))
    o = abstract(c, init(c))
    seen = []
    for scalar in (True, False):
        pr = protocol_for(c, universe_for(c, scalar=scalar))
        S, T = pr.state("s"), pr.state("t")
        solver = z3.Solver()
        solver.add(*pr.rigid, *layout(pr, c), pin(pr, S, o), pr.step(S, T, "a"))
        got = set()
        while solver.check() == z3.sat:
            x = observe(pr, solver.model(), T)
            got.add(x)
            solver.add(z3.Not(pin(pr, T, x)), z3.Not(pin(pr, T, x, (1, 0))))
        seen.append(got)
    assert seen[0] == seen[1] and len(seen[0]) >= 2


def test_abstraction_of_the_race_start() -> None:
    """The race prefix (probe, open, mmap whole) is an initial protocol state: alive, idle, no entry."""
    c = Ctx.of(_race())
    o = abstract(c, init(c))
    assert (o.alive, o.dead, o.gp, o.prog, o.entries) == (True, False, False, 0, frozenset())
    assert o.vmas[0][0] and o.vmas[0][2] - o.vmas[0][1] == c.align
