"""The fault-vs-teardown protocol of one device as a Z3 transition system, for any number of CPUs,
vmas and entries.

What it is an abstraction of: the spec's state machine (spec/system.py) seen from one device, keeping
exactly what the safety invariants about mappings read (docs/semantics.md#teardown): the alive flag,
the grace period and which readers it waits for, the CPUs in the fault handler (spec/fault.py, step by
step), the vmas and the installed entries. Reference counts, minors and sysfs are left out (they never
guard a fault step). The abstraction function is :func:`proofs.agreement.abstract`; the agreement test
shows that on every reachable state of small race configurations the CPU steps of this relation have
exactly the spec's successors, and that every admin step of the spec is a step here.

What is derived from spec/ rather than written again:

* the admin programs: the profile's ``remove``/``unbind``/``bind`` step lists (a variant that reorders
  or drops a step changes this model with no edit here), including the kill marker ``!``;
* the fault decision: ``proofs.geometry_z3.dax_huge_fault`` and ``check_vma_int``, the agreement-tested
  encodings of spec/geometry.py, with the profile's FaultRules and check_vma era;
* the M20 switch (``default_case_leaks_lock``), the bind-cycle switches.

The per-step effects of the protocol steps (``clear_alive``, ``synchronize_start``,
``synchronize_wait``, ``unmap_mapping_range``, ``run_dax``) are restated from spec/admin.py, each next
to the spec function it mirrors; every other admin step (cdev_del, device_del, puts) changes nothing
this abstraction keeps and is a stutter.

Sorts: ``Universe.unbounded()`` makes CPU, VMA and ENT uninterpreted sorts (the inductive proofs: any
number of each); ``Universe.bounded(n, m, k)`` makes them enumerations (BMC and the agreement test).

Two representations of the per-CPU/vma/entry fields, one protocol: Z3 arrays with symbolic action
parameters (unbounded), or, bounded, one variable per element with one action instance per concrete
element (``Vec``). The protocol below reads a field as ``s.pc[c]``
and writes it through ``store``/``tabulate``/``constant``/``same``, which work on both; with a fixed
race layout (``vma_layout``, ``spans``) the vmas and ranges are constants, so fault targets are
enumerated and each fault decision is a table computed by Z3's simplifier from geometry_z3.

Ghost state (named and explained where declared): ``gp_clean`` and ``quiesced`` record what the grace
period has established, so that the strengthening invariants can say it without program counters.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property

import z3

from devdax.proofs import geometry_z3 as G
from devdax.proofs.smt import Term
from devdax.spec import geometry as g
from devdax.spec.profiles import Profile
from devdax.spec.state import C_CHECKED, C_DONE, C_IDLE, C_LOCKED, R_FALLBACK, R_NONE, R_NOPAGE, R_SIGBUS

#: admin programs of the abstraction (Admin.prog); GONE: the provider was removed, nothing runs again
P_IDLE, P_GONE, P_REMOVE, P_UNBIND, P_BIND = 0, 1, 2, 3, 4
PROG_CODES = {"remove": P_REMOVE, "unbind": P_UNBIND, "bind": P_BIND}
PROG_NAMES = {P_IDLE: "idle", P_GONE: "gone", P_REMOVE: "remove", P_UNBIND: "unbind", P_BIND: "bind"}

#: the admin steps whose effect this abstraction keeps; every other step is a stutter
PROTOCOL_STEPS = ("clear_alive", "synchronize_start", "synchronize_wait", "unmap_mapping_range", "run_dax")

_counter = itertools.count()


# --------------------------------------------------------------------------------------------------
# Sorts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Universe:
    """The sorts of CPUs, vmas and entries; finite element lists when bounded.

    Bounded, the per-element fields are one scalar variable per element (``Vec``) instead of a Z3
    array, and an action has one instance per concrete CPU/vma/entry instead of a symbolic parameter.
    Unrolled k times (BMC), Z3 arrays would hand Z3 k copies of every array with symbolic reads and
    whole-array frame equalities, which it solves by instantiating array axioms; the scalar fields are
    plain propositional/linear structure (bench/RESULTS.md, "BMC scaling")."""

    cpu: Term
    vma: Term
    ent: Term
    cpus: tuple[Term, ...] | None = None
    vmas: tuple[Term, ...] | None = None
    ents: tuple[Term, ...] | None = None

    @staticmethod
    def unbounded() -> Universe:
        return Universe(z3.DeclareSort("CPU"), z3.DeclareSort("VMA"), z3.DeclareSort("ENT"))

    @staticmethod
    def bounded(cpus: int, vmas: int, ents: int) -> Universe:
        """Enumeration sorts (at least one element each: a sort is never empty), fields per element."""
        n = next(_counter)
        sorts = []
        for kind, k in (("cpu", cpus), ("vma", vmas), ("ent", ents)):
            sort, elems = z3.EnumSort(f"{kind.upper()}{n}", [f"{kind}{i}" for i in range(max(k, 1))])
            sorts.append((sort, tuple(elems)))
        (c, ce), (v, ve), (e, ee) = sorts
        return Universe(c, v, e, ce, ve, ee)

    @property
    def finite(self) -> bool:
        return self.cpus is not None

    def forall(self, sort: Term, body: Callable[[Term], Term], name: str = "x", some: bool = False) -> Term:
        """body holds for every element (``some``: for one), a conjunction over a finite sort."""
        elems = self._elems(sort)
        if elems is not None:
            return (z3.Or if some else z3.And)(*(body(x) for x in elems))
        x = z3.Const(f"{name}!{next(_counter)}", sort)
        return (z3.Exists if some else z3.ForAll)([x], body(x))

    def exists(self, sort: Term, body: Callable[[Term], Term], name: str = "x") -> Term:
        return self.forall(sort, body, name, some=True)

    def params(self, sort: Term, name: str) -> tuple[Term, ...]:
        """What an action parameter of this sort ranges over: every element, one action instance each,
        when fields are per-element variables (``s.pc[c]`` is then just a variable); else one fresh
        constant (the unbounded proofs: "for some CPU c")."""
        elems = self._elems(sort)
        return elems if elems is not None else (z3.Const(name, sort),)

    def pick(self, name: str, values: Sequence[int]) -> list[tuple[Term, Term]]:
        """An Int parameter with finitely many values, as (value, constraint) pairs: one concrete value
        per action instance when bounded, one constrained variable otherwise."""
        if self.finite:
            return [(z3.IntVal(x), z3.BoolVal(True)) for x in values]
        var = z3.Int(name)
        return [(var, z3.Or(*(var == x for x in values)))]

    def _elems(self, sort: Term) -> tuple[Term, ...] | None:
        if sort == self.cpu:
            return self.cpus
        if sort == self.vma:
            return self.vmas
        return self.ents


# --------------------------------------------------------------------------------------------------
# Fields: Z3 arrays or one variable per element, behind the same four operations
# --------------------------------------------------------------------------------------------------


class Vec:
    """A per-element field of a bounded universe: one term per element. Reads and writes at a concrete
    element touch one term; at a symbolic element (``s.vstart[s.cvma[c]]``) they become an If-chain
    over the elements, with no array theory."""

    __slots__ = ("_at", "elems", "items")

    def __init__(
        self, elems: tuple[Term, ...], items: tuple[Term, ...], at: dict[int, int] | None = None
    ) -> None:
        self.elems, self.items = elems, items
        self._at = at if at is not None else {e.get_id(): i for i, e in enumerate(elems)}

    def index(self, k: Term) -> int | None:
        return self._at.get(k.get_id())

    def __getitem__(self, k: Term) -> Term:
        i = self.index(k)
        if i is not None:
            return self.items[i]
        out = self.items[-1]
        for e, x in zip(self.elems[-2::-1], self.items[-2::-1], strict=True):
            out = z3.If(k == e, x, out)
        return out

    def set(self, k: Term, value: Term) -> Vec:
        i = self.index(k)
        if i is not None:
            items = self.items[:i] + (value,) + self.items[i + 1 :]
        else:
            items = tuple(z3.If(k == e, value, x) for e, x in zip(self.elems, self.items, strict=True))
        return Vec(self.elems, items, self._at)


def store(f: Term, k: Term, value: Term) -> Term:
    """f with element k set to value (z3.Store on an array)."""
    return f.set(k, value) if isinstance(f, Vec) else z3.Store(f, k, value)


def tabulate(u: Universe, sort: Term, body: Callable[[Term], Term], name: str = "x") -> Term:
    """The field whose element x is body(x) (a lambda on arrays)."""
    elems = u._elems(sort)
    if elems is not None:
        return Vec(elems, tuple(body(x) for x in elems))
    x = z3.Const(f"{name}!{next(_counter)}", sort)
    return z3.Lambda([x], body(x))


def constant(u: Universe, sort: Term, value: Term) -> Term:
    """The field that is value everywhere (z3.K on arrays)."""
    elems = u._elems(sort)
    if elems is not None:
        return Vec(elems, (value,) * len(elems))
    return z3.K(sort, value)


def same(a: Term, b: Term) -> Term:
    """a and b are equal: element by element for Vecs (identical terms need no equation)."""
    if isinstance(a, Vec):
        assert isinstance(b, Vec)
        eqs = [x == y for x, y in zip(a.items, b.items, strict=True) if not z3.eq(x, y)]
        return z3.And(*eqs) if eqs else z3.BoolVal(True)
    return z3.BoolVal(True) if z3.eq(a, b) else a == b


def terms(f: Term) -> tuple[Term, ...]:
    """The terms a field consists of (the array itself, or a Vec's items)."""
    return f.items if isinstance(f, Vec) else (f,)


# --------------------------------------------------------------------------------------------------
# One state
# --------------------------------------------------------------------------------------------------

#: a vma of a fixed layout: used, start, end, pgoff, shared, mayshare, write, dontcopy (State's order)
RigidVma = tuple[bool, int, int, int, bool, bool, bool, bool]
#: an entry a fixed layout can ever get: vma index, addr, size, phys
EntKey = tuple[int, int, int, int]
#: the key of the slot no fault can fill (a universe has at least one entry)
NO_KEY: EntKey = (0, -1, 0, 0)


def entry_keys(
    profile: Profile, align: int, spans: Sequence[tuple[int, int]], vma_layout: Sequence[RigidVma]
) -> tuple[EntKey, ...]:
    """Every entry a fault can install on a fixed layout: spec geometry.dax_huge_fault at each fault
    target of each vma (spec fault.fault_targets) and each size, on a live device. An entry is only
    ever made by fault_insert from such a decision, so one slot per key, holding its key as constants,
    represents every set of entries: the entry state is one Bool per key."""
    ranges = g.make_ranges(spans)
    keys: list[EntKey] = []
    for v, (used, start, end, pgoff, shared, may, write, dc) in enumerate(vma_layout):
        if not used:
            continue
        ok = (
            g.check_vma(
                True, g.VmaFlags(shared, may, write, False, dc), start, end, align, profile.private_test
            )
            == 0
        )
        base = start - start % align
        for a in range(base, end, align):
            for size in g.FAULT_SIZES:
                d = g.dax_huge_fault(
                    size, max(a, start), start, end, pgoff, align, ranges, ok, profile.fault_rules
                )
                key = (v, d.addr, size, d.phys)
                if d.result is g.FaultResult.NOPAGE and key not in keys:
                    keys.append(key)
    return tuple(keys)


VMA_FIELDS = ("used", "vstart", "vend", "vpgoff", "vshared", "vmayshare", "vwrite", "vdontcopy")


@dataclass(frozen=True)
class State:
    """The variables of one state. Arrays map a CPU/VMA/ENT to its field (Ivy's functions)."""

    # the device (struct dax_dev): spec Dev.alive / .dead and the global grace period State.gp
    alive: Term
    dead: Term
    gp: Term
    #: ghost: the current or last grace period began while the device was not alive
    gp_clean: Term
    #: ghost: a clean grace period has ended since the device was last made alive
    quiesced: Term
    # the admin thread: program and number of its protocol steps passed (Admin.prog, Admin.pc)
    prog: Term
    p: Term
    # CPUs (spec Cpu)
    pc: Term
    nest: Term
    pre: Term
    left: Term
    cvma: Term
    caddr: Term
    csize: Term
    cres: Term
    cphys: Term
    # vmas (spec Vma; file >= 0 is `used`)
    used: Term
    vstart: Term
    vend: Term
    vpgoff: Term
    vshared: Term
    vmayshare: Term
    vwrite: Term
    vdontcopy: Term
    # entries (spec Entry, a set: `live` marks the members)
    live: Term
    evma: Term
    eaddr: Term
    esize: Term
    ephys: Term

    @staticmethod
    def fresh(u: Universe, tag: str) -> State:
        B, N = z3.BoolSort(), z3.IntSort()
        kinds: dict[str, tuple[Term, Term] | Term] = {
            **dict.fromkeys(("alive", "dead", "gp", "gp_clean", "quiesced"), B),
            **dict.fromkeys(("prog", "p"), N),
            **dict.fromkeys(("pc", "nest", "left", "caddr", "csize", "cres", "cphys"), (u.cpu, N)),
            "pre": (u.cpu, B),
            "cvma": (u.cpu, u.vma),
            **dict.fromkeys(("used", "vshared", "vmayshare", "vwrite", "vdontcopy"), (u.vma, B)),
            **dict.fromkeys(("vstart", "vend", "vpgoff"), (u.vma, N)),
            "live": (u.ent, B),
            "evma": (u.ent, u.vma),
            **dict.fromkeys(("eaddr", "esize", "ephys"), (u.ent, N)),
        }
        made: dict[str, Term] = {}
        for name in (f.name for f in fields(State)):  # in field order: Z3 numbers terms as they are made
            kind = kinds[name]
            if not isinstance(kind, tuple):
                made[name] = z3.Const(f"{name}@{tag}", kind)
                continue
            elems = u._elems(kind[0])
            if elems is not None:
                made[name] = Vec(
                    elems, tuple(z3.Const(f"{name}.{i}@{tag}", kind[1]) for i in range(len(elems)))
                )
            else:
                made[name] = z3.Array(f"{name}@{tag}", kind[0], kind[1])
        return State(**made)

    def replace(self, **changes: Term) -> State:
        return State(**{f.name: changes.get(f.name, getattr(self, f.name)) for f in fields(self)})

    def equals(self, other: State) -> Term:
        return z3.And(*(same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))

    def flat(self) -> list[Term]:
        """Every term of the state in a fixed order (arrays whole, Vecs element by element)."""
        return [x for f in fields(self) for x in terms(getattr(self, f.name))]


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One action instance: its name, its parameters (fresh constants, or concrete elements when
    bounded), its guard, and its cases: (condition, next state), the conditions disjoint.

    ``formula`` is the step as one relation over (s, t) with whole-state frames; BMC instead builds
    explanatory frames from the cases (a variable changes only if an action that writes it fires)."""

    name: str
    params: tuple[tuple[str, Term], ...]
    guard: Term
    cases: tuple[tuple[Term, State], ...]
    post: State

    @cached_property
    def formula(self) -> Term:
        if len(self.cases) == 1 and z3.is_true(self.cases[0][0]):
            return z3.And(self.guard, self.post.equals(self.cases[0][1]))
        return z3.And(self.guard, z3.Or(*(z3.And(cond, self.post.equals(new)) for cond, new in self.cases)))


#: a CPU field by the name the actions use -> the State array holding it
CPU_FIELDS = {"vma": "cvma", "addr": "caddr", "size": "csize", "res": "cres", "phys": "cphys"}
CPU_FIELDS |= {k: k for k in ("pc", "nest", "pre", "left")}


@dataclass
class Protocol:
    """The transition system for one profile, one alignment and a device of ``n_ranges`` ranges."""

    profile: Profile
    u: Universe
    align: int
    first_fault: int | None  # the size the mm asks first; None: any of the three
    n_ranges: int = 1
    programs: tuple[str, ...] = ("remove",)
    users: bool = False  # mmap/munmap as actions (the unbounded proofs)
    #: a concrete device: its (start, size) ranges; None: any ranges (the unbounded proofs)
    spans: tuple[tuple[int, int], ...] | None = None
    #: a race configuration's vmas, fixed for the whole run (no mmap/munmap): in a bounded universe
    #: they are constants, so fault targets are enumerated and fault decisions computed in Python
    vma_layout: tuple[RigidVma, ...] | None = None
    ranges: tuple[G.RangeTerms, ...] = field(init=False)
    rigid: list[Term] = field(init=False)  # hypotheses on the ranges, true in every state
    range_vars: list[tuple[Term, Term]] = field(init=False)
    _keys: tuple[EntKey, ...] | None = field(init=False)
    _rows: dict[tuple[int, int, int, int], tuple[Term, Term, Term]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        spans, hyps = [], []
        if self.spans is not None and len(self.spans) != self.n_ranges:
            raise ValueError(f"spans: expected {self.n_ranges} ranges, got {len(self.spans)}")
        for i in range(self.n_ranges):
            if self.spans is not None:
                start, size = z3.IntVal(self.spans[i][0]), z3.IntVal(self.spans[i][1])
            else:
                start, size = z3.Int(f"range{i}.start"), z3.Int(f"range{i}.size")
            hyps += [start >= 0, *G.range_ok(start, size, self.align)]
            spans.append((start, size))
        self.range_vars = spans
        self.ranges = G.make_ranges(spans)
        self.rigid = hyps
        if self.vma_layout is not None and (
            self.users or self.u.vmas is None or len(self.vma_layout) != len(self.u.vmas)
        ):
            raise ValueError("vma_layout: one per vma of a bounded universe, and no mmap/munmap actions")
        self._keys = self.keys

    @property
    def fixed_vmas(self) -> bool:
        """The vma fields are constants (a bounded universe with a fixed layout)."""
        return self.vma_layout is not None and self.u.finite

    @property
    def keys(self) -> tuple[EntKey, ...] | None:
        """With constant vmas and ranges: the entry slots' keys (``entry_keys``), padded with NO_KEY
        to the universe's size; None when entries are free slots."""
        if not self.fixed_vmas or self.spans is None or self.vma_layout is None or self.u.ents is None:
            return None
        keys = entry_keys(self.profile, self.align, self.spans, self.vma_layout)
        if len(keys) > len(self.u.ents):
            raise ValueError(f"ents: {len(keys)} entries can exist, the universe has {len(self.u.ents)}")
        return keys + (NO_KEY,) * (len(self.u.ents) - len(keys))

    def state(self, tag: str) -> State:
        """A fresh state; with a fixed vma layout its vma fields are the layout's constants (nothing to
        frame, nothing to solve for)."""
        s = State.fresh(self.u, tag)
        if not self.fixed_vmas:
            return s
        assert self.vma_layout is not None and self.u.vmas is not None
        elems = self.u.vmas
        cols = list(zip(*self.vma_layout, strict=True))
        made: dict[str, Term] = {}
        for name, col in zip(VMA_FIELDS, cols, strict=True):
            made[name] = Vec(
                elems, tuple(z3.BoolVal(x) if isinstance(x, bool) else z3.IntVal(x) for x in col)
            )
        keys = self._keys
        if keys is not None and self.u.ents is not None:
            v, a, z, ph = zip(*keys, strict=True)
            made |= {
                "evma": Vec(self.u.ents, tuple(elems[i] for i in v)),
                "eaddr": Vec(self.u.ents, tuple(z3.IntVal(x) for x in a)),
                "esize": Vec(self.u.ents, tuple(z3.IntVal(x) for x in z)),
                "ephys": Vec(self.u.ents, tuple(z3.IntVal(x) for x in ph)),
            }
        return s.replace(**made)

    # ---------------------------------------------------------------- helpers over one state ----

    def covered(self, s: State, v: Term, addr: Term) -> Term:
        """spec fault.covered: an entry of v maps addr."""
        return self.u.exists(
            self.u.ent,
            lambda e: z3.And(s.live[e], s.evma[e] == v, s.eaddr[e] <= addr, addr < s.eaddr[e] + s.esize[e]),
            "e",
        )

    def faulting(self, s: State, v: Term) -> Term:
        """spec vma.faulting: a CPU is in the handler for v (or about to retry on it)."""
        return self.u.exists(
            self.u.cpu, lambda c: z3.And(s.cvma[c] == v, z3.Or(s.pc[c] != C_IDLE, s.cres[c] != R_NONE)), "c"
        )

    def flags(self, s: State, v: Term) -> G.VmaFlagsTerms:
        """spec vma.vma_flags: noreserve is never set on a vma."""
        return G.VmaFlagsTerms(s.vshared[v], s.vmayshare[v], s.vwrite[v], z3.BoolVal(False), s.vdontcopy[v])

    def vma_ok(self, s: State, v: Term) -> Term:
        return (
            G.check_vma_int(
                s.alive, self.flags(s, v), s.vstart[v], s.vend[v], self.align, self.profile.private_test
            )
            == 0
        )

    @staticmethod
    def vma_bounds(s: State, v: Term) -> list[Term]:
        """A vma is a non-empty range of the 64-bit address space at a non-negative file offset."""
        return [s.vstart[v] >= 0, s.vstart[v] < s.vend[v], s.vend[v] <= g.U64, s.vpgoff[v] >= 0]

    def entry_exact(self, s: State, v: Term, addr: Term, size: Term, phys: Term) -> Term:
        """spec invariants.entries_exact for one entry: align-sized, inside its vma, and mapping the
        device page pgoff_to_phys names (which lies inside one range)."""
        pgoff = s.vpgoff[v] + (addr - s.vstart[v]) / g.PAGE_SIZE
        found, want = G.pgoff_to_phys(self.ranges, pgoff, size)
        return z3.And(
            s.used[v], size == self.align, s.vstart[v] <= addr, addr + size <= s.vend[v], found, phys == want
        )

    def fault_targets(self, s: State, v: Term, name: str) -> list[tuple[Term, Term]]:
        """The addresses a new fault on v may hit, as (address, constraint): enumerated as spec
        fault.fault_targets does when the vma is a known constant, else one constrained variable."""
        if self.fixed_vmas and self.vma_layout is not None and self.u.vmas is not None:
            i = next((k for k, x in enumerate(self.u.vmas) if z3.eq(x, v)), None)
            if i is not None:
                used, start, end = self.vma_layout[i][:3]
                if not used:
                    return []
                base = start - start % self.align
                return [(z3.IntVal(max(a, start)), z3.BoolVal(True)) for a in range(base, end, self.align)]
        addr = z3.Int(name)
        return [(addr, self.fault_target(s, v, addr))]

    def huge_fault(self, s: State, v: Term, addr: Term, size: int, simplify: bool = True) -> G.FaultTerms:
        """geometry.dax_huge_fault for a fault of ``size`` at ``addr`` in vma v (simplified to a
        constant where the vma and the address are known)."""
        d = G.dax_huge_fault(
            size,
            addr,
            s.vstart[v],
            s.vend[v],
            s.vpgoff[v],
            self.align,
            self.ranges,
            self.vma_ok(s, v),
            self.profile.fault_rules,
        )
        return (
            G.FaultTerms(z3.simplify(d.result), z3.simplify(d.addr), z3.simplify(d.phys)) if simplify else d
        )

    def decision(self, s: State, c: Term) -> tuple[Term, Term, Term]:
        """(result, entry addr, entry phys) of CPU c's fault_check: geometry.dax_huge_fault at the
        CPU's size. With constant vmas, a table over (vma, target address, size) computed by Z3's
        simplifier from the same encoding, so the solver sees no arithmetic (a locked CPU's address is
        always a fault target: fault_lock sets it and nothing else changes it before the check)."""
        cv = s.cvma[c]
        if not (self.fixed_vmas and self.u.vmas is not None):
            decs = {size: self.huge_fault(s, cv, s.caddr[c], size, simplify=False) for size in g.FAULT_SIZES}

            def by_size(pick: Callable[[G.FaultTerms], Term]) -> Term:
                return z3.If(
                    s.csize[c] == g.PAGE_SIZE,
                    pick(decs[g.PAGE_SIZE]),
                    z3.If(s.csize[c] == g.PMD_SIZE, pick(decs[g.PMD_SIZE]), pick(decs[g.PUD_SIZE])),
                )

            return by_size(lambda d: d.result), by_size(lambda d: d.addr), by_size(lambda d: d.phys)
        known = z3.simplify(cv), z3.simplify(s.caddr[c]), z3.simplify(s.csize[c])
        if (
            z3.is_int_value(known[1])
            and z3.is_int_value(known[2])
            and any(z3.eq(known[0], x) for x in self.u.vmas)
        ):
            # one row: a fused step checks right after its lock, whose vma/address/size are concrete
            d = self.huge_fault(s, known[0], known[1], known[2].as_long())
            return d.result, d.addr, d.phys
        rows: list[tuple[Term, tuple[Term, Term, Term]]] = []
        for v in self.u.vmas:
            for addr, _ in self.fault_targets(s, v, "unused"):
                for size in g.FAULT_SIZES:
                    key = (s.alive.get_id(), v.get_id(), addr.as_long(), size)
                    if key not in self._rows:  # the row reads only alive and constants
                        d = self.huge_fault(s, v, addr, size)
                        self._rows[key] = (d.result, d.addr, d.phys)
                    rows.append((z3.And(cv == v, s.caddr[c] == addr, s.csize[c] == size), self._rows[key]))
        if not rows:
            return G.SIGBUS, z3.IntVal(0), z3.IntVal(0)
        out = list(rows[-1][1])
        for when, vals in rows[-2::-1]:
            out = [z3.If(when, x, y) for x, y in zip(vals, out, strict=True)]
        return out[0], out[1], out[2]

    def fault_target(self, s: State, v: Term, addr: Term) -> Term:
        """spec fault.fault_targets: the vma start, or an align boundary inside the vma."""
        return z3.And(
            s.vstart[v] < s.vend[v],
            z3.Or(addr == s.vstart[v], z3.And(addr % self.align == 0, s.vstart[v] < addr, addr < s.vend[v])),
        )

    # ------------------------------------------------------------------------------- actions ----

    def same_kind(self, s: State, a: Term, b: Term) -> Term:
        """CPUs a and b have the same record as the spec sees it (an idle CPU with no pending retry
        has no fault fields: spec fault_unlock resets them)."""
        base = z3.And(
            s.pc[a] == s.pc[b],
            s.nest[a] == s.nest[b],
            s.pre[a] == s.pre[b],
            s.left[a] == s.left[b],
            s.cres[a] == s.cres[b],
        )
        fault = z3.And(
            s.cvma[a] == s.cvma[b],
            s.caddr[a] == s.caddr[b],
            s.csize[a] == s.csize[b],
            s.cphys[a] == s.cphys[b],
        )
        return z3.And(base, z3.Or(z3.And(s.pc[a] == C_IDLE, s.cres[a] == R_NONE), fault))

    def first_of_kind(self, s: State, c: Term) -> Term:
        """spec system.movers: "only the first of each kind moves" (identical CPUs are
        interchangeable). In a bounded universe each CPU action is guarded by it: a symmetry
        reduction that keeps one of the k! interleavings of identical CPUs, as the explicit checker
        does; sound because every invariant treats CPUs alike. Nothing to add with a symbolic CPU."""
        cpus = self.u.cpus
        if cpus is None:
            return z3.BoolVal(True)
        i = next(k for k, x in enumerate(cpus) if z3.eq(x, c))
        return z3.And(*(z3.Not(self.same_kind(s, x, c)) for x in cpus[:i])) if i else z3.BoolVal(True)

    def free_slot(self, s: State, e: Term, c: Term) -> Term:
        """e may receive CPU c's new entry: not live, and, in a bounded universe, the slot whose key
        it is (fixed layout) or the lowest free slot (entries are a set, so pinning the slot order
        loses no state up to renaming)."""
        ents = self.u.ents
        if ents is None:
            return z3.Not(s.live[e])
        if self._keys is not None:
            return z3.And(
                z3.Not(s.live[e]),
                s.evma[e] == s.cvma[c],
                s.eaddr[e] == s.caddr[c],
                s.esize[e] == s.csize[c],
                s.ephys[e] == s.cphys[c],
            )
        i = next(k for k, x in enumerate(ents) if z3.eq(x, e))
        return z3.And(z3.Not(s.live[e]), *(s.live[x] for x in ents[:i]))

    def cpu_actions(self, s: State, t: State, tag: str) -> list[Action]:
        out: list[Action] = []
        for c in self.u.params(self.u.cpu, f"cpu@{tag}"):
            out += self._cpu_actions(s, t, tag, c)
        return out

    def _cpu(self, st: State, c: Term, **f: Term) -> State:
        """Store the given fields of CPU c."""
        return st.replace(
            **{CPU_FIELDS[k]: store(getattr(st, CPU_FIELDS[k]), c, val) for k, val in f.items()}
        )

    def _cpu_actions(
        self,
        s: State,
        t: State,
        tag: str,
        c: Term,
        kinds: tuple[str, ...] = ("lock", "check", "insert", "unlock"),
        first: bool = True,
    ) -> list[Action]:
        """CPU c's actions of the given kinds; ``first``: guarded by first_of_kind (a fused step's
        continuation is not: the CPU was chosen by the step's first action)."""
        mine = self.first_of_kind(s, c) if first else z3.BoolVal(True)
        out = self._lock_actions(s, t, tag, c, mine) if "lock" in kinds else []
        if "lock" in kinds or "retry" in kinds:
            out.append(self._retry_action(s, t, c, mine))
        if kinds == ("retry",):
            return out
        if "check" in kinds:
            out.append(self._check_action(s, t, c, mine))
        if "insert" in kinds:
            out += self._insert_actions(s, t, tag, c, mine)
        if "unlock" in kinds:
            out.append(self._unlock_action(s, t, c, mine))
        return out

    def _lock_actions(self, s: State, t: State, tag: str, c: Term, mine: Term) -> list[Action]:
        """fault_lock: a new fault at one of the vma's target addresses."""
        u, out = self.u, []
        sizes = g.FAULT_SIZES if self.first_fault is None else (self.first_fault,)
        for v in u.params(u.vma, f"vma@{tag}"):
            for first, first_ok in u.pick(f"size@{tag}", sizes):
                for addr, addr_ok in self.fault_targets(s, v, f"addr@{tag}"):
                    guard = z3.And(
                        mine,
                        s.pc[c] == C_IDLE,
                        s.cres[c] != R_FALLBACK,
                        s.left[c] > 0,
                        s.used[v],
                        addr_ok,
                        z3.Not(self.covered(s, v, addr)),
                        first_ok,
                    )
                    new = self._cpu(
                        s,
                        c,
                        pc=z3.IntVal(C_LOCKED),
                        nest=s.nest[c] + 1,
                        pre=z3.BoolVal(False),
                        vma=v,
                        addr=addr,
                        size=first,
                        res=z3.IntVal(R_NONE),
                        phys=z3.IntVal(0),
                    )
                    params = (("cpu", c), ("vma", v), ("addr", addr), ("size", first))
                    out.append(Action("fault_lock", params, guard, ((z3.BoolVal(True), new),), t))
        return out

    def _retry_action(self, s: State, t: State, c: Term, mine: Term) -> Action:
        """fault_lock again: the mm's retry one size down after FALLBACK (same vma and address)."""
        guard = z3.And(mine, s.pc[c] == C_IDLE, s.cres[c] == R_FALLBACK)
        new = self._cpu(
            s,
            c,
            pc=z3.IntVal(C_LOCKED),
            nest=s.nest[c] + 1,
            pre=z3.BoolVal(False),
            res=z3.IntVal(R_NONE),
            phys=z3.IntVal(0),
        )
        return Action("fault_lock", (("cpu", c),), guard, ((z3.BoolVal(True), new),), t)

    def _check_action(self, s: State, t: State, c: Term, mine: Term) -> Action:
        """fault_check: check_vma (alive first), negotiation, pgoff_to_phys: geometry.dax_huge_fault."""
        result, block, phys = self.decision(s, c)
        nopage = self._cpu(s, c, pc=z3.IntVal(C_CHECKED), res=z3.IntVal(R_NOPAGE), addr=block, phys=phys)
        res = z3.If(result == G.FALLBACK, z3.IntVal(R_FALLBACK), z3.IntVal(R_SIGBUS))
        ended = self._cpu(s, c, pc=z3.IntVal(C_DONE), res=res)
        cases = [(result == G.NOPAGE, nopage)]
        if self.profile.default_case_leaks_lock and not self.profile.fault_rules.pud_supported:
            # M20: "default: return VM_FAULT_FALLBACK;" inside the read lock: back to idle, no unlock
            leak = z3.And(result == G.FALLBACK, s.csize[c] == g.PUD_SIZE)
            leaked = self._cpu(
                s, c, pc=z3.IntVal(C_IDLE), res=z3.IntVal(R_FALLBACK), size=z3.IntVal(g.PMD_SIZE)
            )
            cases += [(leak, leaked), (z3.And(result != G.NOPAGE, z3.Not(leak)), ended)]
        else:
            cases.append((result != G.NOPAGE, ended))
        return Action("fault_check", (("cpu", c),), z3.And(mine, s.pc[c] == C_LOCKED), tuple(cases), t)

    def _insert_actions(self, s: State, t: State, tag: str, c: Term, mine: Term) -> list[Action]:
        """fault_insert: one entry of the fault size, unless one is there already (-EBUSY)."""
        cv, out = s.cvma[c], []
        done = self._cpu(s, c, pc=z3.IntVal(C_DONE))
        busy = self.covered(s, cv, s.caddr[c])
        for e in self.u.params(self.u.ent, f"ent@{tag}"):
            inserted = done.replace(live=store(s.live, e, z3.BoolVal(True)))
            if self._keys is None:  # a keyed slot holds its entry already (free_slot matched it)
                inserted = inserted.replace(
                    evma=store(s.evma, e, cv),
                    eaddr=store(s.eaddr, e, s.caddr[c]),
                    esize=store(s.esize, e, s.csize[c]),
                    ephys=store(s.ephys, e, s.cphys[c]),
                )
            cases = ((busy, done), (z3.And(z3.Not(busy), self.free_slot(s, e, c)), inserted))
            out.append(
                Action("fault_insert", (("cpu", c), ("ent", e)), z3.And(mine, s.pc[c] == C_CHECKED), cases, t)
            )
        return out

    def _unlock_action(self, s: State, t: State, c: Term, mine: Term) -> Action:
        """fault_unlock: read unlock; FALLBACK goes back to the mm for the next size down."""
        nest = s.nest[c] - 1
        pre = z3.And(s.pre[c], nest > 0)
        has_next = z3.And(s.cres[c] == R_FALLBACK, s.csize[c] != g.PAGE_SIZE)
        nxt = z3.If(s.csize[c] == g.PUD_SIZE, z3.IntVal(g.PMD_SIZE), z3.IntVal(g.PAGE_SIZE))
        idle = {"pc": z3.IntVal(C_IDLE), "nest": nest, "pre": pre, "phys": z3.IntVal(0)}
        retry = self._cpu(s, c, **idle, size=nxt, res=z3.IntVal(R_FALLBACK))
        final = self._cpu(
            s, c, **idle, left=s.left[c] - 1, addr=z3.IntVal(0), size=z3.IntVal(0), res=z3.IntVal(R_NONE)
        )
        cases = ((has_next, retry), (z3.Not(has_next), final))
        return Action("fault_unlock", (("cpu", c),), z3.And(mine, s.pc[c] == C_DONE), cases, t)

    # ------------------------------------------------------------------------- fused steps ----

    def fused_cpu_actions(self, s: State, t: State, tag: str) -> list[Action]:
        """The CPU steps of model/reduction.py (Lipton movers): a lock runs on through its check; a
        check that ends the fault (or an insert) runs on through the unlock; after an unlock with
        FALLBACK and no lock left held, the mm's retry one size down (lock and check) follows. Each
        fused action is the composition of the actions above, case by case, so nothing about the
        protocol is restated; the justification is the reduction's (model/reduction.py, checked by
        tests/model), and tests/proofs/test_protocol_agreement.py compares this relation with the
        reduced spec successors. BMC unrolls it: one depth per step the explicit checker takes."""
        out: list[Action] = []
        for c in self.u.params(self.u.cpu, f"cpu@{tag}"):
            for a in self._cpu_actions(s, t, tag, c, ("lock", "insert")):
                cases = [x for cond, new in a.cases for x in self._then(t, tag, c, cond, new, a.name)]
                out.append(Action(a.name, a.params, a.guard, tuple(cases), t))
        return out

    def _then(self, t: State, tag: str, c: Term, cond: Term, s: State, last: str) -> list[tuple[Term, State]]:
        """The cases of running CPU c's fused follow-up steps from s (reached under cond)."""
        pc = z3.simplify(s.pc[c])
        if not z3.is_int_value(pc):
            raise ValueError(f"fused step: CPU pc not concrete after {last}: {pc}")
        step = {C_LOCKED: "check", C_DONE: "unlock"}.get(pc.as_long())
        if step is None and last == "fault_unlock" and z3.is_true(z3.simplify(s.cres[c] == R_FALLBACK)):
            step = "retry"  # the mm retries one size down if no lock is left held
            free = z3.simplify(s.nest[c] == 0)
            out = [] if z3.is_true(free) else [(z3.And(cond, z3.Not(free)), s)]
            cond = z3.And(cond, free)
        elif step is None:
            return [(cond, s)]
        else:
            out = []
        (a,) = self._cpu_actions(s, t, tag, c, (step,), first=False)
        for g2, new in a.cases:
            here = z3.simplify(z3.And(a.guard, g2))  # cond was simplified already: not again
            if not z3.is_false(here):
                out += self._then(t, tag, c, here if z3.is_true(cond) else z3.And(cond, here), new, a.name)
        return out

    # ----------------------------------------------------------------------------- admin ----

    def program(self, name: str) -> tuple[tuple[str, bool], ...]:
        """The profile's program as (step, completes the kill), from spec/profiles.py."""
        steps: tuple[str, ...] = getattr(self.profile, name)
        return tuple((st.rstrip("!"), st.endswith("!")) for st in steps)

    def protocol_steps(self, name: str) -> list[tuple[str, bool, bool, bool]]:
        """(step, kill marker, is the program's first step, is its last step) for the kept steps."""
        prog = self.program(name)
        return [
            (st, kill, i == 0, i == len(prog) - 1)
            for i, (st, kill) in enumerate(prog)
            if st in PROTOCOL_STEPS
        ]

    def skip_cond(self, s: State, step: str) -> Term:
        """When spec/admin.py returns SKIP for the step (the device exists and was created)."""
        cycles = self.profile.bind_cycles
        if step == "clear_alive":  # modern: not bound and not alive (bound == alive here)
            return z3.And(z3.BoolVal(cycles), z3.Not(s.alive))
        if step in ("synchronize_start", "unmap_mapping_range"):
            return z3.And(z3.BoolVal(cycles), s.dead)
        if step == "synchronize_wait":
            return z3.Not(s.gp)
        return z3.BoolVal(False)

    def step_effect(self, s: State, step: str, kill: bool) -> tuple[Term, State]:
        """(guard, next state) of one protocol step, as in spec/admin.py."""
        u = self.u
        guard: Term = z3.BoolVal(True)
        if step == "clear_alive":  # kill_dax: alive = false
            t = s.replace(alive=z3.BoolVal(False))
        elif step == "synchronize_start":  # readers inside a section now are waited for
            t = s.replace(
                gp=z3.BoolVal(True),
                gp_clean=z3.Not(s.alive),
                pre=tabulate(u, u.cpu, lambda c: z3.Or(s.pre[c], s.nest[c] > 0), "c!pre"),
            )
        elif step == "synchronize_wait":  # blocked while a pre-existing reader is inside
            guard = u.forall(u.cpu, lambda c: z3.Not(s.pre[c]), "c")
            t = s.replace(gp=z3.BoolVal(False), quiesced=z3.Or(s.quiesced, s.gp_clean))
        elif step == "unmap_mapping_range":  # every entry of every vma of the device
            t = s.replace(live=constant(u, u.ent, z3.BoolVal(False)))
        elif step == "run_dax":  # alive again; old mappings fault through it
            t = s.replace(
                alive=z3.BoolVal(True),
                dead=z3.BoolVal(False),
                gp_clean=z3.BoolVal(False),
                quiesced=z3.BoolVal(False),
            )
        else:
            raise ValueError(step)
        if kill:
            t = t.replace(dead=z3.BoolVal(True))
        return guard, t

    @staticmethod
    def _ended(s: State, done_code: int) -> State:
        """The program is over: the admin is idle (or, after remove, gone) at position 0."""
        return s.replace(prog=z3.IntVal(done_code), p=z3.IntVal(0))

    def admin_actions(self, s: State, t: State) -> list[Action]:
        out: list[Action] = []
        for name in self.programs:
            code = PROG_CODES[name]
            kept = self.protocol_steps(name)
            done_code = P_GONE if name == "remove" else P_IDLE
            # start: the spec runs the program's first step with the start
            if name == "remove":
                can_start = s.prog == P_IDLE
            elif name == "unbind":
                can_start = z3.And(s.prog == P_IDLE, s.alive)
            else:
                can_start = z3.And(s.prog == P_IDLE, z3.Not(s.alive))
            started = s.replace(prog=z3.IntVal(code), p=z3.IntVal(0))
            if kept and kept[0][2]:
                st, kill, _, last = kept[0]
                out.append(self._admin_step(t, name, st, kill, last, can_start, started, 0, done_code))
            else:
                out.append(Action(f"admin:{name}:start", (), can_start, ((z3.BoolVal(True), started),), t))
            for i, (st, kill, first, last) in enumerate(kept):
                if i > 0 or not first:
                    at = z3.And(s.prog == code, s.p == i)
                    out.append(self._admin_step(t, name, st, kill, last, at, s, i, done_code))
            if not (kept and kept[-1][3]):
                # the program's last (non-protocol) step ends it: forgotten detail, so allowed any time
                # after the last kept step (an over-approximation; sound for invariants)
                at = z3.And(s.prog == code, s.p == len(kept))
                out.append(
                    Action(f"admin:{name}:end", (), at, ((z3.BoolVal(True), self._ended(s, done_code)),), t)
                )
        return out

    def _admin_step(
        self, t: State, name: str, st: str, kill: bool, last: bool, guard: Term, s: State, i: int, done: int
    ) -> Action:
        """Kept step i of program ``name`` from s: it runs, or the spec skips it as inapplicable; after
        the last one the program ends (``done``: the admin's code then)."""
        g_run, run = self.step_effect(s, st, kill)
        g_skip = self.skip_cond(s, st)
        after, skipped = run.replace(p=z3.IntVal(i + 1)), s.replace(p=z3.IntVal(i + 1))
        if last:
            after, skipped = self._ended(after, done), self._ended(skipped, done)
        cases = ((z3.And(z3.Not(g_skip), g_run), after), (g_skip, skipped))
        return Action(f"admin:{name}:{st}", (), guard, cases, t)

    # ----------------------------------------------------------------------------- users ----

    def user_actions(self, s: State, t: State, tag: str) -> list[Action]:
        """mmap (dax_get_unmapped_area and check_vma: any vma check_vma accepts on a live device),
        munmap of a whole vma (waits for faults on it: mmap_lock), and munmap of part of a vma
        (``partial_munmap_actions``)."""
        u = self.u
        out: list[Action] = []
        for v in u.params(u.vma, f"vma@{tag}"):
            out.append(self._mmap_action(s, t, tag, v))

            def kept(e: Term, v: Term = v) -> Term:
                return z3.And(s.live[e], s.evma[e] != v)

            gone = s.replace(
                used=store(s.used, v, z3.BoolVal(False)), live=tabulate(u, u.ent, kept, "e!munmap")
            )
            munmap = z3.And(s.used[v], z3.Not(self.faulting(s, v)))
            out.append(Action("munmap", (("vma", v),), munmap, ((z3.BoolVal(True), gone),), t))
            out += self.partial_munmap_actions(s, t, tag, v)
        return out

    def _mmap_action(self, s: State, t: State, tag: str, v: Term) -> Action:
        """mmap into the unused vma slot v: any shape check_vma accepts."""
        start, end, pgoff = z3.Int(f"start@{tag}"), z3.Int(f"end@{tag}"), z3.Int(f"pgoff@{tag}")
        shared, mayshare, write = z3.Bools(f"shared@{tag} mayshare@{tag} write@{tag}")
        new = s.replace(
            used=store(s.used, v, z3.BoolVal(True)),
            vstart=store(s.vstart, v, start),
            vend=store(s.vend, v, end),
            vpgoff=store(s.vpgoff, v, pgoff),
            vshared=store(s.vshared, v, shared),
            vmayshare=store(s.vmayshare, v, mayshare),
            vwrite=store(s.vwrite, v, write),
            vdontcopy=store(s.vdontcopy, v, z3.BoolVal(False)),
        )
        flags = G.VmaFlagsTerms(shared, mayshare, write, z3.BoolVal(False), z3.BoolVal(False))
        accepted = G.check_vma_int(s.alive, flags, start, end, self.align, self.profile.private_test) == 0
        mmap = z3.And(z3.Not(s.used[v]), start >= 0, start < end, end <= g.U64, pgoff >= 0, accepted)
        params = (("vma", v), ("start", start), ("end", end), ("pgoff", pgoff))
        return Action("mmap", params, mmap, ((z3.BoolVal(True), new),), t)

    def may_split(self, cut: Term) -> Term:
        """spec mm.may_split: vm_ops->may_split (dev_dax_may_split, M8 / 9702cffdbf21, 4.15) refuses
        a cut that is not a multiple of the alignment: "if (!IS_ALIGNED(addr, dev_dax->align)) return
        -EINVAL". Profiles without it (v4.7, ``has_split`` False) let __split_vma cut anywhere."""
        return z3.Or(z3.BoolVal(not self.profile.has_split), cut % self.align == 0)

    # Over 50 lines on purpose: 30 of them are the docstring, the argument for the three shapes and
    # for over-approximating the zapped entries; the code is 40 lines.
    def partial_munmap_actions(self, s: State, t: State, tag: str, v: Term) -> list[Action]:
        """munmap(2) of part of vma v: the removed range [lo, hi) is page-aligned (munmap's EINVAL on
        an unaligned address, its length rounded up: spec mm.check_range) and lies inside v, but is not
        all of it. Every cut strictly inside v goes through __split_vma, which asks vm_ops->may_split
        (``may_split``); a refused cut is munmap's EINVAL with nothing changed (a stutter, so no action).
        Like a whole munmap it takes mmap_lock for write, so it waits for the faults on v.

        Three shapes, as in spec/mm.py change(c, s, v, lo, hi, None), of which spec/vma.py do_munmap's
        "tail" (cut = end - align) and "misaligned" (cut = start + PAGE) parts are instances:

        * munmap_head: [vstart, hi) goes; v keeps [hi, vend) and its vm_pgoff advances by
          (hi - vstart) / PAGE (__split_vma with new_below, vma_adjust of the old vma's start), so every
          kept entry still maps what pgoff_to_phys names;
        * munmap_tail: [lo, vend) goes; v keeps [vstart, lo), pgoff unchanged;
        * munmap_punch: a hole [lo, hi) strictly inside (two __split_vma calls): v keeps the upper part
          [hi, vend) exactly as after munmap_head, and an unused vma slot w becomes the lower part
          [vstart, lo) with v's flags and pgoff; v's entries there become w's. The kernel keeps the
          lower part in the old struct; which part keeps the name is naming only (entries belong to
          addresses of the mm, not to a vma struct), and this way every moved entry keeps its pgoff
          arithmetic as it was, which keeps the induction query easy for the solver.

        Entries: an entry of v that overlaps the removed range dies (unmap_region), including a huge
        entry a cut crosses, which is zapped whole (spec/mm.py: split_huge_pmd on a devmap pmd just
        clears it; vma_adjust_trans_huge splits only the pmd at the cut); an entry wholly inside a kept
        part survives. Over-approximation: any other entry of v may die too (the fresh predicate
        ``zapped``; spec/vma.py do_munmap's "misaligned" part used to zap one align unit more than the
        kernel, and is exact now). Losing an entry is what MADV_DONTNEED does at any time and a later
        fault refills it, so the extra behaviours keep every invariant proof sound."""
        # Over 50 lines on purpose: the docstring is most of it, the kernel's three munmap shapes
        # stated next to the formulas that encode them.
        u = self.u
        lo, hi = z3.Int(f"lo@{tag}"), z3.Int(f"hi@{tag}")
        zapped = z3.Function(f"zapped@{tag}", u.ent, z3.BoolSort())
        vs, ve = s.vstart[v], s.vend[v]
        base = z3.And(
            s.used[v],
            z3.Not(self.faulting(s, v)),
            lo % g.PAGE_SIZE == 0,
            hi % g.PAGE_SIZE == 0,
            vs <= lo,
            lo < hi,
            hi <= ve,
        )

        def survivors(e: Term) -> Term:
            hit = z3.And(s.eaddr[e] < hi, s.eaddr[e] + s.esize[e] > lo)
            return z3.And(s.live[e], z3.Or(s.evma[e] != v, z3.And(z3.Not(hit), z3.Not(zapped(e)))))

        live = tabulate(u, u.ent, survivors, "e!split")
        moved = s.vpgoff[v] + (hi - vs) / g.PAGE_SIZE
        head = s.replace(live=live, vstart=store(s.vstart, v, hi), vpgoff=store(s.vpgoff, v, moved))
        tail = s.replace(live=live, vend=store(s.vend, v, lo))
        out = [
            Action(
                "munmap_head",
                (("vma", v), ("lo", lo), ("hi", hi)),
                z3.And(base, lo == vs, hi < ve, self.may_split(hi)),
                ((z3.BoolVal(True), head),),
                t,
            ),
            Action(
                "munmap_tail",
                (("vma", v), ("lo", lo), ("hi", hi)),
                z3.And(base, vs < lo, hi == ve, self.may_split(lo)),
                ((z3.BoolVal(True), tail),),
                t,
            ),
        ]
        for w in u.params(u.vma, f"vma2@{tag}"):
            if not z3.eq(w, v):
                out.append(self._punch_action(s, t, v, w, lo, hi, head, base))
        return out

    def _punch_action(
        self, s: State, t: State, v: Term, w: Term, lo: Term, hi: Term, head: State, base: Term
    ) -> Action:
        """munmap_punch (``partial_munmap_actions``): v keeps [hi, vend) as after munmap_head, the unused
        slot w becomes the lower part [vstart, lo) with v's flags and pgoff, and takes its entries."""

        def owner(e: Term) -> Term:
            return z3.If(z3.And(s.evma[e] == v, s.eaddr[e] < lo), w, s.evma[e])

        vs, ve = s.vstart[v], s.vend[v]
        two = head.replace(
            used=store(s.used, w, z3.BoolVal(True)),
            vstart=store(head.vstart, w, vs),
            vend=store(s.vend, w, lo),
            vpgoff=store(head.vpgoff, w, s.vpgoff[v]),
            vshared=store(s.vshared, w, s.vshared[v]),
            vmayshare=store(s.vmayshare, w, s.vmayshare[v]),
            vwrite=store(s.vwrite, w, s.vwrite[v]),
            vdontcopy=store(s.vdontcopy, w, s.vdontcopy[v]),
            evma=tabulate(self.u, self.u.ent, owner, "e!punch"),
        )
        punch = z3.And(
            base, vs < lo, hi < ve, z3.Not(s.used[w]), w != v, self.may_split(lo), self.may_split(hi)
        )
        params = (("vma", v), ("lo", lo), ("hi", hi), ("lower", w))
        return Action("munmap_punch", params, punch, ((z3.BoolVal(True), two),), t)

    # ---------------------------------------------------------------------------- system ----

    def actions(self, s: State, t: State, tag: str, fused: bool = False) -> list[Action]:
        """Every action between s and t; ``fused``: the CPU steps of the movers reduction."""
        cpu = self.fused_cpu_actions(s, t, tag) if fused else self.cpu_actions(s, t, tag)
        out = cpu + self.admin_actions(s, t)
        if self.users:
            out += self.user_actions(s, t, tag)
        return out

    def step(self, s: State, t: State, tag: str) -> Term:
        return z3.Or(*(a.formula for a in self.actions(s, t, tag)))

    def init(self, s: State) -> Term:
        """After probe (and, in a race configuration, the opens and mmaps of the race prefix): the
        device is alive, no grace period, the admin idle, CPUs idle, no entry; vmas (if any) are ones
        check_vma accepted."""
        u = self.u
        return z3.And(
            s.alive,
            z3.Not(s.dead),
            z3.Not(s.gp),
            z3.Not(s.gp_clean),
            z3.Not(s.quiesced),
            s.prog == P_IDLE,
            s.p == 0,
            u.forall(
                u.cpu,
                lambda c: z3.And(
                    s.pc[c] == C_IDLE, s.nest[c] == 0, z3.Not(s.pre[c]), s.cres[c] == R_NONE, s.left[c] >= 0
                ),
                "c",
            ),
            u.forall(u.ent, lambda e: z3.Not(s.live[e]), "e"),
            u.forall(
                u.vma,
                lambda v: z3.Implies(
                    s.used[v],
                    z3.And(self.vma_ok(s, v), *self.vma_bounds(s, v)),
                ),
                "v",
            ),
        )


def programs_for(profile: Profile, race: bool, binds: bool) -> tuple[str, ...]:
    """Which admin programs can run: a race configuration only removes; modern binds and unbinds."""
    if race or not profile.bind_cycles or not binds:
        return ("remove",)
    return ("remove", "unbind", "bind")


def names(seq: Sequence[Action]) -> list[str]:
    return [a.name for a in seq]
