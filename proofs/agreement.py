"""One agreement check for every model (``agree``): its step relation against the spec's explicit
successors, read through the model's abstraction function, on every reachable state of a small
configuration. Soundness: every spec transition is a run of model steps, or a stutter when it changes
nothing the model keeps. Completeness (``Side.complete``): no model step has an outcome that is not a
spec successor; where a model is a deliberate superset (things may happen at any time), exactness:
the model step that matched a spec transition, on the objects the spec touched, has no other outcome.

The rest is the protocol's abstraction: ``abstract(c, s)`` reads a spec State as the observable part
of a protocol state (``Obs``: all but the ghosts), ``pin`` constrains a symbolic state to it,
``observe`` reads one back from a model. Entries are compared as sets, CPUs as multisets (the spec
moves only the first of identical CPUs and sorts them), so the names Z3 picks do not matter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import z3

# What this module takes from model/: the movers reduction of the spec's successor relation (the Z3
# step relation is compared with the same fused steps the checker explores).
from devdax.model.reduction import reduced_successors
from devdax.proofs.engine import one_of, reader, which
from devdax.proofs.protocol import (
    P_GONE,
    P_IDLE,
    PROG_CODES,
    PROTOCOL_STEPS,
    VMA_FIELDS,
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

X = TypeVar("X")  # a spec state, with the ghosts a model needs
Ob = TypeVar("Ob")  # what a model sees of it

#: how a person reads a mismatch kind
KINDS = {
    "unsound": "spec step not in the model",
    "incomplete": "model step not in the spec",
    "unknown": "solver unknown",
}


@dataclass(frozen=True)
class Mismatch:
    kind: str  # a key of KINDS
    state: str  # the abstraction of the spec state before
    detail: str

    def __str__(self) -> str:
        return f"{KINDS[self.kind]}: {self.detail}\n  from {self.state}"


Instance = tuple[str, Term, dict[str, Term]]


@dataclass
class Side(Generic[Ob]):
    """A model's step relation as ``agree`` asks it. ``states[0]`` is pinned to the abstraction of a
    spec state; ``instances`` are the one-step action instances (name, formula, parameters) from it to
    ``states[1]``; ``longer[k]`` relates it to ``states[k + 2]`` by k + 2 steps (a spec transition may
    be several model steps: those the spec skips as inapplicable)."""

    states: Sequence[Term]
    instances: Sequence[Instance]
    pin: Callable[[Term, Ob], Term]
    #: every outcome of every step must be a spec successor (else: of the step that matched)
    complete: bool = False
    longer: Sequence[Term] = ()
    #: pin on a successor state up to the renamings the model is free to pick (default: ``pin``)
    pin_target: Callable[[Term, Ob], Term] | None = None
    #: an outcome of a model step, for the mismatch (completeness)
    observe: Callable[[Term, Term], Ob] | None = None
    #: what two observations must share to be the same
    key: Callable[[Ob], Hashable] = lambda o: o
    #: the named objects a step's parameter is matched to (exactness fixes the parameters)
    objects: Sequence[Term] = ()
    base: Sequence[Term] = ()
    solver: Callable[[], Term] = z3.Solver
    #: one solver for every question, each pushed and popped (else a fresh solver per question)
    incremental: bool = False
    #: steps whose outcomes completeness does not ask about (the protocol's admin ``end``)
    skip: Callable[[str], bool] = lambda name: False
    _solver: Term = None
    _matched: dict[tuple[Hashable, Hashable], tuple[int, list[Term]] | None] = field(default_factory=dict)
    _exact: set[Hashable] = field(default_factory=set)

    def ask(self, *parts: Term) -> tuple[Term, Term, str]:
        """(answer, model or None, reason when unknown)."""
        if not self.incremental:
            solver = self.solver()
            solver.add(*self.base, *parts)
        else:
            if self._solver is None:
                self._solver = self.solver()
                self._solver.add(*self.base)
            solver = self._solver
            solver.push()
            solver.add(*parts)
        answer = solver.check()
        out = answer, solver.model() if answer == z3.sat else None, solver.reason_unknown()
        if self.incremental:
            solver.pop()
        return out

    def target(self, state: Term, o: Ob) -> Term:
        return (self.pin_target or self.pin)(state, o)

    def match(self, here: Term, o: Ob, ot: Ob) -> tuple[int, list[Term]] | None:
        """The one-step instance that takes ``o`` to ``ot`` with its parameters fixed (-1: a run of
        several steps), None when no run of at most ``len(longer) + 1`` steps does."""
        k = (self.key(o), self.key(ot))
        if k not in self._matched:
            formulas, fired = one_of(self.instances, "agree")
            _, m, _ = self.ask(here, *formulas, self.target(self.states[1], ot))
            found = None
            if m is not None:
                i = which(m, fired)
                found = (i, [self._fix(m, p) for p in self.instances[i][2].values()])
            for n, run in enumerate(self.longer, 2):
                if found is None and self.ask(here, run, self.target(self.states[n], ot))[0] == z3.sat:
                    found = (-1, [])
            self._matched[k] = found
        return self._matched[k]

    def _fix(self, m: Term, p: Term) -> Term:
        """A parameter as the named object the model gave it (a model's own element means nothing to
        the next question), or its value."""
        named = [x for x in self.objects if x.sort() == p.sort()]
        if named:
            return p == next(x for x in named if z3.is_true(m.eval(p == x, model_completion=True)))
        return p == m.eval(p, model_completion=True)


def explore(
    start: X, moves: Callable[[X], list[tuple[str, X]]], limit: int
) -> Iterator[tuple[X, list[tuple[str, X]]]]:
    """Each state reachable from ``start`` (at most ``limit``) with its labelled moves."""
    seen, todo = {start}, [start]
    while todo:
        x = todo.pop()
        out = moves(x)
        yield x, out
        for _, nxt in out:
            if nxt not in seen:
                if len(seen) >= limit:
                    raise ValueError(f"config: more than {limit} reachable states")
                seen.add(nxt)
                todo.append(nxt)


def agree(
    graph: Iterable[tuple[X, list[tuple[str, X]]]], abstract: Callable[[X], Ob], side: Side[Ob]
) -> tuple[int, int, list[Mismatch]]:
    """(states, visible transitions, mismatches) of the model ``side`` against the spec ``graph``."""
    n = visible = 0
    bad: list[Mismatch] = []
    for x, moves in graph:
        n += 1
        o = abstract(x)
        want = {side.key(w): w for w in [o, *(abstract(t) for _, t in moves)]}
        here = side.pin(side.states[0], o)
        wanted = frozenset(want)
        for label, t in moves:
            ot = abstract(t)
            if side.key(ot) == side.key(o):
                continue
            visible += 1
            found = side.match(here, o, ot)
            if found is None:
                bad.append(Mismatch("unsound", repr(o), f"{label} -> {ot!r}"))
            elif not side.complete and found[0] >= 0 and _question(side, o, found, wanted):
                # many spec states share an abstraction: each question is asked once
                name, formula, _ = side.instances[found[0]]
                bad += _outside(side, here, name, formula, found[1], want.values(), o, label)
        if side.complete:
            steps = [f for name, f, _ in side.instances if not side.skip(name)]
            bad += _outside(side, here, "", z3.Or(*steps), [], want.values(), o, "")
    return n, visible, bad


def _question(side: Side[Ob], o: Ob, found: tuple[int, list[Term]], wanted: frozenset[Hashable]) -> bool:
    """Whether exactness still has to be asked of this step instance from this abstraction."""
    q = (side.key(o), found[0], tuple(str(f) for f in found[1]), wanted)
    new = q not in side._exact
    side._exact.add(q)
    return new


def _outside(
    side: Side[Ob],
    here: Term,
    name: str,
    step: Term,
    fixed: list[Term],
    want: Iterable[Ob],
    o: Ob,
    label: str,
    limit: int = 200,
) -> list[Mismatch]:
    """The outcomes of ``step`` from ``here`` that are no spec successor (each once)."""
    out: list[Mismatch] = []
    block = [z3.Not(side.target(side.states[1], w)) for w in want]
    for _ in range(limit):
        answer, m, reason = side.ask(here, step, *fixed, *block)
        if answer == z3.unknown:
            out.append(Mismatch("unknown", repr(o), reason))
        if m is None:
            break
        got = side.observe(m, side.states[1]) if side.observe is not None else None
        what = f"{name} has an outcome the spec does not have" if name else "an outcome"
        spec = f" (the spec's: {label})" if label else ""
        out.append(Mismatch("incomplete", repr(o), f"{what}: {got!r}{spec}"))
        if got is None:
            break
        block.append(z3.Not(side.target(side.states[1], got)))
    return out


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


def universe_for(c: Ctx) -> Universe:
    """CPUs and vmas as many as the configuration has; entries one more than can ever be installed
    (one per align unit of each vma), so an insertion always finds a free name."""
    units = max(c.cfg.units * 2, 1)
    ents = units * max(c.cfg.vmas, 1) + 1
    if c.cfg.race:  # one slot per entry the fixed layout can get (entry_keys)
        spans = tuple((r.start, r.end - r.start + 1) for r in c.layout.ranges[0])
        ents = max(1, len(entry_keys(c.prof, c.align, spans, abstract(c, init(c)).vmas)))
    return Universe.bounded(c.cfg.cpus, c.cfg.vmas, ents)


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


#: the State fields an Obs lists, in its order: a CPU's record and an entry's (a vma's: VMA_FIELDS)
CPU_OBS = ("pc", "nest", "pre", "left", "cvma", "caddr", "csize", "cres", "cphys")
ENT_OBS = ("evma", "eaddr", "esize", "ephys")


def pin(pr: Protocol, st: State, o: Obs, cpu_order: tuple[int, ...] | None = None) -> Term:
    """st shows exactly o (CPU i of the universe is o.cpus[cpu_order[i]]; identity when None)."""
    u = pr.u
    assert u.cpus is not None and u.vmas is not None and u.ents is not None
    vmas = u.vmas

    def fields(names: Sequence[str], x: Term, rec: Sequence[Any]) -> list[Term]:
        """field[x] == value for each name (a vma field's value is a vma's index)."""
        return [
            getattr(st, n)[x] == (vmas[v] if n in ("cvma", "evma") else v)
            for n, v in zip(names, rec, strict=True)
        ]

    out = [st.prog == o.prog, st.p == o.p, st.alive == o.alive, st.dead == o.dead, st.gp == o.gp]
    order = cpu_order if cpu_order is not None else tuple(range(len(o.cpus)))
    for i, k in enumerate(order):
        rec, x = o.cpus[k], u.cpus[i]
        idle = rec[0] == C_IDLE and rec[7] == R_NONE  # an idle CPU's fault fields are not kept
        out += fields(CPU_OBS[:4], x, rec[:4])
        out += fields(("cres",), x, (R_NONE,)) if idle else fields(CPU_OBS[4:], x, rec[4:])
    for j, vma in enumerate(o.vmas):
        out += fields(VMA_FIELDS if vma[0] else VMA_FIELDS[:1], vmas[j], vma if vma[0] else vma[:1])
    for e in u.ents:
        out.append(z3.Implies(st.live[e], z3.Or(*(z3.And(*fields(ENT_OBS, e, x)) for x in o.entries))))
    for ent in o.entries:
        out.append(z3.Or(*(z3.And(st.live[e], *fields(ENT_OBS, e, ent)) for e in u.ents)))
    return z3.And(*out)


def observe(pr: Protocol, m: Term, st: State) -> Obs:
    """The Obs a model gives a state."""
    u = pr.u
    assert u.cpus is not None and u.vmas is not None and u.ents is not None
    ev, num, flag = reader(m)
    vmas = u.vmas

    def rec(names: Sequence[str], x: Term) -> tuple[Any, ...]:
        """The values of x's fields: Bools, ints, a vma as its index."""
        vals = [ev(getattr(st, n)[x]) for n in names]
        return tuple(
            z3.is_true(v)
            if z3.is_bool(v)
            else v.as_long()
            if z3.is_int_value(v)
            else next(i for i, y in enumerate(vmas) if z3.eq(y, v))
            for v in vals
        )

    cpus = tuple(sorted(_cpu(*rec(CPU_OBS, x)) for x in u.cpus))
    vma_obs = tuple(rec(VMA_FIELDS, x) if flag(st.used[x]) else UNUSED_VMA for x in vmas)
    entries = frozenset(rec(ENT_OBS, e) for e in u.ents if flag(st.live[e]))
    return Obs(num(st.prog), num(st.p), flag(st.alive), flag(st.dead), flag(st.gp), cpus, vma_obs, entries)


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


def protocol_side(c: Ctx, pr: Protocol, fused: bool = False) -> Side[Obs]:
    """The protocol as ``agree`` asks it: every step's outcome must be a spec successor but the
    admin's ``end`` (where the abstraction forgets the program's non-protocol tail); CPUs are pinned
    in sorted order on both sides, and the CPU that moved may sort elsewhere in the successor, so a
    successor is pinned up to any permutation (a configuration has few CPUs)."""
    S, T = pr.state("s"), pr.state("t")

    def solver() -> Term:
        # a fresh solver per question: Z3's incremental mode is much slower on these array queries
        out = z3.Solver()
        out.set("timeout", 10_000)
        return out

    return Side(
        [S, T],
        [(a.name, a.formula, dict(a.params)) for a in pr.actions(S, T, "a", fused=fused)],
        lambda st, o: pin(pr, st, o),
        complete=True,
        pin_target=lambda st, o: z3.Or(*(pin(pr, st, o, perm) for perm in _permutations(len(o.cpus)))),
        observe=lambda m, st: observe(pr, m, st),
        base=[*pr.rigid, *layout(pr, c)],
        solver=solver,
        skip=lambda name: name.endswith(":end"),
    )


def spec_moves(c: Ctx, fused: bool = False) -> Callable[[SpecState], list[tuple[str, SpecState]]]:
    """The spec's transitions from a state, labelled as a mismatch prints them; ``fused``: the movers
    reduction's (model/reduction.py)."""
    nxt = reduced_successors if fused else successors
    return lambda s: [(f"{tr.action}{tr.args} -> {tr.outcome}", tr.state) for tr in nxt(c, s)]


def check_config(c: Ctx, limit: int = 5000, fused: bool = False) -> tuple[int, list[Mismatch]]:
    """Every reachable state of the configuration (up to ``limit``): (states checked, mismatches).
    ``fused``: the protocol's fused CPU steps against the spec's reduced successors."""
    moves = spec_moves(c, fused)
    graph = ((s, moves(s)) for s in reachable(c, limit, fused))
    side = protocol_side(c, protocol_for(c, universe_for(c)), fused)
    n, _, bad = agree(graph, lambda s: abstract(c, s), side)
    return n, bad


def _permutations(n: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(n)))
