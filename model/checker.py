"""Explicit-state breadth-first exploration of the spec, with shortest counterexamples.

Breadth-first order makes the first state found that breaks an invariant one with a shortest trace.
Each state is stored once, canonicalised (spec/symmetry.py) so that renamings of files, vmas and CPUs
count as one state. Every state invariant is evaluated on every stored state and every step property
on every transition; exploration goes on after a violation so that one run reports every broken
property, each with its own shortest trace.

Liveness ("teardown can always finish") is decided on the explored graph: a state violates it when
no path from it leads to a state where the admin is idle. The reverse edges needed for that are kept
as two flat int arrays.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from devdax.model.reduction import reduced_successors
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS, Invariant, state_invariants, step_properties
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import Transition, init, successors


@dataclass(frozen=True)
class Step:
    """One line of a counterexample."""

    action: str
    args: tuple[object, ...]
    outcome: str
    state: State


@dataclass
class Violation:
    invariant: Invariant
    message: str
    trace: list[Step]  # from the initial state; the last step reaches the bad state


@dataclass
class Result:
    states: int = 0
    transitions: int = 0
    seconds: float = 0.0
    depth: int = 0
    complete: bool = True
    violations: dict[str, Violation] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int, int, float], None]  # states, frontier, depth, seconds


def check(
    c: Ctx,
    *,
    symmetry: bool = True,
    reduce: bool = True,
    liveness: bool = True,
    max_states: int | None = None,
    stop_on_violation: bool = False,
    only: set[str] | None = None,
    progress: Progress | None = None,
) -> Result:
    t0 = time.perf_counter()
    canon = canonical if symmetry else (lambda s: s)
    next_states = reduced_successors if reduce else successors
    invs = [i for i in state_invariants() if only is None or i.name in only]
    steps = [i for i in step_properties() if only is None or i.name in only]
    do_live = liveness and (only is None or "teardown_finishes" in only)
    res = Result(checked=[i.name for i in invs + steps] + (["teardown_finishes"] if do_live else []))

    s0 = canon(init(c))
    index: dict[State, int] = {s0: 0}
    states: list[State] = [s0]
    parent = array("i", [-1])
    via: list[Transition | None] = [None]
    depth = array("i", [0])
    rev_src, rev_dst = array("i"), array("i")
    idle = bytearray()

    def record(inv: Invariant, msg: str, at: int, last: Transition | None = None) -> None:
        if inv.name in res.violations:
            return
        res.violations[inv.name] = Violation(inv, msg, _trace(states, parent, via, at, last))

    def check_state(i: int, s: State) -> None:
        for inv in invs:
            if inv.name in res.violations:
                continue
            assert inv.check is not None
            msg = inv.check(c, s)
            if msg is not None:
                record(inv, msg, i)

    check_state(0, s0)
    head = 0
    last_report = t0
    while head < len(states):
        if max_states is not None and len(states) >= max_states:
            res.complete = False
            break
        s = states[head]
        i = head
        head += 1
        if do_live:
            idle.append(1 if not s.admin.prog else 0)
        for t in next_states(c, s):
            res.transitions += 1
            for prop in steps:
                if prop.name in res.violations:
                    continue
                assert prop.step is not None
                msg = prop.step(c, s, t)
                if msg is not None:
                    record(prop, msg, i, t)
            ns = canon(t.state)
            j = index.get(ns)
            if j is None:
                j = len(states)
                index[ns] = j
                states.append(ns)
                parent.append(i)
                via.append(t)
                depth.append(depth[i] + 1)
                check_state(j, ns)
            if do_live and j != i:
                rev_src.append(i)
                rev_dst.append(j)
        if stop_on_violation and res.violations:
            res.complete = False
            break
        if progress is not None and time.perf_counter() - last_report > 0.5:
            last_report = time.perf_counter()
            progress(len(states), len(states) - head, depth[i], last_report - t0)

    res.states = len(states)
    res.depth = max(depth) if len(depth) else 0
    if do_live and res.complete:
        stuck = _cannot_reach_idle(len(states), idle, rev_src, rev_dst)
        if stuck is not None:
            record(
                INVARIANTS["teardown_finishes"],
                f"from here the admin can never finish '{states[stuck].admin.prog}' "
                f"(a grace period that never ends, or a step that can never run)",
                stuck,
            )
    res.seconds = time.perf_counter() - t0
    return res


def _trace(
    states: list[State], parent: array[int], via: list[Transition | None], at: int, last: Transition | None
) -> list[Step]:
    path: list[Step] = []
    i = at
    while parent[i] >= 0:
        t = via[i]
        assert t is not None
        path.append(Step(t.action, t.args, t.outcome, states[i]))
        i = parent[i]
    path.reverse()
    if last is not None:
        path.append(Step(last.action, last.args, last.outcome, last.state))
    return path


def _cannot_reach_idle(n: int, idle: bytearray, src: array[int], dst: array[int]) -> int | None:
    """Backward reachability from idle states; the first (shallowest) state outside it, if any."""
    preds: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(src, dst, strict=True):
        preds[b].append(a)
    good = bytearray(n)
    stack = [i for i in range(n) if idle[i]]
    for i in stack:
        good[i] = 1
    while stack:
        j = stack.pop()
        for p in preds[j]:
            if not good[p]:
                good[p] = 1
                stack.append(p)
    for i in range(n):
        if not good[i]:
            return i
    return None
