"""The abstraction from spec states to protocol states, and the check that the two step relations agree.

``abstract(c, s)`` reads a spec State (spec/state.py) as the observable part of a protocol state
(``Obs``: everything but the ghost variables); ``pin`` constrains a symbolic protocol state to an
``Obs``; ``observe`` reads one back from a Z3 model. ``check_state`` compares, for one reachable spec
state, the spec's explicit successors with the models of the protocol's step relation:

* soundness: every spec transition is a protocol step (or a stutter, when it changes nothing the
  protocol keeps: cdev_del, puts, mapping_release);
* completeness: every model of a protocol step, except the admin's ``end`` (the one place where the
  abstraction forgets detail: when the program's non-protocol tail finishes), is a spec successor.

Entries are compared as sets, CPUs as multisets (the spec moves only the first of identical CPUs and
sorts them), so the entry and CPU names Z3 picks do not matter.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import z3

# What this module takes from model/: the movers reduction of the spec's successor relation (the Z3
# step relation is compared with the same fused steps the checker explores).
from devdax.model.reduction import reduced_successors
from devdax.proofs.protocol import (
    P_GONE,
    P_IDLE,
    PROG_CODES,
    PROTOCOL_STEPS,
    Protocol,
    State,
    Universe,
    entry_keys,
    programs_for,
)
from devdax.proofs.smt import Term
from devdax.spec import admin
from devdax.spec.ctx import Ctx
from devdax.spec.state import C_IDLE, R_NONE, RG_GONE
from devdax.spec.state import State as SpecState
from devdax.spec.symmetry import canonical
from devdax.spec.system import init, successors

CpuObs = tuple[int, int, bool, int, int, int, int, int, int]  # pc nest pre left vma addr size res phys
VmaObs = tuple[bool, int, int, int, bool, bool, bool, bool]  # used start end pgoff shared may write dc
EntObs = tuple[int, int, int, int]  # vma addr size phys

IDLE_CPU_TAIL = (-1, 0, 0, R_NONE, 0)
UNUSED_VMA: VmaObs = (False, 0, 0, 0, False, False, False, False)


@dataclass(frozen=True)
class Obs:
    prog: int
    p: int
    alive: bool
    dead: bool
    gp: bool
    cpus: tuple[CpuObs, ...]  # sorted
    vmas: tuple[VmaObs, ...]
    entries: frozenset[EntObs]


def _cpu(
    pc: int, nest: int, pre: bool, left: int, vma: int, addr: int, size: int, res: int, phys: int
) -> CpuObs:
    if pc == C_IDLE and res == R_NONE:  # the spec resets an idle CPU's fault fields
        return (pc, nest, pre, left, *IDLE_CPU_TAIL)
    return (pc, nest, pre, left, vma, addr, size, res, phys)


def abstract(c: Ctx, s: SpecState, dev: int = 0) -> Obs:
    """The protocol's view of a spec state, for device ``dev`` (its vmas are the ones it maps)."""
    d = s.devs[dev]
    a = s.admin
    if a.prog:
        prog = PROG_CODES[a.prog]
        steps = admin.program(c, a.prog, a.dev)
        p = sum(1 for name, _, _ in steps[: a.pc] if name in PROTOCOL_STEPS)
    else:
        prog = P_GONE if s.regions[c.region_of(dev)].phase == RG_GONE else P_IDLE
        p = 0
    cpus = tuple(
        sorted(_cpu(x.pc, x.nest, x.pre_gp, x.left, x.vma, x.addr, x.size, x.result, x.phys) for x in s.cpus)
    )
    vmas = tuple(
        (True, v.start, v.end, v.pgoff, v.shared, v.mayshare, v.write, v.dontcopy)
        if v.file >= 0 and s.files[v.file].dev == dev
        else UNUSED_VMA
        for v in s.vmas
    )
    entries = frozenset((e.vma, e.addr, e.size, e.phys) for e in s.entries)
    return Obs(prog, p, d.alive, d.dead, s.gp, cpus, vmas, entries)


def universe_for(c: Ctx, scalar: bool = True) -> Universe:
    """CPUs and vmas as many as the configuration has; entries one more than can ever be installed
    (one per align unit of each vma), so an insertion always finds a free name. ``scalar``: one
    variable per element (the default), or Z3 arrays (the encoding BMC had first; for comparison)."""
    units = max(c.cfg.units * 2, 1)
    ents = units * max(c.cfg.vmas, 1) + 1
    if scalar and c.cfg.race:  # one slot per entry the fixed layout can get (entry_keys)
        spans = tuple((r.start, r.end - r.start + 1) for r in c.layout.ranges[0])
        ents = max(1, len(entry_keys(c.prof, c.align, spans, abstract(c, init(c)).vmas)))
    return Universe.bounded(c.cfg.cpus, c.cfg.vmas, ents, scalar=scalar)


def protocol_for(c: Ctx, u: Universe) -> Protocol:
    """The protocol of the configuration's device 0: its ranges as constants, and in a race (no
    mmap/munmap after the prefix) its vmas as the fixed layout of the initial state."""
    spans = tuple((r.start, r.end - r.start + 1) for r in c.layout.ranges[0])
    fixed = abstract(c, init(c)).vmas if c.cfg.race else None
    return Protocol(
        c.prof,
        u,
        c.align,
        c.cfg.first_fault_bytes,
        n_ranges=len(spans),
        programs=programs_for(c.prof, c.cfg.race, c.cfg.binds > 0),
        spans=spans,
        vma_layout=fixed,
    )


def layout(pr: Protocol, c: Ctx, dev: int = 0) -> list[Term]:
    """The configuration's physical ranges, the protocol's rigid range variables pinned to them."""
    out = []
    for (start, size), r in zip(pr.range_vars, c.layout.ranges[dev], strict=True):
        out += [start == r.start, size == r.end - r.start + 1]
    return out


def pin(pr: Protocol, st: State, o: Obs, cpu_order: tuple[int, ...] | None = None) -> Term:
    """st shows exactly o (CPU i of the universe is o.cpus[cpu_order[i]]; identity when None)."""
    u = pr.u
    assert u.cpus is not None and u.vmas is not None and u.ents is not None
    out = [st.prog == o.prog, st.p == o.p, st.alive == o.alive, st.dead == o.dead, st.gp == o.gp]
    order = cpu_order if cpu_order is not None else tuple(range(len(o.cpus)))
    for i, k in enumerate(order):
        x, (pc, nest, pre, left, vma, addr, size, res, phys) = u.cpus[i], o.cpus[k]
        out += [st.pc[x] == pc, st.nest[x] == nest, st.pre[x] == pre, st.left[x] == left]
        if not (pc == C_IDLE and res == R_NONE):
            out += [
                st.cvma[x] == u.vmas[vma],
                st.caddr[x] == addr,
                st.csize[x] == size,
                st.cres[x] == res,
                st.cphys[x] == phys,
            ]
        else:
            out.append(st.cres[x] == R_NONE)
    for j, (used, start, end, pgoff, shared, may, write, dc) in enumerate(o.vmas):
        x = u.vmas[j]
        out.append(st.used[x] == used)
        if used:
            out += [
                st.vstart[x] == start,
                st.vend[x] == end,
                st.vpgoff[x] == pgoff,
                st.vshared[x] == shared,
                st.vmayshare[x] == may,
                st.vwrite[x] == write,
                st.vdontcopy[x] == dc,
            ]

    vma_elems = u.vmas

    def is_entry(e: Term, ent: EntObs) -> Term:
        vma, addr, size, phys = ent
        return z3.And(
            st.evma[e] == vma_elems[vma], st.eaddr[e] == addr, st.esize[e] == size, st.ephys[e] == phys
        )

    for e in u.ents:
        out.append(z3.Implies(st.live[e], z3.Or(*(is_entry(e, x) for x in o.entries))))
    for ent in o.entries:
        out.append(z3.Or(*(z3.And(st.live[e], is_entry(e, ent)) for e in u.ents)))
    return z3.And(*out)


def observe(pr: Protocol, m: Term, st: State) -> Obs:
    """The Obs a model gives a state."""
    u = pr.u
    assert u.cpus is not None and u.vmas is not None and u.ents is not None

    def ev(t: Term) -> Term:
        return m.eval(t, model_completion=True)

    def num(t: Term) -> int:
        return int(ev(t).as_long())

    def flag(t: Term) -> bool:
        return bool(z3.is_true(ev(t)))

    vma_elems = u.vmas

    def vma_index(t: Term) -> int:
        val = ev(t)
        return next(i for i, x in enumerate(vma_elems) if z3.eq(x, val))

    cpus = tuple(
        sorted(
            _cpu(
                num(st.pc[x]),
                num(st.nest[x]),
                flag(st.pre[x]),
                num(st.left[x]),
                vma_index(st.cvma[x]),
                num(st.caddr[x]),
                num(st.csize[x]),
                num(st.cres[x]),
                num(st.cphys[x]),
            )
            for x in u.cpus
        )
    )
    vmas = tuple(
        (
            True,
            num(st.vstart[x]),
            num(st.vend[x]),
            num(st.vpgoff[x]),
            flag(st.vshared[x]),
            flag(st.vmayshare[x]),
            flag(st.vwrite[x]),
            flag(st.vdontcopy[x]),
        )
        if flag(st.used[x])
        else UNUSED_VMA
        for x in u.vmas
    )
    entries = frozenset(
        (vma_index(st.evma[e]), num(st.eaddr[e]), num(st.esize[e]), num(st.ephys[e]))
        for e in u.ents
        if flag(st.live[e])
    )
    return Obs(num(st.prog), num(st.p), flag(st.alive), flag(st.dead), flag(st.gp), cpus, vmas, entries)


def reachable(c: Ctx, limit: int = 5000, fused: bool = False) -> Iterator[SpecState]:
    """Breadth-first over canonical spec states (at most ``limit``); ``fused``: over the movers
    reduction's steps (model/reduction.py), which never stops between fused steps."""
    s0 = canonical(init(c))
    seen = {s0}
    queue = [s0]
    nxt = reduced_successors if fused else successors
    while queue and len(seen) <= limit:
        s = queue.pop(0)
        yield s
        for tr in nxt(c, s):
            ns = canonical(tr.state)
            if ns not in seen:
                seen.add(ns)
                queue.append(ns)


@dataclass
class Mismatch:
    kind: str  # "unsound": a spec step the protocol lacks; "incomplete": the converse
    state: Obs
    detail: str


class Agreement:
    """The two solvers of the comparison, built once per configuration: every step (soundness) and
    every step but the admin's ``end`` (completeness); each spec state is pushed and popped."""

    def __init__(self, c: Ctx, pr: Protocol, timeout_ms: int = 10_000, fused: bool = False) -> None:
        self.c, self.pr, self.timeout_ms, self.fused = c, pr, timeout_ms, fused
        self.S, self.T = pr.state("s"), pr.state("t")
        actions = pr.actions(self.S, self.T, "a", fused=fused)
        self.base = [*pr.rigid, *layout(pr, c)]
        self.every = z3.Or(*(a.formula for a in actions))
        self.no_end = z3.Or(*(a.formula for a in actions if not a.name.endswith(":end")))

    def _solver(self) -> Term:
        # a fresh solver per question: Z3's incremental mode is much slower on these array queries
        solver = z3.Solver()
        solver.set("timeout", self.timeout_ms)
        solver.add(*self.base)
        return solver

    def check_state(self, s: SpecState) -> list[Mismatch]:
        """Compare the spec's successors of s with the protocol's step models from abstract(s)."""
        c, pr, S, T = self.c, self.pr, self.S, self.T
        o = abstract(c, s)
        nxt = reduced_successors if self.fused else successors
        moved = {x for x in (abstract(c, tr.state) for tr in nxt(c, s)) if x != o}
        out: list[Mismatch] = []
        here = pin(pr, S, o)
        for x in moved:
            # CPUs are pinned in sorted order on both sides; the CPU that moved may sort elsewhere in
            # the successor, so any permutation will do (a configuration has few CPUs)
            solver = self._solver()
            solver.add(here, self.every, z3.Or(*(pin(pr, T, x, perm) for perm in _permutations(len(x.cpus)))))
            answer = solver.check()
            if answer != z3.sat:
                out.append(
                    Mismatch(
                        "unsound" if answer == z3.unsat else "unknown",
                        o,
                        f"spec successor not a protocol step: {x}",
                    )
                )
        solver = self._solver()
        solver.add(here, self.no_end, z3.Not(pin(pr, T, o)))
        for _ in range(200):
            answer = solver.check()
            if answer == z3.unknown:
                out.append(Mismatch("unknown", o, solver.reason_unknown()))
                break
            if answer == z3.unsat:
                break
            got = observe(pr, solver.model(), T)
            if got not in moved:
                out.append(Mismatch("incomplete", o, f"protocol step not a spec successor: {got}"))
            solver.add(*(z3.Not(pin(pr, T, got, perm)) for perm in _permutations(len(got.cpus))))
        return out


def check_config(c: Ctx, limit: int = 5000, fused: bool = False) -> tuple[int, list[Mismatch]]:
    """Every reachable state of the configuration (up to ``limit``): (states checked, mismatches).
    ``fused``: the protocol's fused CPU steps against the spec's reduced successors."""
    pr = protocol_for(c, universe_for(c))
    ag = Agreement(c, pr, fused=fused)
    n, bad = 0, []
    for s in reachable(c, limit, fused):
        n += 1
        bad += ag.check_state(s)
    return n, bad


def _permutations(n: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(n)))
