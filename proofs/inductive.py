"""Unbounded proofs: the protocol's safety invariants are inductive for any number of CPUs, vmas and
entries (Init => Inv, Inv /\\ Step => Inv'), with each strengthening invariant named and explained.

The spec's invariants (spec/invariants.py) proved here, read on the protocol's state:

* ``lock_balanced``: a CPU outside the fault handler holds no read lock (M20);
* ``no_entry_after_kill``: once the kill completed, the device has no entry
  (docs/semantics.md#teardown, point 4);
* ``entries_exact``: every entry is align-sized, inside its vma, and maps the page pgoff_to_phys names;
* ``vmas_aligned``, ``vmas_shared``: what check_vma promises of every vma (M1, M8);
* ``no_map_of_dead_device`` (a step property): no entry is installed into a killed device.

They are not inductive alone; the strengthening (Ivy's "auxiliary invariants") says why the teardown
order works: a CPU that passed check_vma while alive is inside its read section until it unlocks, the
grace period started after ``alive = false`` waits for exactly those CPUs, so after it no CPU can be
about to insert, and ``unmap_mapping_range`` then removes the last entry for good. The admin's
position in its program says which of these facts already hold; those facts are computed from the
profile's program (``position_facts``), so a variant that reorders the teardown gets the facts its
order really establishes, and the proof fails with a counterexample to induction.

A failed check prints a counterexample to induction: the state before (satisfying every invariant),
the step with its parameters, and what changed in the state after.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import z3

from devdax.proofs.engine import (
    Act,
    Inv,
    System,
    check_inductive,
    check_reaches,
    invariant_obligations,
    reader,
    render_cti,
    solver_for,
)
from devdax.proofs.protocol import (
    P_GONE,
    P_IDLE,
    PROG_CODES,
    PROG_NAMES,
    Protocol,
    State,
    Universe,
    programs_for,
)
from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.proofs.smt import Term
from devdax.spec import geometry as g
from devdax.spec import state as ST
from devdax.spec.profiles import Profile
from devdax.spec.state import C_CHECKED, C_DONE, C_IDLE, C_LOCKED, R_FALLBACK, R_NONE, R_NOPAGE, R_SIGBUS

# facts the admin's program establishes, by name
NOT_ALIVE, CLEAN, GP_ON, QUIESCED, DEAD = "not_alive", "clean_gp", "gp_on", "quiesced", "dead"


def position_facts(pr: Protocol, name: str) -> list[frozenset[str]]:
    """What holds once the first i protocol steps of the program have run (or been skipped).

    clear_alive: the device is not alive. synchronize_start: a grace period is on (or the device is
    already dead: the step was skipped), clean if the device was not alive. synchronize_wait after a
    clean start: the device is quiesced. A kill marker on a step that really runs (a skipped step sets
    nothing), after quiescence: dead. run_dax forgets everything.
    """
    facts: set[str] = set()
    out = [frozenset(facts)]
    for step, kill, _first, _last in pr.protocol_steps(name):
        if step == "clear_alive":
            facts.add(NOT_ALIVE)
        elif step == "synchronize_start":
            facts.add(GP_ON)
            if NOT_ALIVE in facts or DEAD in facts:
                facts.add(CLEAN)
            else:
                facts.discard(CLEAN)
        elif step == "synchronize_wait":
            runs = GP_ON in facts  # else it may be skipped (no grace period to wait for)
            facts.discard(GP_ON)
            if CLEAN in facts:
                facts.add(QUIESCED)
        elif step == "run_dax":
            facts.clear()
        if step != "synchronize_wait":
            runs = step != "clear_alive"  # the other steps skip only once the device is dead
        if kill and QUIESCED in facts and runs:
            facts.add(DEAD)
        out.append(frozenset(facts))
    return out


def fact_formula(s: State, fact: str) -> Term:
    return {
        NOT_ALIVE: z3.Not(s.alive),
        CLEAN: z3.Or(s.gp_clean, s.dead),
        GP_ON: z3.Or(s.gp, s.dead),
        QUIESCED: s.quiesced,
        DEAD: s.dead,
    }[fact]


def _all_cpus(pr: Protocol, body: Callable[[Term], Term]) -> Term:
    return pr.u.forall(pr.u.cpu, body, "c")


#: each ``fn(protocol, state)``; kind "spec": from spec/invariants.py, else a strengthening
INVARIANTS: list[Inv[State]] = [
    Inv(
        "lock_balanced",
        "a CPU that is not inside the fault handler holds no read lock",
        lambda pr, s: _all_cpus(pr, lambda c: z3.Implies(s.pc[c] == C_IDLE, s.nest[c] == 0)),
        kind="spec",
    ),
    Inv(
        "no_entry_after_kill",
        "once the kill completed, no entry of the device exists",
        lambda pr, s: z3.Implies(s.dead, pr.u.forall(pr.u.ent, lambda e: z3.Not(s.live[e]), "e")),
        kind="spec",
    ),
    Inv(
        "entries_exact",
        "every entry is align-sized, inside its vma, and maps the page pgoff_to_phys names",
        lambda pr, s: pr.u.forall(
            pr.u.ent,
            lambda e: z3.Implies(s.live[e], pr.entry_exact(s, s.evma[e], s.eaddr[e], s.esize[e], s.ephys[e])),
            "e",
        ),
        kind="spec",
    ),
    Inv(
        "vmas_aligned",
        "every vma is non-empty, inside the address space, and starts and ends on a multiple of align",
        lambda pr, s: pr.u.forall(
            pr.u.vma,
            lambda v: z3.Implies(
                s.used[v],
                z3.And(s.vstart[v] % pr.align == 0, s.vend[v] % pr.align == 0, *pr.vma_bounds(s, v)),
            ),
            "v",
        ),
        kind="spec",
    ),
    Inv(
        "vmas_shared",
        "every vma is a shared mapping (VM_MAYSHARE)",
        lambda pr, s: pr.u.forall(pr.u.vma, lambda v: z3.Implies(s.used[v], s.vmayshare[v]), "v"),
        kind="spec",
    ),
    Inv(
        "handler_holds_lock",
        "a CPU inside the handler holds exactly its one read lock (so unlock returns it to zero)",
        lambda pr, s: _all_cpus(pr, lambda c: z3.Implies(s.pc[c] != C_IDLE, s.nest[c] == 1)),
    ),
    Inv(
        "cpu_well_formed",
        "each handler step has the result it can have; a CPU in or retrying a fault has a real "
        "size and a mapped vma (munmap waits for it: mmap_lock)",
        lambda pr, s: _all_cpus(
            pr,
            lambda c: z3.And(
                z3.Or(*(s.pc[c] == x for x in (C_IDLE, C_LOCKED, C_CHECKED, C_DONE))),
                z3.Implies(s.pc[c] == C_IDLE, z3.Or(s.cres[c] == R_NONE, s.cres[c] == R_FALLBACK)),
                z3.Implies(s.pc[c] == C_LOCKED, s.cres[c] == R_NONE),
                z3.Implies(s.pc[c] == C_CHECKED, s.cres[c] == R_NOPAGE),
                z3.Implies(
                    s.pc[c] == C_DONE, z3.Or(*(s.cres[c] == r for r in (R_NOPAGE, R_FALLBACK, R_SIGBUS)))
                ),
                z3.Implies(
                    z3.Or(s.pc[c] != C_IDLE, s.cres[c] != R_NONE),
                    z3.And(s.used[s.cvma[c]], z3.Or(*(s.csize[c] == size for size in g.FAULT_SIZES))),
                ),
                # the faulting address lies in the vma until check replaces it by the entry's block
                z3.Implies(
                    z3.Or(s.pc[c] == C_LOCKED, s.cres[c] == R_FALLBACK, s.cres[c] == R_SIGBUS),
                    z3.And(s.vstart[s.cvma[c]] <= s.caddr[c], s.caddr[c] < s.vend[s.cvma[c]]),
                ),
                # a fault in progress has not been counted yet (the final unlock counts it)
                s.left[c] >= z3.If(z3.Or(s.pc[c] != C_IDLE, s.cres[c] != R_NONE), 1, 0),
            ),
        ),
    ),
    Inv(
        "pre_gp_readers",
        "a CPU the grace period waits for is inside a read section of the current grace period",
        lambda pr, s: _all_cpus(pr, lambda c: z3.Implies(s.pre[c], z3.And(s.gp, s.nest[c] >= 1))),
    ),
    Inv(
        "checked_waited_for",
        "a CPU about to insert saw alive == true, so a grace period started after alive = false "
        "waits for it (synchronize_start marked every CPU inside a section)",
        lambda pr, s: _all_cpus(
            pr, lambda c: z3.Implies(z3.And(s.pc[c] == C_CHECKED, s.gp, s.gp_clean), s.pre[c])
        ),
    ),
    Inv(
        "clean_gp_not_alive",
        "a clean grace period means the device is not alive (only "
        "run_dax makes it alive, and it forgets the grace period)",
        lambda pr, s: z3.Implies(s.gp_clean, z3.Not(s.alive)),
    ),
    Inv(
        "waited_gp_quiesced",
        "a clean grace period that has ended quiesced the device",
        lambda pr, s: z3.Implies(z3.And(s.gp_clean, z3.Not(s.gp)), s.quiesced),
    ),
    Inv(
        "quiesced_no_inserter",
        "after a clean grace period no CPU is about to insert, and none can get there (not alive)",
        lambda pr, s: z3.Implies(
            s.quiesced, z3.And(z3.Not(s.alive), _all_cpus(pr, lambda c: s.pc[c] != C_CHECKED))
        ),
    ),
    Inv(
        "dead_quiesced",
        "the kill completes only after the device was quiesced",
        lambda pr, s: z3.Implies(s.dead, s.quiesced),
    ),
    Inv(
        "checked_exact",
        "the entry a CPU is about to insert is already exact",
        lambda pr, s: _all_cpus(
            pr,
            lambda c: z3.Implies(
                s.pc[c] == C_CHECKED, pr.entry_exact(s, s.cvma[c], s.caddr[c], s.csize[c], s.cphys[c])
            ),
        ),
    ),
    Inv(
        "admin_position",
        "where the admin is in its program says which teardown facts hold (position_facts)",
        lambda pr, s: admin_position(pr, s),
    ),
]


def admin_position(pr: Protocol, s: State) -> Term:
    parts = [z3.Or(*(s.prog == code for code in (P_IDLE, P_GONE, *(PROG_CODES[n] for n in pr.programs))))]
    parts.append(z3.Implies(z3.Or(s.prog == P_IDLE, s.prog == P_GONE), s.p == 0))
    for name in pr.programs:
        code = PROG_CODES[name]
        facts = position_facts(pr, name)
        parts.append(z3.Implies(s.prog == code, z3.And(s.p >= 0, s.p <= len(facts) - 1)))
        for i, fs in enumerate(facts):
            if fs:
                parts.append(
                    z3.Implies(
                        z3.And(s.prog == code, s.p == i), z3.And(*(fact_formula(s, f) for f in sorted(fs)))
                    )
                )
        if name == "remove" and facts[-1]:
            gone = z3.And(*(fact_formula(s, f) for f in sorted(facts[-1])))
            parts.append(z3.Implies(s.prog == P_GONE, gone))
    return z3.And(*parts)


# --------------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------------


def protocol_of(profile: Profile, align: int, u: Universe) -> Protocol:
    """One proof instance: the profile, one alignment, a device of two ranges, every first fault
    size, users that mmap and munmap, bind cycles where the profile has them."""
    programs = programs_for(profile, race=False, binds=True)
    return Protocol(profile, u, align, None, n_ranges=2, programs=programs, users=True)


@dataclass
class Context:
    """One (profile, align): the protocol and the engine's system over it (proofs/engine.py)."""

    pr: Protocol
    system: System[State]


_CONTEXTS: dict[tuple[int, int], Context] = {}


def system_of(pr: Protocol) -> System[State]:
    """The protocol as the engine's transition system: its invariants, its ranges as rigid facts."""

    def step(s: State, t: State, tag: str) -> list[Act]:
        return [(a.name, a.formula, dict(a.params)) for a in pr.actions(s, t, tag)]

    def render(m: Term, states: Sequence[State], params: Sequence[dict[str, Term]]) -> list[list[str]]:
        acting = frozenset(name_of(pr, m, v) for p in params for k, v in p.items() if k == "cpu")
        return [render_state(pr, m, s, acting) for s in states]

    return System(
        pr.state,
        pr.init,
        step,
        [i.bind(pr) for i in INVARIANTS],
        render,
        rigid=pr.rigid,
        value=lambda m, v: name_of(pr, m, v),
    )


def context(profile: Profile, align: int) -> Context:
    key = (id(profile), align)
    if key not in _CONTEXTS:
        pr = protocol_of(profile, align, Universe.unbounded())
        _CONTEXTS[key] = Context(pr, system_of(pr))
    return _CONTEXTS[key]


def check_invariant(cx: Context, name: str, timeout: float, label: str = "") -> Verdict:
    """Init => inv, then for every action: (all invariants) /\\ action => inv'."""
    return check_inductive(cx.system, name, timeout, depth=0, label=label)


# --------------------------------------------------------------------------------------------------
# States, for people
# --------------------------------------------------------------------------------------------------


def _elements(m: Term, sort: Term, prefix: str) -> list[tuple[str, Term]]:
    elems = m.get_universe(sort) or []
    return [(f"{prefix}{i}", x) for i, x in enumerate(elems)]


def name_of(pr: Protocol, m: Term, term: Term) -> str:
    """cpu0, vma1, entry0 for the elements of the model's sorts; numbers in hex."""
    val = m.eval(term, model_completion=True)
    for sort, prefix in ((pr.u.cpu, "cpu"), (pr.u.vma, "vma"), (pr.u.ent, "entry")):
        for n, x in _elements(m, sort, prefix):
            if z3.eq(x, val):
                return n
    return f"{val.as_long():#x}" if z3.is_int_value(val) else str(val)


def render_state(pr: Protocol, m: Term, s: State, keep: frozenset[str] = frozenset()) -> list[str]:
    """The device's ranges, one line for the device and admin, one per CPU that is doing something (or
    named in ``keep``), one per used vma and per live entry."""

    ev, num, flag = reader(m)

    vmas = _elements(m, pr.u.vma, "vma")

    def vname(t: Term) -> str:
        val = ev(t)
        return next((n for n, x in vmas if z3.eq(x, val)), str(val))

    size_name = {**g.SIZE_NAMES, 0: "-"}
    ranges = ", ".join(f"[{ev(a)}, +{ev(b)})" for a, b in pr.range_vars)
    lines = [
        f"device ranges: {ranges}; align {g.ALIGN_NAMES[pr.align]}",
        f"device: alive={flag(s.alive)} dead={flag(s.dead)} gp={flag(s.gp)} "
        f"(ghost gp_clean={flag(s.gp_clean)} quiesced={flag(s.quiesced)}); "
        f"admin: {PROG_NAMES.get(num(s.prog), num(s.prog))} after {num(s.p)} protocol step(s)",
    ]
    quiet = 0
    for name, x in _elements(m, pr.u.cpu, "cpu"):
        pc, res, nest, pre = num(s.pc[x]), num(s.cres[x]), num(s.nest[x]), flag(s.pre[x])
        if (pc, res, nest, pre) == (C_IDLE, R_NONE, 0, False) and name not in keep:
            quiet += 1
            continue
        line = f"{name}: {ST.CPU_PC_NAMES.get(pc, pc)} nest={nest} pre_gp={pre}"
        if pc != C_IDLE or res != R_NONE:
            size = size_name.get(num(s.csize[x]), "?")
            line += (
                f" {vname(s.cvma[x])} addr={num(s.caddr[x]):#x} size={size}"
                f" result={ST.RESULT_NAMES.get(res, res)} phys={num(s.cphys[x]):#x}"
            )
        lines.append(line)
    if quiet:
        lines.append(f"({quiet} other CPU(s) idle, holding nothing)")
    for name, x in vmas:
        if flag(s.used[x]):
            lines.append(
                f"{name}: [{num(s.vstart[x]):#x}, {num(s.vend[x]):#x}) pgoff={num(s.vpgoff[x]):#x}"
                f" mayshare={flag(s.vmayshare[x])}"
            )
    for name, x in _elements(m, pr.u.ent, "entry"):
        if flag(s.live[x]):
            lines.append(
                f"{name}: {vname(s.evma[x])} {num(s.eaddr[x]):#x} +{num(s.esize[x]):#x} -> "
                f"{num(s.ephys[x]):#x}"
            )
    return lines


# --------------------------------------------------------------------------------------------------
# Obligations
# --------------------------------------------------------------------------------------------------

ALIGNS = g.FAULT_SIZES


def check_not_vacuous(profile: Profile, align: int, timeout: float) -> Verdict:
    """The invariants hold in an initial state that takes a step to another state where they hold
    again: were they contradictory, every induction check would pass for nothing. Asked in a small
    finite universe (2 CPUs, 2 vmas, 3 entries), where satisfiability is decidable and quick."""
    sys = system_of(protocol_of(profile, align, Universe.bounded(2, 2, 3)))

    def goal(states: Sequence[State]) -> Term:
        held = [i.fn(s) for i in sys.invariants for s in states]
        return z3.And(*held, z3.Not(states[0].equals(states[1])))

    return check_reaches(sys, [None], goal, timeout)


def check_no_sleep_in_rcu(profile: Profile, align: int, timeout: float) -> Verdict:
    """M5 (956a4cd2c957): the spec's step property no_sleep_in_rcu, on the protocol. A step that may
    sleep (spec/fault.sleeps_in_rcu: vmf_insert_* may allocate a page table) must not run inside a
    read section that cannot sleep (profile.read_lock is plain RCU). For each such step of the
    protocol, ask whether a state of the invariants lets it run with the inserting CPU inside its
    read section (nest >= 1): sat is the violation, shown as the state and the step."""
    from devdax.spec.config import Config
    from devdax.spec.ctx import Ctx
    from devdax.spec.fault import sleeps_in_rcu

    cx = context(profile, align)
    spec_ctx = Ctx.of(Config(profile=profile.name.split("+")[0]), profile)
    sys, fr = cx.system, cx.system.frame
    inserts = [a for a in fr.actions if a[0] == "fault_insert"]
    if not inserts:
        return Verdict(Status.UNKNOWN, counterexample="the protocol has no fault_insert step to check")
    deadline = time.monotonic() + timeout
    for act in inserts:
        name, formula, params = act
        if not sleeps_in_rcu(spec_ctx, name):
            continue
        solver = solver_for(max(0.001, deadline - time.monotonic()))
        solver.add(*sys.rigid, *fr.before.values(), formula, fr.pre.nest[params["cpu"]] >= 1)
        answer = solver.check()
        if answer == z3.sat:
            title = "a step that may sleep runs inside rcu_read_lock (nest >= 1)"
            cti = render_cti(sys, solver.model(), act, title, "every invariant holds")
            return Verdict(Status.VIOLATED, counterexample=cti)
        if answer == z3.unknown:
            return Verdict(
                Status.UNKNOWN, counterexample=f"{name}: solver unknown: {solver.reason_unknown()}"
            )
    return Verdict(Status.PROVED)


def check_aligned(profile: Profile, aligns: Sequence[int], name: str, timeout: float) -> Verdict:
    """The invariant ``name`` for each alignment in turn, sharing the budget; the first failure."""
    deadline = time.monotonic() + timeout
    for align in aligns:
        left = max(0.001, deadline - time.monotonic())
        v = check_invariant(context(profile, align), name, left, f"align {g.ALIGN_NAMES[align]}: ")
        if v.status is not Status.PROVED:
            return v
    return Verdict(Status.PROVED)


def inductive_obligations(profile: Profile, aligns: Sequence[int] = ALIGNS) -> list[Obligation]:
    """One obligation per invariant, each checked for every alignment, and the non-vacuity check."""
    out = [
        Obligation(
            "proto_not_vacuous",
            "the invariants hold in a reachable initial state and after a step",
            "proofs/inductive.py",
            partial(check_not_vacuous, profile, aligns[0]),
        ),
        Obligation(
            "proto_no_sleep_in_rcu",
            "step property: no step that may sleep (vmf_insert_* -> "
            "pte_alloc) runs inside a read section that cannot sleep (rcu_read_lock)",
            "spec/invariants.py no_sleep_in_rcu; M5 956a4cd2c957",
            partial(check_no_sleep_in_rcu, profile, aligns[0]),
        ),
    ]
    invariants = [replace(i, serves=i.name) for i in INVARIANTS]
    check = partial(check_aligned, profile, aligns)
    return out + invariant_obligations("proto_", "CPUs/vmas", "proofs/inductive.py", invariants, check)
