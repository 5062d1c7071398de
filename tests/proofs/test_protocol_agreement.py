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

from devdax.proofs.agreement import abstract, check_config
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


def test_abstraction_of_the_race_start() -> None:
    """The race prefix (probe, open, mmap whole) is an initial protocol state: alive, idle, no entry."""
    c = Ctx.of(_race())
    o = abstract(c, init(c))
    assert (o.alive, o.dead, o.gp, o.prog, o.entries) == (True, False, False, 0, frozenset())
    assert o.vmas[0][0] and o.vmas[0][2] - o.vmas[0][1] == c.align
