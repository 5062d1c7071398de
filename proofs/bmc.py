"""Bounded model checking of the protocol to depth k, with counterexamples replayed in the spec.

The protocol (proofs/protocol.py) is unrolled k steps from the abstraction of the configuration's
initial state, over finite sorts as large as the configuration (CPUs, vmas; one entry slot per entry
the fixed layout can get), and the spec's invariants are asked to fail at each depth. Z3 explores all
interleavings symbolically, one query per depth, so configurations whose state space the explicit
explorer cannot enumerate (more CPUs, more faults, more units) are checked to depth k.

What makes that scale (bench/RESULTS.md, "BMC"): the scalar encoding of protocol.py (one variable per
CPU/vma/entry field, one action instance per concrete CPU, the race's vmas and ranges as constants,
fault decisions as tables, first-of-kind CPU symmetry); explanatory frames (``Unrolling``: a variable
changes only if an action that writes it fires), built once and renamed per depth; the engine's one
incremental solver (proofs/engine.py shortest_run), the depth-d query (some invariant fails) pushed
and popped; and, by default, the fused CPU
steps of the movers reduction (model/reduction.py), so that a depth is one BFS level of
``devdax check`` and a variant is found at the depth of the explorer's shortest counterexample.
BMC is still exponential in the depth: it answers "no violation within k steps", which on a large
race is far less than a complete run (bench/RESULTS.md gives both numbers).

A trace found is not shown as Z3's model: it is *replayed in the spec* (``concretize``): each abstract
step is matched by a spec transition (a fused one for a fused trace), with spec steps the abstraction
does not see (cdev_del, puts) inserted where needed. The result is an ordinary spec trace, rendered by
model/render.py exactly as ``devdax check`` renders its counterexamples, with the pytest snippet that
replays it, and the broken invariant is re-checked by spec/invariants.py itself. An abstract trace the
spec cannot follow (the abstraction over-approximates only the end of an admin program) is reported as
such, never as a bug.

Only race configurations are supported (the protocol leaves open/mmap to the unbounded proofs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import z3

# What proofs take from model/, and only this: the movers reduction of the successor relation (BMC
# unrolls the same fused steps the checker explores) and the checker's trace records and renderer
# (a BMC counterexample is printed as `devdax check` prints one).
from devdax.model.checker import Step, Violation
from devdax.model.reduction import reduced_successors
from devdax.model.render import render_violation
from devdax.proofs.agreement import Obs, abstract, layout, observe, pin, protocol_for, universe_for

__all__ = [
    "AbstractTrace",
    "abstract",
    "bmc",
    "bmc_config",
    "bmc_obligation",
    "bmc_verdict",
    "concretize",
    "render_trace",
]
from devdax.proofs.engine import Act, Inv, shortest_run
from devdax.proofs.inductive import INVARIANTS, system_of
from devdax.proofs.protocol import Action, State
from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.proofs.smt import Term
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State as SpecState
from devdax.spec.system import Transition, init, successors

#: the spec invariants the protocol states (proofs/inductive.py, kind "spec")
SPEC_INVARIANTS = [i for i in INVARIANTS if i.kind == "spec"]


@dataclass
class AbstractTrace:
    steps: list[tuple[str, Obs]]  # (action name, state after), from the state after init
    start: Obs
    invariant: str
    fused: bool = False  # steps are the movers reduction's (model/reduction.py)


@dataclass
class Unrolling:
    """The transition relation between two unrolled states, with explanatory frames.

    Every (action instance, case) gets a number; ``sel`` (an Int) says which one fires. Firing case i
    implies its guard and the new value of every variable it writes; a variable keeps its value unless
    a case that writes it fires. A case "writes" a variable when its next-state term is not the very
    term of the state before (Z3's terms are hash-consed), so CPU c's actions frame nothing but CPU
    c's variables: the relation grows with the sum of the actions' writes, not with actions x state
    (``Action.formula`` repeats the whole state in every disjunct)."""

    names: list[str]
    sel: Term
    formulas: list[Term]

    @staticmethod
    def build(actions: list[Action], s: State, t: State, tag: str) -> Unrolling:
        cases = [(a, z3.And(a.guard, cond), new) for a in actions for cond, new in a.cases]
        sel = z3.Int(f"act@{tag}")
        before, after = s.flat(), t.flat()
        writers: list[list[int]] = [[] for _ in before]
        out = [sel >= 0, sel < len(cases)]
        for i, (_a, guard, new) in enumerate(cases):
            effect = []
            for j, (old, val) in enumerate(zip(before, new.flat(), strict=True)):
                if not z3.eq(old, val):
                    writers[j].append(i)
                    effect.append(after[j] == val)
            out.append(z3.Implies(sel == i, z3.And(guard, *effect)))
        for j, (old, nxt) in enumerate(zip(before, after, strict=True)):
            if not z3.eq(old, nxt):
                out.append(z3.Or(nxt == old, *(sel == i for i in writers[j])))
        return Unrolling([a.name for a, _, _ in cases], sel, out)

    def instance(self, s: State, t: State, template: tuple[State, State], tag: str) -> Unrolling:
        """The same relation between other states: the template's variables renamed (one C++
        substitution instead of rebuilding every action in Python at every depth). Only for a
        protocol whose actions have no parameter variables (bounded, fixed layout)."""
        pairs = [
            (x, y)
            for S, D in zip(template, (s, t), strict=True)
            for x, y in zip(S.flat(), D.flat(), strict=True)
            if not z3.eq(x, y)
        ]
        sel = z3.Int(f"act@{tag}")
        pairs.append((self.sel, sel))
        return Unrolling(self.names, sel, [z3.substitute(f, *pairs) for f in self.formulas])

    def fired(self, m: Term) -> str:
        i = m.eval(self.sel, model_completion=True).as_long()
        return self.names[i] if 0 <= i < len(self.names) else "?"


def bmc(
    c: Ctx, depth: int, timeout: float, invariants: list[Inv[State]] | None = None, fused: bool = True
) -> tuple[Status, AbstractTrace | None, str]:
    """(PROVED up to depth | VIOLATED with the shortest abstract trace | UNKNOWN, trace, note): the
    engine's shortest run (proofs/engine.py) of the protocol's system (proofs/inductive.py) over the
    configuration's bounded universe, from the abstraction of its initial state, some invariant
    failing at the end. ``fused`` (the default) unrolls the CPU steps of the movers reduction, as
    `devdax check` explores them: a depth is one of its BFS levels, a fault two or three steps."""
    invs = SPEC_INVARIANTS if invariants is None else invariants
    pr = protocol_for(c, universe_for(c))
    start = abstract(c, init(c))
    template: tuple[Unrolling, tuple[State, State]] | None = None
    if pr.fixed_vmas and depth > 0:
        tpl = (pr.state("S"), pr.state("T"))
        template = (Unrolling.build(pr.actions(*tpl, "T", fused=fused), *tpl, "T"), tpl)

    def unroll(s: State, t: State, tag: str) -> tuple[list[Term], Callable[[Term], Act]]:
        if template is not None:
            u = template[0].instance(s, t, template[1], tag)
        else:
            u = Unrolling.build(pr.actions(s, t, tag, fused=fused), s, t, tag)
        return u.formulas, lambda m: (u.fired(m), z3.BoolVal(True), {})

    sys = replace(
        system_of(pr),
        init=lambda s: z3.And(pr.init(s), pin(pr, s, start)),
        rigid=[*pr.rigid, *layout(pr, c)],
        unroll=unroll,
    )
    bad = [inv.bind(pr) for inv in invs]
    status, run, note = shortest_run(
        sys, lambda s: z3.Or(*(z3.Not(i.fn(s)) for i in bad)), depth, time.monotonic() + timeout
    )
    if run is None:
        return status, None, note
    m, last = run.model, run.states[-1]
    name = next(i.name for i in bad if z3.is_false(m.eval(i.fn(last), model_completion=True)))
    trace = [(step, observe(pr, m, st)) for step, st in zip(run.names, run.states[1:], strict=True)]
    return status, AbstractTrace(trace, observe(pr, m, run.states[0]), name, fused), ""


def concretize(c: Ctx, trace: AbstractTrace, stutters: int = 6) -> list[Transition] | None:
    """A spec trace whose abstraction is the abstract trace: for each abstract step, up to `stutters`
    spec steps invisible to the abstraction, then one whose abstraction is the step's state (spec
    steps, or the reduction's fused steps for a fused trace)."""
    nxt_states = reduced_successors if trace.fused else successors
    s = init(c)
    out: list[Transition] = []
    for _name, target in trace.steps:
        here = abstract(c, s)
        frontier: list[tuple[SpecState, list[Transition]]] = [(s, [])]
        found: list[Transition] | None = None
        for _ in range(stutters + 1):
            nxt: list[tuple[SpecState, list[Transition]]] = []
            for st, path in frontier:
                for tr in nxt_states(c, st):
                    o = abstract(c, tr.state)
                    if o == target:
                        found = [*path, tr]
                        break
                    if o == here and len(path) < stutters:
                        nxt.append((tr.state, [*path, tr]))
                if found:
                    break
            if found or not nxt:
                break
            frontier = nxt
        if found is None:
            return None
        out += found
        s = found[-1].state
    return out


def render_trace(cfg: Config, transitions: list[Transition], label: str, reduce: bool = False) -> str:
    """The spec trace as `devdax check` prints a counterexample (model/render.py), with the broken
    invariant as spec/invariants.py reports it on the last state or step."""
    from devdax.spec.invariants import INVARIANTS as SPEC

    c = Ctx.of(cfg)
    steps = [Step(t.action, t.args, t.outcome, t.state) for t in transitions]
    prev = init(c)
    for i, t in enumerate(transitions):
        for inv in SPEC.values():
            msg = None
            if inv.kind == "state" and inv.check is not None:
                msg = inv.check(c, t.state)
            elif inv.kind == "step" and inv.step is not None:
                msg = inv.step(c, prev, t)
            if msg is not None:
                v = Violation(inv, msg, steps[: i + 1])
                return render_violation(cfg, v, label, symmetry=False, reduce=reduce)
        prev = t.state
    return "the replayed spec trace breaks no spec invariant (the abstract violation is spurious)"


def bmc_verdict(cfg: Config, depth: int, timeout: float, label: str) -> Verdict:
    """BMC, then replay: VIOLATED with the rendered spec trace, or PROVED up to the depth."""
    c = Ctx.of(cfg)
    status, trace, note = bmc(c, depth, timeout)
    if status is Status.PROVED:
        return Verdict(Status.PROVED)
    if status is Status.UNKNOWN or trace is None:
        return Verdict(Status.UNKNOWN, counterexample=note)
    transitions = concretize(c, trace)
    if transitions is None:
        lines = [f"abstract trace breaking {trace.invariant} (the spec cannot follow it: spurious):"]
        lines += [f"  {i + 1}. {name}" for i, (name, _) in enumerate(trace.steps)]
        return Verdict(Status.UNKNOWN, counterexample="\n".join(lines))
    return Verdict(Status.VIOLATED, counterexample=render_trace(cfg, transitions, label, trace.fused))


def bmc_obligation(cfg: Config, depth: int, name: str = "bmc") -> Obligation:
    desc = cfg.describe()

    def goal(timeout: float) -> Verdict:
        return bmc_verdict(cfg, depth, timeout, name)

    return Obligation(
        name,
        f"no spec invariant breaks within {depth} steps ({desc})",
        "proofs/bmc.py over proofs/protocol.py",
        goal,
    )


def bmc_config(profile: str, variant: str | None, cpus: int = 1, faults: int = 1, units: int = 1) -> Config:
    """The race configuration BMC runs on, with the given populations: the variant's own race
    configuration when it has one, else a race with the variant's profile, alignment and first fault
    size; without a variant, the profile's race."""
    from devdax.spec.variants import get_variant

    if variant is not None:
        v = get_variant(variant)
        if v.config.race:
            return replace(
                v.config, profile=v.base.name, variant=v.name, cpus=cpus, faults=faults, units=units
            )
        return Config(
            profile=v.base.name,
            variant=v.name,
            race=True,
            cpus=cpus,
            faults=faults,
            units=units,
            files=1,
            vmas=1,
            align=v.config.align,
            first_fault=v.config.first_fault,
        )
    return Config(
        profile=profile, race=True, cpus=cpus, faults=faults, units=units, files=1, vmas=1, first_fault="pmd"
    )
