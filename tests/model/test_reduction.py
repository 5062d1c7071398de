"""Every reduction against an unreduced run, on configurations small enough to enumerate raw.

Issue 2: "A test cross-checks every reduction against an unreduced run on small configurations
(same verdicts, same reachable abstract states)". The checker has two reductions: symmetry
(canonical renaming of files, vmas and CPUs) and movers (fusing fault steps nobody can observe in
between, model/reduction.py). For each configuration:

* the four runs check(symmetry in {off, on}, reduce in {off, on}) report the same violated
  properties;
* an independent breadth-first search (below, not the checker) enumerates the raw reachable states
  R; projecting R through canonical() and dropping the states the movers reduction never stores
  gives exactly the states the reduced runs store, and the checker's state counts agree with it.

``in_between`` (model/reduction.py) names the states the movers reduction never stores: a CPU between
lock and check, between insert and unlock, or unlocked after FALLBACK and waiting for the mm's retry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest

from devdax.model.checker import check
from devdax.model.reduction import in_between, reduced_successors
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import C_IDLE, R_FALLBACK, State
from devdax.spec.symmetry import canonical
from devdax.spec.system import Transition, init, successors
from devdax.spec.variants import VARIANTS, variant_config

Next = Callable[[Ctx, State], list[Transition]]


def explore(c: Ctx, nxt: Next, canon: Callable[[State], State]) -> set[State]:
    """Every state reachable from init under nxt, stored as canon(s)."""
    s0 = canon(init(c))
    seen = {s0}
    todo = deque([s0])
    while todo:
        s = todo.popleft()
        for t in nxt(c, s):
            ns = canon(t.state)
            if ns not in seen:
                seen.add(ns)
                todo.append(ns)
    return seen


def raw(s: State) -> State:
    return s


def retry_pending(s: State) -> bool:
    """A CPU unlocked after FALLBACK and the mm has not re-entered the handler yet (with no read
    lock leaked: the M20 path keeps nest > 0 and is not fused)."""
    return any(cpu.pc == C_IDLE and cpu.result == R_FALLBACK and cpu.nest == 0 for cpu in s.cpus)


def fused_away(s: State) -> bool:
    """The states the movers reduction never stores."""
    return in_between(s)


def race(cpus: int, faults: int, first_fault: str = "pud") -> Config:
    return Config(
        profile="v4.10",
        race=True,
        cpus=cpus,
        faults=faults,
        units=2,
        files=1,
        vmas=1,
        first_fault=first_fault,
    )


CONFIGS: dict[str, Config] = {
    "race-2cpu": race(2, 2),
    "race-3cpu": race(3, 1, "pmd"),
    "v4.10-2files": Config(files=2, vmas=2, cpus=2, generations=1),
    "modern-binds1": Config(profile="modern", binds=1),
    **{
        n: variant_config(VARIANTS[n])
        for n in ("no-synchronize", "synchronize-before-clear", "unmap-before-synchronize", "M20", "M22")
    },
}
SLOW = {"v4.10-2files"}


def params() -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CONFIGS]


@pytest.mark.parametrize("name", params())
def test_reductions_agree(name: str) -> None:
    c = Ctx.of(CONFIGS[name])
    every = explore(c, successors, raw)  # R: no reduction at all
    sym = explore(c, successors, canonical)
    movers = explore(c, reduced_successors, raw)
    both = explore(c, reduced_successors, canonical)

    # same reachable abstract states
    assert sym == {canonical(s) for s in every}
    # successors() already moves only the first of identical CPUs (a symmetry reduction built into
    # Next's enumeration), so which CPU index ends up in which state depends on the path: compare
    # the movers run up to renaming.
    assert {canonical(s) for s in movers} == {canonical(s) for s in every if not fused_away(s)}
    assert both == {canonical(s) for s in every if not fused_away(s)}

    # the checker stores exactly those states and reaches the same verdict in all four modes
    runs = {(y, r): check(c, symmetry=y, reduce=r) for y in (False, True) for r in (False, True)}
    assert runs[False, False].states == len(every)
    assert runs[True, False].states == len(sym)
    assert runs[False, True].states == len(movers)  # same search, same enumeration order
    assert runs[True, True].states == len(both)
    verdicts = {k: sorted(res.violations) for k, res in runs.items()}
    assert len({tuple(v) for v in verdicts.values()}) == 1, verdicts
    assert all(res.complete for res in runs.values())


def test_in_between_names_every_fused_state() -> None:
    """Regression: _then also fuses the mm's retry after FALLBACK, so in_between must name those
    states (it did not at first; this test found it)."""
    c = Ctx.of(CONFIGS["race-2cpu"])
    every = explore(c, successors, raw)
    assert any(retry_pending(s) for s in every), "a pud first fault on a 2M device reaches a retry"
    assert all(in_between(s) for s in every if retry_pending(s))
    assert {s for s in every if not in_between(s)} >= explore(c, reduced_successors, raw), (
        "the reduced run stores only real, non-fused states"
    )
    both = explore(c, reduced_successors, canonical)
    assert both == {canonical(s) for s in every if not in_between(s)}
