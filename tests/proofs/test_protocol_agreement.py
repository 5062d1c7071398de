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

from devdax.proofs.agreement import (
    Obs,
    abstract,
    check_config,
    layout,
    observe,
    pin,
    reachable,
    universe_for,
)
from devdax.proofs.protocol import PROG_CODES, Protocol, programs_for
from devdax.proofs.smt import Term
from devdax.spec import geometry as g
from devdax.spec import mm
from devdax.spec.config import Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.state import State as SpecState
from devdax.spec.system import init, successors
from devdax.spec.variants import _race
from devdax.spec.vma import faulting

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


def test_abstraction_of_the_race_start() -> None:
    """The race prefix (probe, open, mmap whole) is an initial protocol state: alive, idle, no entry."""
    c = Ctx.of(_race())
    o = abstract(c, init(c))
    assert (o.alive, o.dead, o.gp, o.prog, o.entries) == (True, False, False, 0, frozenset())
    assert o.vmas[0][0] and o.vmas[0][2] - o.vmas[0][1] == c.align


# --------------------------------------------------------------------------------------------------
# Partial munmap (Protocol.partial_munmap_actions) against spec/vma.py do_munmap and spec/mm.py change
# --------------------------------------------------------------------------------------------------


#: one file, two vma slots, one CPU with two faults, a 2-unit device and a 2-unit mapping: a vma can
#: hold two huge entries, so a cut can cross one and spare the other, and a punch finds a free slot
def _munmap_config(profile: str) -> Config:
    return Config(
        profile=profile,
        first_fault="pmd",
        files=1,
        vmas=2,
        cpus=1,
        faults=2,
        units=2,
        munmap_parts=True,
        mmaps=(MmapShape("two-units", units=2),),
    )


def _by_content(o: Obs) -> tuple[object, ...]:
    """o up to the names of its vma slots: each used vma with the entries it holds. The kernel keeps
    the lower part of a punched vma in the old struct (spec mm.change: the old slot), the protocol the
    upper one; which part keeps a name is naming only."""
    vmas = frozenset(
        (x, frozenset(e[1:] for e in o.entries if e[0] == i)) for i, x in enumerate(o.vmas) if x[0]
    )
    return (o.prog, o.p, o.alive, o.dead, o.gp, o.cpus, vmas)


class _Munmaps:
    """The protocol's partial-munmap actions of a configuration's device 0 (bounded, scalar), with the
    states pinned to spec states."""

    def __init__(self, c: Ctx) -> None:
        self.c = c
        u = universe_for(c)
        spans = tuple((r.start, r.end - r.start + 1) for r in c.layout.ranges[0])
        self.pr = Protocol(
            c.prof,
            u,
            c.align,
            c.cfg.first_fault_bytes,
            n_ranges=len(spans),
            programs=programs_for(c.prof, race=False, binds=False),
            spans=spans,
            users=True,
        )
        self.S, self.T = self.pr.state("s"), self.pr.state("t")
        self.acts = [a for a in self.pr.user_actions(self.S, self.T, "m") if a.name.startswith("munmap_")]
        assert {a.name for a in self.acts} == {"munmap_head", "munmap_tail", "munmap_punch"}
        self.lo, self.hi = z3.Int("lo@m"), z3.Int("hi@m")
        zapped = z3.Function("zapped@m", u.ent, z3.BoolSort())
        assert u.ents is not None
        #: the kernel's own effect: no entry dies but the ones the removed range overlaps
        self.exact = z3.And(*(z3.Not(zapped(e)) for e in u.ents))

    def solver(self, s: SpecState, v: int, *extra: Term) -> Term:
        u = self.pr.u
        assert u.vmas is not None
        mine = [a.formula for a in self.acts if z3.eq(dict(a.params)["vma"], u.vmas[v])]
        solver = z3.Solver()
        solver.add(
            *self.pr.rigid,
            *layout(self.pr, self.c),
            pin(self.pr, self.S, abstract(self.c, s)),
            z3.Or(*mine),
            *extra,
        )
        return solver

    def successors(self, s: SpecState, v: int, lo: int, hi: int) -> set[tuple[object, ...]]:
        """Every post state (by content) of the kernel-exact protocol step removing [lo, hi) of v."""
        solver = self.solver(s, v, self.lo == lo, self.hi == hi, self.exact)
        out = set()
        while solver.check() == z3.sat:
            got = observe(self.pr, solver.model(), self.T)
            out.add(_by_content(got))
            solver.add(z3.Not(pin(self.pr, self.T, got)))
        return out


def _munmap_states(c: Ctx, limit: int = 1500) -> list[SpecState]:
    """Reachable spec states with a vma of device 0 and no program the abstraction does not know
    (probe), one per distinct (vmas, entries, CPUs): all a munmap reads."""
    seen: dict[tuple[object, ...], SpecState] = {}
    for s in reachable(c, limit):
        if (s.admin.prog and s.admin.prog not in PROG_CODES) or not any(x.file >= 0 for x in s.vmas):
            continue
        o = abstract(c, s)
        seen.setdefault((o.vmas, o.entries, o.cpus), s)
    return list(seen.values())


@pytest.mark.parametrize("profile", ["v4.7", "v4.10"])
def test_partial_munmap_agrees_with_spec(profile: str) -> None:
    """Every munmap of part of a vma the spec takes (do_munmap's "tail" and "misaligned" parts) is a
    protocol step, and one the spec refuses (may_split's EINVAL since M8) is none; and for head, tail
    and punch ranges, the protocol's step without its extra zapping has exactly the successor of spec
    mm.change (entries a cut crosses die, the kept part's pgoff advances, a punch's other part takes a
    free slot), or none where mm.change fails (EINVAL, or ENOMEM: no free slot)."""
    c = Ctx.of(_munmap_config(profile))
    m = _Munmaps(c)
    taken = refused = exact = crossed = 0
    for s in _munmap_states(c):
        for tr in successors(c, s):
            if tr.action != "munmap" or tr.args[1] == "all":
                continue
            v, part = tr.args
            assert isinstance(v, int)
            vma = s.vmas[v]
            if tr.outcome == "ok":
                solver = m.solver(s, v, pin(m.pr, m.T, abstract(c, tr.state)))
                assert solver.check() == z3.sat, f"spec munmap {part} of vma{v} not a protocol step: {s}"
                taken += 1
            else:
                assert tr.outcome == "EINVAL"
                cut = vma.start + g.PAGE_SIZE if part == "misaligned" else vma.end - c.align
                lo, hi = (vma.start, cut) if part == "misaligned" else (cut, vma.end)
                solver = m.solver(s, v, m.lo == lo, m.hi == hi)
                assert solver.check() == z3.unsat, f"protocol cuts where may_split refuses: {tr}"
                refused += 1
        for v, vma in enumerate(s.vmas):
            if vma.file < 0 or faulting(s, v):
                continue
            for lo, hi in (
                (vma.start, vma.start + g.PAGE_SIZE),
                (vma.start, vma.start + c.align),
                (vma.end - c.align, vma.end),
                (vma.end - g.PAGE_SIZE, vma.end),
                (vma.start + g.PAGE_SIZE, vma.start + 2 * g.PAGE_SIZE),
            ):
                if not vma.start <= lo < hi <= vma.end or (lo, hi) == (vma.start, vma.end):
                    continue
                outcome, after = mm.change(c, s, v, lo, hi, None)
                want = {_by_content(abstract(c, after))} if outcome == "ok" else set()
                got = m.successors(s, v, lo, hi)
                assert got == want, f"[{lo:#x}, {hi:#x}) of vma{v}: spec {outcome} {want}, protocol {got}"
                exact += 1
                crossed += outcome == "ok" and len(after.entries) < len(s.entries)
    assert taken > 10 and exact > 50 and crossed > 5
    assert (refused > 0) == c.prof.has_split


def test_partial_munmap_agreement_catches_a_cut_may_split_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A protocol whose munmap ignores dev_dax_may_split (M8's bug, planted on v4.10) cuts where the
    spec says EINVAL: the agreement check fails."""
    monkeypatch.setattr(Protocol, "may_split", lambda self, cut: z3.BoolVal(True))
    with pytest.raises(AssertionError, match=r"may_split refuses|spec EINVAL"):
        test_partial_munmap_agrees_with_spec("v4.10")
