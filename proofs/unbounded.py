"""A small transition system over uninterpreted sorts, and the two checks every unbounded proof needs.

proofs/minor.py and proofs/refcount.py describe their objects (devices, files, vmas) as uninterpreted
sorts, so a proof holds for any number of them. This module gives both the same shape:

* a state is a dict of named Z3 terms (``Sys.fresh``), a step is a list of named actions, each a
  formula over the state before, the state after and the step's parameters;
* ``check_inductive``: Init => I, and (every invariant) /\\ step => I' for each action;
* ``find_trace``: when the induction fails, a bounded search from Init for a *reachable* violation
  (at most ``depth`` steps). A reachable violation is printed as a trace, the strongest evidence; an
  unreachable one as the counterexample to induction (two states and the step), which then says the
  strengthening is too weak, not that the kernel is wrong.

Each invariant is checked with a bounded search first when it is one of the spec's safety
invariants (``Inv.bmc_first``): a strengthening that does not hold could otherwise make a false
invariant look proved, relative to it. Verdicts are those of proofs/runner.py; UNKNOWN is never proved.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import z3

from devdax.proofs.runner import Status, Verdict
from devdax.proofs.smt import ARITH_SOLVER, Term

St = dict[str, Term]
#: an action: (before, after, tag) -> (formula, parameters to print as name -> term)
ActionFn = Callable[[St, St, str], tuple[Term, dict[str, Term]]]
Renderer = Callable[[Term, Sequence[St], Sequence[dict[str, Term]]], list[list[str]]]


@dataclass(frozen=True)
class Inv:
    name: str
    doc: str
    fn: Callable[[St], Term]
    #: the spec invariant (spec/invariants.py) this proves or serves as a strengthening of
    serves: str
    #: search for a reachable violation before the induction (the spec's own invariants)
    bmc_first: bool = False


@dataclass(frozen=True)
class Sys:
    #: state variable name -> sort builder: a Z3 sort, or (domain, range) for an array
    vars: dict[str, Term | tuple[Term, Term]]
    init: Callable[[St], Term]
    actions: dict[str, ActionFn]
    invariants: list[Inv]
    render: Renderer
    #: variables that never change (a configuration constant such as the reserved minor count)
    frozen: tuple[str, ...] = field(default=())
    #: ``tidy(s, k)``: s has at most k objects that matter and its numbers are small; a counterexample
    #: is searched under it for k = 1, 2, 3 first, so that it shows only what the violation needs
    tidy: Callable[[St, int], Term] | None = None

    def fresh(self, tag: str) -> St:
        out: St = {}
        for name, sort in self.vars.items():
            if isinstance(sort, tuple):
                out[name] = z3.Array(f"{name}@{tag}", sort[0], sort[1])
            else:
                out[name] = z3.Const(f"{name}@{tag}", sort)
        return out

    def invariant(self, name: str) -> Inv:
        for inv in self.invariants:
            if inv.name == name:
                return inv
        raise ValueError(f"invariant: unknown {name!r}")

    def step(self, s: St, t: St, tag: str) -> list[tuple[str, Term, dict[str, Term]]]:
        out = []
        for name, fn in self.actions.items():
            formula, params = fn(s, t, tag)
            keep = [s[v] == t[v] for v in self.frozen]
            out.append((name, z3.And(formula, *keep), params))
        return out


def unchanged(s: St, t: St, *but: str) -> Term:
    """Every variable keeps its value except those named (the frame condition of an action)."""
    return z3.And(*(t[k] == v for k, v in s.items() if k not in but))


def _solver(timeout: float) -> z3.Solver:
    solver = z3.Solver()
    solver.set("timeout", max(1, int(timeout * 1000)))
    solver.set("arith.solver", ARITH_SOLVER)
    return solver


def find_trace(sys: Sys, inv: Inv, depth: int, deadline: float) -> Verdict | None:
    """The shortest run of at most ``depth`` steps from Init to a state violating ``inv``, rendered as
    a trace; None when there is none within the depth (or the budget ran out before one was found)."""
    states = [sys.fresh("t0")]
    solver = _solver(deadline - time.monotonic())
    solver.add(sys.init(states[0]))
    steps: list[list[tuple[str, Term, dict[str, Term]]]] = []
    for k in range(depth + 1):
        if k > 0:
            states.append(sys.fresh(f"t{k}"))
            acts = sys.step(states[k - 1], states[k], f"s{k}")
            # one selector per action says which fired (a formula with a quantifier does not always
            # evaluate to a truth value in the model)
            picks = [(n, z3.Bool(f"fired:{n}@s{k}"), p) for n, _, p in acts]
            solver.add(*(z3.Implies(b, f) for (_, b, _), (_, f, _) in zip(picks, acts, strict=True)))
            solver.add(z3.Or(*(b for _, b, _ in picks)))
            steps.append(picks)
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        solver.set("timeout", max(1, int(left * 1000)))
        solver.push()
        solver.add(z3.Not(inv.fn(states[k])))
        r = solver.check()
        if r == z3.sat:
            m = _tidy_model(sys, solver, states[0]) or solver.model()
            names, params = [], []
            for acts in steps:
                fired = next((n, p) for n, f, p in acts if z3.is_true(m.eval(f, model_completion=True)))
                names.append(fired[0])
                params.append(fired[1])
            blocks = sys.render(m, states, params)
            lines = [f"reachable violation of {inv.name} in {k} step(s) from Init:", "state 0 (Init):"]
            lines += ["  " + ln for ln in blocks[0]]
            for i, name in enumerate(names):
                lines.append(f"step {i + 1}: {name}({_params(m, params[i])})")
                lines.append(f"state {i + 1}:")
                lines += ["  " + ln for ln in blocks[i + 1]]
            return Verdict(Status.VIOLATED, counterexample="\n".join(lines))
        solver.pop()
        if r == z3.unknown:
            return None
    return None


def _tidy_model(sys: Sys, solver: z3.Solver, s: St) -> Term | None:
    """The smallest model under ``sys.tidy`` (k = 1, 2, 3), or None: the solver's own model stands."""
    if sys.tidy is None:
        return None
    for k in (1, 2, 3):
        solver.push()
        solver.add(sys.tidy(s, k))
        r = solver.check()
        model = solver.model() if r == z3.sat else None
        solver.pop()
        if model is not None:
            return model
    return None


def show(m: Term, term: Term) -> str:
    """A value of the model as a person reads it: ``DEV!val!1`` becomes ``dev1``."""
    return re.sub(
        r"(\w+)!val!(\d+)",
        lambda x: f"{x.group(1).lower()}{x.group(2)}",
        str(m.eval(term, model_completion=True)),
    )


def universe(m: Term, sort: Term) -> list[Term]:
    """The elements of an uninterpreted sort in the model (the objects the counterexample needs)."""
    return list(m.get_universe(sort) or [])


def _params(m: Term, params: dict[str, Term]) -> str:
    return ", ".join(f"{k}={show(m, v)}" for k, v in params.items())


def check_inductive(
    sys: Sys, name: str, timeout: float, depth: int = 6, assume: Sequence[str] | None = None
) -> Verdict:
    """Init => I and (invariants) /\\ step => I'. A failure is explained by a reachable trace when one
    exists within ``depth`` steps, else by the counterexample to induction. ``assume`` narrows the
    hypotheses (for tests of the counterexample text; a proof always assumes them all)."""
    deadline = time.monotonic() + timeout
    inv = sys.invariant(name)
    if inv.bmc_first:
        found = find_trace(sys, inv, depth, min(deadline, time.monotonic() + timeout / 2))
        if found is not None:
            return found
    S, T = sys.fresh("pre"), sys.fresh("post")
    solver = _solver(timeout)
    solver.add(sys.init(S), z3.Not(inv.fn(S)))
    r = solver.check()
    if r != z3.unsat:
        if r == z3.sat:
            blocks = sys.render(solver.model(), [S], [])
            return Verdict(
                Status.VIOLATED,
                counterexample="\n".join(
                    [f"{name} does not hold in Init:", *("  " + ln for ln in blocks[0])]
                ),
            )
        return Verdict(Status.UNKNOWN, counterexample=f"Init: solver unknown: {solver.reason_unknown()}")
    hyps = [i.fn(S) for i in sys.invariants if assume is None or i.name in assume]
    for act, formula, params in sys.step(S, T, "step"):
        left = deadline - time.monotonic()
        if left <= 0:
            return Verdict(
                Status.UNKNOWN, counterexample=f"timeout: budget of {timeout:g}s spent before {act}"
            )
        # A proof (unsat) is usually quick; a counterexample with quantified hypotheses is where the
        # solver can wander. So the full query gets a third of the budget, then small counterexamples
        # are searched (sys.tidy), then the full query gets what is left.
        solver = _solver(max(1.0, left / 3) if sys.tidy is not None else left)
        solver.add(*hyps, formula, z3.Not(inv.fn(T)))
        r = solver.check()
        m = None
        if r == z3.unknown and sys.tidy is not None:
            solver.set("timeout", max(1, int((deadline - time.monotonic()) * 500)))
            m = _tidy_model(sys, solver, S)
            if m is None:
                solver.set("timeout", max(1, int((deadline - time.monotonic()) * 1000)))
                r = solver.check()
        if m is None and r == z3.unknown:
            return Verdict(Status.UNKNOWN, counterexample=f"{act}: solver unknown: {solver.reason_unknown()}")
        if m is not None or r == z3.sat:
            m = m or _tidy_model(sys, solver, S) or solver.model()
            if not inv.bmc_first:
                found = find_trace(sys, inv, depth, deadline)
                if found is not None:
                    return found
            blocks = sys.render(m, [S, T], [params])
            held = "every invariant holds" if assume is None else "the invariants assumed hold"
            lines = [f"counterexample to induction of {name}", f"state before ({held}):"]
            lines += ["  " + ln for ln in blocks[0]]
            lines.append(f"step: {act}({_params(m, params)})")
            lines.append("state after:")
            lines += ["  " + ln for ln in blocks[1]]
            return Verdict(Status.VIOLATED, counterexample="\n".join(lines))
    return Verdict(Status.PROVED)


def check_reaches(
    sys: Sys, plan: Sequence[str], goal: Callable[[Sequence[St]], Term], timeout: float
) -> Verdict:
    """Non-vacuity: the planned run of actions from Init is possible and ends in a state satisfying
    ``goal`` (say, two files open). The invariants hold there because they are inductive; what this
    rules out is a proof that holds only because an action's guard can never be true."""
    states = [sys.fresh(f"run{i}") for i in range(len(plan) + 1)]
    solver = _solver(timeout)
    solver.add(sys.init(states[0]))
    for i, name in enumerate(plan):
        acts = {n: f for n, f, _ in sys.step(states[i], states[i + 1], f"run{i}")}
        solver.add(acts[name])
    solver.add(goal(states))
    r = solver.check()
    if r == z3.sat:
        return Verdict(Status.PROVED)
    return Verdict(
        Status.VIOLATED if r == z3.unsat else Status.UNKNOWN,
        counterexample=f"the run {' -> '.join(plan)} is impossible: {r}",
    )
