"""Replay a counterexample: re-run (action, args) steps through the spec itself.

A rendered counterexample ends with a pytest snippet that calls `replay`; that is what makes a trace
something a person can paste back as a regression test. The trace came from the explorer, so replay
walks the same graph the explorer walked: the reduced successors (model/reduction.py fuses fault
steps, so an action may read "fault_lock+fault_check") of states canonicalised the same way
(spec/symmetry.py renames files, vmas and CPUs, and the arguments of each step refer to the
canonical slots of the state before it).

A step is (action, args) or (action, args, outcome). The outcome is needed only where one action
instance has several outcomes (device_add with --add-failure: "ok" or "EEXIST"); replay refuses to
guess between different next states.
"""

from __future__ import annotations

from collections.abc import Sequence

from devdax.model.checker import Violation
from devdax.model.reduction import reduced_successors
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import Transition, init, successors

StepSpec = tuple[str, tuple[object, ...]] | tuple[str, tuple[object, ...], str]


def _norm(x: object) -> object:
    """Arguments pasted from text come back as lists where the trace had tuples; compare by value."""
    if isinstance(x, list | tuple):
        return tuple(_norm(y) for y in x)
    return x


def _describe(step: Sequence[object]) -> str:
    args = step[1]
    shown = tuple(args) if isinstance(args, list | tuple) else args
    return f"{step[0]}{shown!r}" + (f" -> {step[2]}" if len(step) > 2 else "")


def replay_transitions(
    cfg: Config, steps: Sequence[StepSpec], *, symmetry: bool = True, reduce: bool = True
) -> list[Transition]:
    """The transitions taken by `steps` from init; each one's state is the raw successor (before
    canonicalisation), as the explorer hands it to step properties. symmetry and reduce must be
    those of the run that found the trace (`devdax check --no-symmetry --no-reduction`)."""
    c = Ctx.of(cfg)
    canon = canonical if symmetry else (lambda s: s)
    next_states = reduced_successors if reduce else successors
    s = canon(init(c))
    out: list[Transition] = []
    for n, step in enumerate(steps, start=1):
        action, args = step[0], _norm(step[1])
        outcome = step[2] if len(step) > 2 else None
        succ = next_states(c, s)
        same = [t for t in succ if t.action == action and _norm(t.args) == args]
        hits = [t for t in same if outcome is None or t.outcome == outcome]
        if not hits:
            near = sorted({f"{t.action}{t.args!r} -> {t.outcome}" for t in succ if t.action == action})
            hint = (
                ("; enabled instances of this action: " + "; ".join(near[:6]))
                if near
                else f"; enabled actions: {', '.join(sorted({t.action for t in succ})) or 'none'}"
            )
            raise ValueError(f"replay: step {n} {_describe(step)} matches no transition{hint}")
        if len({canon(t.state) for t in hits}) > 1:
            raise ValueError(
                f"replay: step {n} {_describe(step)} is ambiguous, give its outcome "
                f"(one of {', '.join(sorted({t.outcome for t in hits}))})"
            )
        t = hits[0]
        out.append(t)
        s = canon(t.state)
    return out


def replay(
    cfg: Config, steps: Sequence[StepSpec], *, symmetry: bool = True, reduce: bool = True
) -> list[State]:
    """The states visited: states[0] is the initial state, states[i] the state after step i, in the
    explorer's canonical form (so state invariants see exactly what the explorer saw)."""
    canon = canonical if symmetry else (lambda s: s)
    s0 = canon(init(Ctx.of(cfg)))
    ts = replay_transitions(cfg, steps, symmetry=symmetry, reduce=reduce)
    return [s0] + [canon(t.state) for t in ts]


def steps_of(v: Violation) -> list[tuple[str, tuple[object, ...], str]]:
    """A violation's trace as replayable steps (with outcomes, so that replay never has to guess)."""
    return [(st.action, st.args, st.outcome) for st in v.trace]


def can_finish(cfg: Config, s: State, *, max_states: int = 200_000, reduce: bool = True) -> bool:
    """Liveness of one state (teardown_finishes): can the admin reach idle from s? Explores the
    reduced graph from s; a pasted liveness counterexample asserts that this is False. Raises
    RuntimeError when more than max_states states would be needed to decide."""
    c = Ctx.of(cfg)
    seen = {canonical(s)}
    todo = [canonical(s)]
    while todo:
        cur = todo.pop()
        if not cur.admin.prog:
            return True
        for t in (reduced_successors if reduce else successors)(c, cur):
            ns = canonical(t.state)
            if ns not in seen:
                if len(seen) >= max_states:
                    raise RuntimeError(f"can_finish: undecided after {max_states} states")
                seen.add(ns)
                todo.append(ns)
    return False
