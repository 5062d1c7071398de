"""The one transition-system engine every unbounded encoding uses (protocol, lifetime, refcount, minor).

An encoding describes a :class:`System`: how to make a fresh state, Init, the step as a list of named
actions (a formula over the state before, the state after and the step's parameters), the invariants,
and how to render a state for a person. This module does the rest, the same way for every encoding:

* ``check_inductive``: Init => I, then (the assumed invariants) /\\ I /\\ step => I' for each action;
  a failure is the counterexample to induction (the state before, the step, what changed after);
* ``find_trace``: a bounded search from Init for a *reachable* violation, printed as a trace: the
  strongest evidence. It runs before the induction for the spec's own safety invariants
  (``Inv.bmc_first``: a strengthening that does not hold could otherwise make a false invariant look
  proved relative to it), and after a counterexample to induction when ``depth`` allows, so that an
  unreachable counterexample says the strengthening is too weak, not that the kernel is wrong;
* ``check_reaches``: non-vacuity, a planned run from Init is possible.

Where a step query with quantified hypotheses is slow, a counterexample is looked for among few
objects first (``System.finite``, the same system over finite sorts, or ``System.tidy``, a bound on
the objects that matter); a finite model is a real counterexample. Verdicts are those of
proofs/runner.py; UNKNOWN is never proved.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any, Generic, TypeVar

import z3

from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.proofs.smt import ARITH_SOLVER, Term

#: Seconds a step query gets before a counterexample is looked for among few objects (``finite``,
#: ``tidy``). In the encodings that have such a search (lifetime, refcount, minor) every obligation
#: that holds is proved in about a second at most (bench/RESULTS.md, "devdax prove"), while a query
#: with a counterexample over unbounded objects can wander for minutes; the small search finds one
#: in seconds. (It was a third of the budget, 40 s, for refcount and minor.)
QUICK = 5.0

S = TypeVar("S")
#: one action instance between two states: (name, formula, parameters to print as name -> term)
Act = tuple[str, Term, dict[str, Term]]
#: (model, states, the parameters of each step between them) -> one block of lines per state
Renderer = Callable[[Term, Sequence[S], Sequence[dict[str, Term]]], list[list[str]]]


@dataclass(frozen=True)
class Inv(Generic[S]):
    """An invariant of a system: ``fn(state)``; in a list shared by the instances of one encoding,
    ``fn(model, state)``, and ``bind(model)`` makes the system's invariant."""

    name: str
    doc: str
    fn: Callable[..., Term]
    #: the spec invariant (spec/invariants.py) this proves or serves as a strengthening of
    serves: str = ""
    #: "spec": an invariant of spec/invariants.py read on this state; "aux": a strengthening
    kind: str = "aux"
    #: search for a reachable violation before the induction (the spec's own invariants)
    bmc_first: bool = False

    def bind(self, *model: Any) -> Inv[S]:
        return replace(self, fn=partial(self.fn, *model))


def show(m: Term, term: Term) -> str:
    """A value of the model as a person reads it: ``DEV!val!1`` becomes ``dev1``."""
    return re.sub(
        r"(\w+)!val!(\d+)",
        lambda x: f"{x.group(1).lower()}{x.group(2)}",
        str(m.eval(term, model_completion=True)),
    )


def reader(m: Term) -> tuple[Callable[[Term], Term], Callable[[Term], int], Callable[[Term], bool]]:
    """(ev, num, flag): a term's value in model m, as a Z3 value, an int, a bool (what renderers and
    observations read)."""

    def ev(t: Term) -> Term:
        return m.eval(t, model_completion=True)

    return ev, lambda t: int(ev(t).as_long()), lambda t: bool(z3.is_true(ev(t)))


def b2i(b: Term) -> Term:
    return z3.If(b, 1, 0)


def forall(sort: Term, body: Callable[[Term], Term], name: str) -> Term:
    x = z3.Const(name, sort)
    return z3.ForAll([x], body(x))


def universe(m: Term, sort: Term) -> list[Term]:
    """The elements of an uninterpreted sort in the model (the objects the counterexample needs)."""
    return list(m.get_universe(sort) or [])


@dataclass(frozen=True, eq=False)
class System(Generic[S]):
    fresh: Callable[[str], S]
    init: Callable[[S], Term]
    step: Callable[[S, S, str], list[Act]]
    invariants: Sequence[Inv[S]]
    render: Renderer[S]
    #: hypotheses true in every state (a device's ranges), assumed by every query
    rigid: Sequence[Term] = ()
    #: ``tidy(s, k)``: s has at most k objects that matter and its numbers are small; a counterexample
    #: is searched under it for k = 1, 2, 3 first, so that it shows only what the violation needs
    tidy: Callable[[S, int], Term] | None = None
    #: the same system over finite sorts: where a slow step query looks for a counterexample first
    finite: System[S] | None = None
    #: seconds a step query gets before the small-model search
    quick: float = QUICK
    #: how a step parameter's value is printed
    value: Callable[[Term, Term], str] = show
    #: ``unroll(s, t, tag)``: the step as (formulas, the action that fired in a model) for long
    #: unrollings (BMC's explanatory frames); None: some action of ``step`` fires (``one_of``)
    unroll: Callable[[S, S, str], tuple[list[Term], Callable[[Term], Act]]] | None = None

    def invariant(self, name: str) -> Inv[S]:
        for inv in self.invariants:
            if inv.name == name:
                return inv
        raise ValueError(f"invariant: unknown {name!r}")

    @cached_property
    def frame(self) -> Frame[S]:
        """A pre and a post state, the actions between them and every invariant on both, built once
        (building the protocol's actions is the expensive part of a proof)."""
        pre, post = self.fresh("pre"), self.fresh("post")
        return Frame(
            pre,
            post,
            self.step(pre, post, "step"),
            {i.name: i.fn(pre) for i in self.invariants},
            {i.name: i.fn(post) for i in self.invariants},
        )


@dataclass(frozen=True)
class Frame(Generic[S]):
    pre: S
    post: S
    actions: list[Act]
    before: dict[str, Term]
    after: dict[str, Term]


# --------------------------------------------------------------------------------------------------
# Systems whose state is a dict of named terms (minor, refcount)
# --------------------------------------------------------------------------------------------------

St = dict[str, Term]
#: state variable name -> its sort: a Z3 sort, or (domain, range) for an array
Sorts = dict[str, Term | tuple[Term, Term]]
#: an action: (before, after, tag) -> (formula, parameters to print as name -> term)
ActionFn = Callable[[St, St, str], tuple[Term, dict[str, Term]]]


@dataclass(frozen=True)
class Sys:
    """A system described by its variables and named actions; ``system`` is what the engine checks."""

    vars: Sorts
    init: Callable[[St], Term]
    actions: dict[str, ActionFn]
    invariants: list[Inv[St]]
    render: Renderer[St]
    #: variables that never change (a configuration constant such as the reserved minor count)
    frozen: tuple[str, ...] = field(default=())
    tidy: Callable[[St, int], Term] | None = None

    def fresh(self, tag: str) -> St:
        return declare(self.vars, tag)

    def step(self, s: St, t: St, tag: str) -> list[Act]:
        out = []
        for name, fn in self.actions.items():
            formula, params = fn(s, t, tag)
            keep = [s[v] == t[v] for v in self.frozen]
            out.append((name, z3.And(formula, *keep), params))
        return out

    @cached_property
    def system(self) -> System[St]:
        return System(self.fresh, self.init, self.step, self.invariants, self.render, tidy=self.tidy)


def declare(sorts: Sorts, tag: str) -> St:
    """One fresh variable per name, ``name@tag``: a constant of the sort, or an array for a
    (domain, range) pair; in the order given (Z3 numbers terms as they are made)."""
    return {
        name: z3.Array(f"{name}@{tag}", *sort) if isinstance(sort, tuple) else z3.Const(f"{name}@{tag}", sort)
        for name, sort in sorts.items()
    }


def unchanged(s: St, t: St, *but: str) -> Term:
    """Every variable keeps its value except those named (the frame condition of an action)."""
    return z3.And(*(t[k] == v for k, v in s.items() if k not in but))


def becomes(s: St, t: St, **new: Term) -> Term:
    """t is s with the named variables set to new values: an action's effect and its frame."""
    return z3.And(*(t[k] == v for k, v in new.items()), unchanged(s, t, *new))


def _compiled(sys: System[Any] | Sys) -> System[Any]:
    return sys.system if isinstance(sys, Sys) else sys


# --------------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------------


def solver_for(timeout: float) -> Term:
    """A fresh solver with the budget and the arithmetic solver every proof here uses (proofs/smt.py)."""
    solver = z3.Solver()
    solver.set("timeout", max(1, int(timeout * 1000)))
    solver.set("arith.solver", ARITH_SOLVER)
    return solver


def _params(sys: System[Any], m: Term, params: dict[str, Term]) -> str:
    return ", ".join(f"{k}={sys.value(m, v)}" for k, v in params.items())


def render_cti(
    sys: System[Any], m: Term, act: Act, title: str, held: str, states: tuple[Any, Any] | None = None
) -> str:
    """Two states and the step: the state before in full, after it only the lines that changed."""
    name, _, params = act
    pre, post = states or (sys.frame.pre, sys.frame.post)
    before, after = sys.render(m, [pre, post], [params])
    changed = [ln for ln in after if ln not in before] or ["(nothing changed)"]
    return "\n".join(
        [
            title,
            f"state before ({held}):",
            *("  " + ln for ln in before),
            f"step: {name}({_params(sys, m, params)})",
            "state after (what changed):",
            *("  " + ln for ln in changed),
        ]
    )


def one_of(acts: Sequence[Act], tag: str) -> tuple[list[Term], list[Term]]:
    """Some action of ``acts`` fires: (the formulas that say so, one selector per action). The
    selector says which one fired: a formula with a quantifier does not always evaluate to a truth
    value in the model."""
    fired = [z3.Bool(f"fired:{i}:{a[0]}@{tag}") for i, a in enumerate(acts)]
    return [*(z3.Implies(b, a[1]) for b, a in zip(fired, acts, strict=True)), z3.Or(*fired)], fired


def which(m: Term, fired: Sequence[Term]) -> int:
    """The action whose selector (``one_of``) is true in model m."""
    return next(i for i, b in enumerate(fired) if z3.is_true(m.eval(b, model_completion=True)))


@dataclass(frozen=True)
class Run:
    """A run from Init found by ``shortest_run``: the model, the states, and each step's action."""

    model: Term
    states: list[Any]
    steps: list[Act]

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.steps]


def unrolled(sys: System[Any], s: Any, t: Any, tag: str) -> tuple[list[Term], Callable[[Term], Act]]:
    """One step of an unrolling: ``sys.unroll``, or some action of ``sys.step`` (``one_of``)."""
    if sys.unroll is not None:
        return sys.unroll(s, t, tag)
    acts = sys.step(s, t, tag)
    formulas, fired = one_of(acts, tag)
    return formulas, lambda m: acts[which(m, fired)]


def shortest_run(
    sys: System[Any] | Sys, bad: Callable[[Any], Term], depth: int, deadline: float
) -> tuple[Status, Run | None, str]:
    """The shortest run of at most ``depth`` steps from Init to a state where ``bad`` holds, one
    incremental solver, the depth-k question pushed and popped: (VIOLATED, the run, ""), (PROVED,
    None, "") when there is none within the depth, or (UNKNOWN, None, why) when the budget ran out or
    the solver could not tell."""
    sys = _compiled(sys)
    states = [sys.fresh("t0")]
    solver = solver_for(deadline - time.monotonic())
    solver.add(*sys.rigid, sys.init(states[0]))
    firings: list[Callable[[Term], Act]] = []
    for k in range(depth + 1):
        if k > 0:
            states.append(sys.fresh(f"t{k}"))
            formulas, fired = unrolled(sys, states[k - 1], states[k], f"s{k}")
            solver.add(*formulas)
            firings.append(fired)
        left = deadline - time.monotonic()
        if left <= 0:
            return Status.UNKNOWN, None, f"depth {k}: timeout"
        solver.set("timeout", max(1, int(left * 1000)))
        solver.push()
        solver.add(bad(states[k]))
        r = solver.check()
        if r == z3.sat:
            m = _tidy_model(sys, solver, states[0]) or solver.model()
            return Status.VIOLATED, Run(m, states, [f(m) for f in firings]), ""
        solver.pop()
        if r == z3.unknown:
            why = "timeout" if time.monotonic() >= deadline else solver.reason_unknown()
            return Status.UNKNOWN, None, f"depth {k}: {why}"
    return Status.PROVED, None, ""


def find_trace(sys: System[Any] | Sys, inv: Inv[Any], depth: int, deadline: float) -> Verdict | None:
    """The shortest reachable violation of ``inv`` within ``depth`` steps, rendered as a trace."""
    sys = _compiled(sys)
    _, run, _ = shortest_run(sys, lambda s: z3.Not(inv.fn(s)), depth, deadline)
    if run is None:
        return None
    m = run.model
    blocks = sys.render(m, run.states, [p for _, _, p in run.steps])
    lines = [f"reachable violation of {inv.name} in {len(run.steps)} step(s) from Init:", "state 0 (Init):"]
    lines += ["  " + ln for ln in blocks[0]]
    for i, (name, _, params) in enumerate(run.steps):
        lines.append(f"step {i + 1}: {name}({_params(sys, m, params)})")
        lines.append(f"state {i + 1}:")
        lines += ["  " + ln for ln in blocks[i + 1]]
    return Verdict(Status.VIOLATED, counterexample="\n".join(lines))


def _tidy_model(sys: System[Any], solver: Term, s: Any) -> Term | None:
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


def _step_query(
    sys: System[Any], name: str, i: int, hyps: Sequence[str], timeout: float
) -> tuple[Term, Term]:
    """(answer, solver) of (hyps) /\\ action i /\\ not name'."""
    fr = sys.frame
    solver = solver_for(timeout)
    solver.add(*sys.rigid, *(fr.before[h] for h in hyps), fr.actions[i][1], z3.Not(fr.after[name]))
    return solver.check(), solver


def check_inductive(
    sys: System[Any] | Sys,
    name: str,
    timeout: float,
    depth: int = 6,
    assume: Sequence[str] | None = None,
    label: str = "",
) -> Verdict:
    """Init => I and (the assumed invariants, all by default) /\\ I /\\ step => I'. A failure is explained
    by a reachable trace when one exists within ``depth`` steps, else by the counterexample to
    induction; ``label`` starts the text (which instance failed, e.g. the alignment)."""
    sys = _compiled(sys)
    deadline = time.monotonic() + timeout
    inv = sys.invariant(name)
    if inv.bmc_first and depth > 0:
        early = find_trace(sys, inv, depth, min(deadline, time.monotonic() + timeout / 2))
        if early is not None:
            return early
    fr = sys.frame
    initial = _init_verdict(sys, name, timeout, label)
    if initial is not None:
        return initial
    hyps = [i.name for i in sys.invariants if assume is None or i.name in assume or i.name == name]
    for i, (act, _, _) in enumerate(fr.actions):
        if deadline - time.monotonic() <= 0:
            return Verdict(
                Status.UNKNOWN, counterexample=f"{label}timeout: budget of {timeout:g}s spent before {act}"
            )
        found, unknown = _action_counterexample(sys, name, i, hyps, deadline)
        if unknown is not None:
            return Verdict(Status.UNKNOWN, counterexample=f"{label}{act}: solver unknown: {unknown}")
        if found is not None:
            if depth > 0 and not inv.bmc_first:
                trace = find_trace(sys, inv, depth, deadline)
                if trace is not None:
                    return trace
            where, m = found
            held = "every invariant holds" if assume is None else "the assumed invariants hold"
            cti = render_cti(where, m, where.frame.actions[i], f"counterexample to induction of {name}", held)
            return Verdict(Status.VIOLATED, counterexample=label + cti)
    return Verdict(Status.PROVED)


def _action_counterexample(
    sys: System[Any], name: str, i: int, hyps: Sequence[str], deadline: float
) -> tuple[tuple[System[Any], Term] | None, str | None]:
    """(where and the model of a counterexample to the induction of ``name`` through action i, or
    None; the solver's reason when it could not tell, or None)."""
    left = deadline - time.monotonic()
    small = sys.finite is not None or sys.tidy is not None
    # A proof (unsat) is usually quick; a counterexample with quantified hypotheses is where the
    # solver can wander. So the query first gets a part of the budget, then small counterexamples
    # are searched, then the query gets what is left.
    first = left if not small else min(left, sys.quick)
    r, solver = _step_query(sys, name, i, hyps, first)
    if r == z3.unknown and small:
        found = _small_counterexample(sys, solver, name, i, hyps, deadline)
        if found is not None:
            return found, None
        r, solver = _step_query(sys, name, i, hyps, max(0.001, deadline - time.monotonic()))
    if r == z3.unknown:
        return None, solver.reason_unknown()
    if r == z3.sat:
        solver.set("timeout", max(1, int((deadline - time.monotonic()) * 1000)))
        return (sys, _tidy_model(sys, solver, sys.frame.pre) or solver.model()), None
    return None, None


def _init_verdict(sys: System[Any], name: str, timeout: float, label: str) -> Verdict | None:
    """Init => I: None when it holds, else the state of Init where it fails (or UNKNOWN)."""
    fr = sys.frame
    solver = solver_for(timeout)
    solver.add(*sys.rigid, sys.init(fr.pre), z3.Not(fr.before[name]))
    r = solver.check()
    if r == z3.sat:
        (block,) = sys.render(solver.model(), [fr.pre], [])
        text = "\n".join([f"{name} does not hold in Init:", *("  " + ln for ln in block)])
        return Verdict(Status.VIOLATED, counterexample=label + text)
    if r == z3.unknown:
        reason = solver.reason_unknown()
        return Verdict(Status.UNKNOWN, counterexample=f"{label}Init: solver unknown: {reason}")
    return None


def _small_counterexample(
    sys: System[Any], solver: Term, name: str, i: int, hyps: Sequence[str], deadline: float
) -> tuple[System[Any], Term] | None:
    """A counterexample among few objects, in the finite system or under ``tidy``; None if none is
    found within its share of the budget (a proof there proves nothing about the unbounded system)."""
    left = max(0.001, deadline - time.monotonic())
    if sys.finite is not None:
        r, fsolver = _step_query(sys.finite, name, i, hyps, min(left, sys.quick))
        if r != z3.sat:
            return None
        fsolver.set("timeout", max(1, int(min(2.0, left) * 1000)))
        return sys.finite, _tidy_model(sys.finite, fsolver, sys.finite.frame.pre) or fsolver.model()
    solver.set("timeout", max(1, int(left * 500)))
    m = _tidy_model(sys, solver, sys.frame.pre)
    return None if m is None else (sys, m)


def check_reaches(
    sys: System[Any] | Sys,
    plan: Sequence[str | None],
    goal: Callable[[Sequence[Any]], Term],
    timeout: float,
) -> Verdict:
    """Non-vacuity: the planned run of actions from Init (None: any action) is possible and ends in a
    state satisfying ``goal`` (say, two files open). The invariants hold there because they are
    inductive; what this rules out is a proof that holds only because an action's guard can never be
    true, or (a goal that states them) because the invariants contradict each other."""
    sys = _compiled(sys)
    states = [sys.fresh(f"run{i}") for i in range(len(plan) + 1)]
    solver = solver_for(timeout)
    solver.add(*sys.rigid, sys.init(states[0]))
    for i, name in enumerate(plan):
        acts = {n: f for n, f, _ in sys.step(states[i], states[i + 1], f"run{i}")}
        solver.add(acts[name] if name is not None else z3.Or(*acts.values()))
    solver.add(goal(states))
    r = solver.check()
    if r == z3.sat:
        return Verdict(Status.PROVED)
    return Verdict(
        Status.VIOLATED if r == z3.unsat else Status.UNKNOWN,
        counterexample=f"the run {' -> '.join(n or '(any step)' for n in plan)} is impossible: {r}",
    )


def invariant_obligations(
    prefix: str, scope: str, source: str, invs: Sequence[Inv[Any]], check: Callable[[str, float], Verdict]
) -> list[Obligation]:
    """One obligation per invariant, ``check(name, timeout)``: a spec invariant (kind "spec") or a
    strengthening the encoding in ``source`` states, each inductive for any number of the ``scope``'s
    objects. The prefix names the encoding; a name that starts with it already keeps it (minor_unique)."""
    return [
        Obligation(
            i.name if i.name.startswith(prefix.rstrip("_")) else prefix + i.name,
            f"{'invariant' if i.kind == 'spec' else 'strengthening'}, inductive for any {scope}: {i.doc}",
            "spec/invariants.py" if i.kind == "spec" else source,
            partial(check, i.name),
            serves=i.serves,
        )
        for i in invs
    ]
