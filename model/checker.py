"""Explicit-state breadth-first exploration of the spec, with shortest counterexamples.

Breadth-first order makes the first state found that breaks an invariant one with a shortest trace.
Each state is stored once, canonicalised (spec/symmetry.py) so that renamings of files, vmas and CPUs
count as one state. Every state invariant is evaluated on every stored state and every step property
on every transition; exploration goes on after a violation so that one run reports every broken
property, each with its own shortest trace.

Liveness ("teardown can always finish") is decided on the explored graph: a state violates it when
no path from it leads to a state where the admin is idle. The reverse edges needed for that are kept
as two flat int arrays.

Speed and memory (issue 15), each with the plain form kept beside it (check(fast=False)) and
compared with it state by state in tests/model/test_fast_paths.py:
* a successor equal to a stored state is a duplicate without canonicalisation (stored states are
  canonical and canonical() is idempotent): 70% of the successors of the v4.10 default;
* the rest go through spec.symmetry.Canonicaliser (renamings memoised per files/vmas/entries);
* a step property runs only on the actions it can judge (STEP_ACTIONS);
* a state keeps how it was reached as (action, args, outcome), not the whole Transition with the
  un-canonical post-state, and the records and tuples of stored states are interned;
* the state invariants that read no CPU are judged once per shared part, everything but the CPUs
  (model/memo.py): 12,700 shared parts for the 47,872 states of the v4.10 default;
* with MEMO_MIN_CPUS CPUs or more, expand_memo: fault steps run once per shared part and CPU
  record too, states are kept as their shared part's number and their CPU records' numbers, and
  a CPU's step re-sorts the CPUs by one insertion.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import resource
import sys
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Final

from devdax.model.memo import Memo, Move, Verdicts
from devdax.model.reduction import fused_cpu_steps, reduced_successors
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS, Invariant, state_invariants, step_properties
from devdax.spec.state import Cpu, State
from devdax.spec.symmetry import Canonicaliser, canonical, sorted_cpus
from devdax.spec.system import Transition, cpu_steps, init, movers, others, successors

#: How a state was first reached: the transition's action, args and outcome, without its state.
Via = tuple[str, tuple[object, ...], str]


def _parts(action: str) -> list[str]:
    return action.split("+")


#: The actions on which a step property can fail, read off its code in spec/invariants.py; a
#: property not named here runs on every transition. tests/model/test_fast_paths.py checks, on
#: every transition of small configurations and of every variant, that a skipped property holds.
STEP_ACTIONS: Final[dict[str, Callable[[str], bool]]] = {
    "no_map_of_dead_device": lambda a: a == "mmap" or "fault_insert" in _parts(a),
    "no_sleep_in_rcu": lambda a: "fault_insert" in _parts(a),
    "fault_size_negotiated": lambda a: "fault_check" in _parts(a),
    "shared_mmap_allowed": lambda a: a == "mmap",
}


#: From how many CPUs on the fast path memoises fault steps (expand_memo). The memo pays where
#: the CPUs multiply the states of one shared part: the race at 16 CPUs runs in 0.4x the time;
#: the v4.10 default (2 CPUs, 3.8 states per shared part) took 1.08x on it compiled (CPU,
#: median of 3, alternating with the whole-state path). Both paths judge the invariants that
#: read no CPU once per shared part.
MEMO_MIN_CPUS = 3


class StepPlan:
    """The step properties to run on a transition of each action: all of them unless fast, else
    those STEP_ACTIONS lets judge it. An object of its own, not a method of the explorer, which
    the memo would then hold: a cycle that only the garbage collector frees (gc_paused)."""

    def __init__(self, steps: list[Invariant], fast: bool) -> None:
        self.steps, self.fast = steps, fast
        self.plan: dict[str, list[Invariant]] = {}

    def __call__(self, action: str) -> list[Invariant]:
        plan = self.plan.get(action)
        if plan is None:
            plan = self.plan[action] = [
                p for p in self.steps if not self.fast or STEP_ACTIONS.get(p.name, _always)(action)
            ]
        return plan


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
class CheckResult:
    """What one exploration found: its size, whether it finished, and a shortest trace per property."""

    states: int = 0
    transitions: int = 0
    seconds: float = 0.0
    depth: int = 0
    complete: bool = True
    violations: dict[str, Violation] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    peak_rss: int = 0  # bytes: the process's peak resident set when the run ended

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int, int, float], None]  # states, frontier, depth, seconds


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the search. The graph only grows, so each full
    collection walks every stored state for nothing: 6% of a long single run, and over a third
    of the CPU of a partitioned one, whose workers hold more containers (--devices 2 over two
    workers: 258 s of CPU with it, 160 s without). Nothing the search drops is cyclic
    (tests/model/test_fast_paths.py counts what a collection finds after a run), so pausing it
    loses no memory; it is switched back on as it was, also when the search raises."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            # Everything the search allocated is still in the youngest generation, so the first
            # allocation after would walk it all (2% of a compiled run): move it to the oldest
            # generation, where objects that survived collections would be (freeze, then unfreeze
            # puts the frozen ones there; a full collection still sees them).
            gc.freeze()
            gc.unfreeze()
        if was:
            gc.enable()


def peak_rss() -> int:
    """The process's peak resident set in bytes (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


class Eta:
    """Seconds left of a run, from its breadth-first depth profile as progress reports show it.

    The states known when expansion first reaches depth d are about the levels up to d + 1, so
    successive samples give the mean level size per depth between them. While the levels grow (or
    have shrunk only once) nothing bounds the rest: no estimate (None). Once they have shrunk twice
    in a row, later levels are taken to keep shrinking at the mean ratio per depth r of those two
    steps: a geometric tail of L * r / (1 - r) states beyond the frontier, expanded at the rate so
    far. A model whose profile grows again later (a second generation) makes it an underestimate."""

    def __init__(self) -> None:
        self.first: dict[int, int] = {}  # depth -> states known when expansion first reached it

    def __call__(self, states: int, frontier: int, depth: int, seconds: float) -> float | None:
        self.first.setdefault(depth, states)
        ds = sorted(self.first)[-4:]
        done = states - frontier
        if len(ds) < 4 or done <= 0 or seconds <= 0:
            return None
        sizes = [(self.first[b] - self.first[a]) / (b - a) for a, b in pairwise(ds)]
        if not sizes[0] > sizes[1] > sizes[2] > 0:
            return None
        r: float = (sizes[2] / sizes[0]) ** (1 / (ds[3] - ds[1]))
        return (frontier + sizes[2] * r / (1 - r)) * seconds / done


class _Numbered:
    """The memo path's stored states, each kept as its key alone (its shared part's number and its
    CPU records' numbers, in model/memo.py) and built when asked for: on expansion, for a trace,
    for a caller's list. A State and its CPU tuple would double what a state costs to keep."""

    def __init__(self, memo: Memo, key0: tuple[int, tuple[int, ...]]) -> None:
        self.memo = memo
        self.keys = [key0]

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, j: int) -> State:
        sid, ids = self.keys[j]
        return self.memo.state_of(sid, ids)

    def __iter__(self) -> Iterator[State]:
        for j in range(len(self.keys)):
            yield self[j]


class _Graph:
    """The explored graph: states by discovery order (breadth-first, so a parent chain is a shortest
    trace), how each was first reached, and, for liveness, the reverse edges as two flat int arrays
    and which states have an idle admin."""

    def __init__(self, s0: State, intern: bool, numbered: _Numbered | None = None) -> None:
        # keyed by the state itself, or by the memo's numbering of it
        self.index: dict[object, int] = {s0 if numbered is None else numbered.keys[0]: 0}
        self.states: list[State] | _Numbered = [s0] if numbered is None else numbered
        self.parent = array("i", [-1])
        self.via: list[Via | None] = [None]
        self.depth = array("i", [0])
        self.rev_src, self.rev_dst = array("i"), array("i")
        self.idle = bytearray()
        self.vias: dict[Via, Via] = {}
        # one memo per State field, so that records of different types that compare equal as
        # tuples (a Region and a File of zeros) are never taken for one another
        self.memo: list[dict[object, object]] | None = [{} for _ in State._fields] if intern else None

    def add(self, ns: State, i: int, t: Transition) -> tuple[int, bool]:
        """The number of ns, and whether it is new (reached from state i by t)."""
        j = self.index.get(ns)
        if j is not None:
            return j, False
        if self.memo is not None:
            ns = self.intern(ns)
        j = len(self.states)
        self.index[ns] = j
        assert isinstance(self.states, list)
        self.states.append(ns)
        self.parent.append(i)
        v = (t.action, t.args, t.outcome)
        self.via.append(self.vias.setdefault(v, v))
        self.depth.append(self.depth[i] + 1)
        return j, True

    def add_key(self, key: tuple[int, tuple[int, ...]], i: int, via: Via) -> int:
        """Store the state of this memo numbering, new, reached from state i by via."""
        j = len(self.states)
        self.index[key] = j
        assert isinstance(self.states, _Numbered)
        self.states.keys.append(key)
        self.parent.append(i)
        self.via.append(via)
        self.depth.append(self.depth[i] + 1)
        return j

    def intern(self, s: State) -> State:
        """s built from the records and tuples already stored, where equal ones exist: states
        stored apart share most of their parts, but canonicalisation and set_at build new ones."""
        memos = self.memo
        assert memos is not None
        out: list[Any] = []
        same = True  # every field already the stored one: keep s (and the hash it has)
        for k, x in enumerate(s):
            memo = memos[k]
            y = memo.get(x)
            if y is None:
                if type(x) is tuple:
                    x = tuple([memo.setdefault(r, r) for r in x])
                memo[x] = y = x
            same = same and y is s[k]
            out.append(y)
        return s if same else State(*out)

    def trace(self, at: int, last: Transition | None = None) -> list[Step]:
        return _trace(self.states, self.parent, self.via, at, last)


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
    fast: bool = True,
    states: list[State] | None = None,
    found: set[str] | None = None,
) -> CheckResult:
    """Explore every state of c's configuration breadth-first, evaluating each property selected by
    ``only`` (all by default) until the first violation of each. ``fast=False`` runs the plain
    forms the fast paths are tested against (same states, order, traces and verdicts). ``states``,
    when given, gets every stored state in discovery order (as parallel_check's does): what a
    differential test compares. ``found``, when given, gets each violated property's name as soon as
    it is found: what a caller that interrupts the run can still report (the result never comes)."""
    t0 = time.perf_counter()
    with gc_paused():
        x = _Explorer(c, symmetry, reduce, liveness, only, fast, found)
        x.explore(max_states, stop_on_violation, progress, t0)
        if x.do_live and x.res.complete:
            x.liveness()
    if states is not None:
        states.extend(x.g.states)
    x.res.seconds = time.perf_counter() - t0
    x.res.peak_rss = peak_rss()
    return x.res


class _Explorer:
    """One run of check(): the properties it evaluates, the graph so far and what it found."""

    def __init__(
        self,
        c: Ctx,
        symmetry: bool,
        reduce: bool,
        liveness: bool,
        only: set[str] | None,
        fast: bool,
        found: set[str] | None = None,
        memo: bool | None = None,
    ) -> None:
        self.c, self.fast = c, fast
        self.found: set[str] = set() if found is None else found
        self.canon: Callable[[State, State], State] = _canon(symmetry, fast)
        self.next_states = reduced_successors if reduce else successors
        self.invs = [i for i in state_invariants() if only is None or i.name in only]
        self.steps = [i for i in step_properties() if only is None or i.name in only]
        self.steps_for = StepPlan(self.steps, fast)
        self.do_live = liveness and (only is None or "teardown_finishes" in only)
        names = [i.name for i in self.invs + self.steps] + (["teardown_finishes"] if self.do_live else [])
        self.res = CheckResult(checked=names)
        self.symmetry = symmetry
        self.cpu_steps = fused_cpu_steps if reduce else cpu_steps
        s0 = init(c)
        s0 = canonical(s0) if symmetry else s0
        n = len(s0.cpus)
        self.use_memo = fast and (n >= MEMO_MIN_CPUS if memo is None else memo)
        self.memo = Memo(c, self.cpu_steps, self.invs, self.steps_for, symmetry)
        if self.use_memo:
            ids = tuple(self.memo.cpu_id(x) for x in s0.cpus)
            self.numbered = _Numbered(self.memo, (self.memo.sid(s0), ids))
            self.g = _Graph(s0, intern=True, numbered=self.numbered)  # intern: parallel.py
            self.judge_state(0, 0, s0.cpus)
        else:
            self.g = _Graph(s0, intern=fast)
            self.check_state(0, s0)

    def record(self, inv: Invariant, msg: str, at: int, last: Transition | None = None) -> None:
        if inv.name not in self.res.violations:
            self.res.violations[inv.name] = Violation(inv, msg, self.g.trace(at, last))
            self.found.add(inv.name)

    def check_state(self, i: int, s: State) -> None:
        """Every state invariant on state i (s); fast, those that read no CPU once per shared part
        (model/memo.py)."""
        if not self.fast:
            self.judge(i, s, tuple((inv, None) for inv in self.invs))
            return
        self.judge(i, s, self.memo.verdicts_of(s))

    def judge(self, i: int, s: State, verdicts: Verdicts) -> None:
        """Record state i's failures among verdicts, judging s where the verdict is None."""
        for inv, msg in verdicts:
            if inv.name not in self.res.violations:
                if msg is None:
                    assert inv.check is not None
                    msg = inv.check(self.c, s)
                if msg is not None:
                    self.record(inv, msg, i)

    def check_step(self, i: int, s: State, t: Transition) -> None:
        for prop in self.steps_for(t.action):
            if prop.name not in self.res.violations:
                assert prop.step is not None
                msg = prop.step(self.c, s, t)
                if msg is not None:
                    self.record(prop, msg, i, t)

    def explore(self, max_states: int | None, stop: bool, progress: Progress | None, t0: float) -> None:
        """Expand the states breadth-first, in the order they were found."""
        g, res = self.g, self.res
        expand = self.expand_memo if self.use_memo else self.expand_plain
        head = 0
        last_report = t0
        while head < len(g.states):
            if max_states is not None and len(g.states) >= max_states:
                res.complete = False
                break
            i, s = head, g.states[head]
            head += 1
            if self.do_live:
                g.idle.append(1 if not s.admin.prog else 0)
            expand(i, s)
            if stop and res.violations:
                res.complete = False
                break
            if progress is not None and time.perf_counter() - last_report > 0.5:
                last_report = time.perf_counter()
                progress(len(g.states), len(g.states) - head, g.depth[i], last_report - t0)
        res.states = len(g.states)
        res.depth = max(g.depth) if len(g.depth) else 0

    def expand_memo(self, i: int, s: State) -> None:
        """expand_plain with fault steps and invariants memoised (model/memo.py): the same
        successors in the same order, the same properties and traces."""
        m = self.memo
        sid, ids = self.numbered.keys[i]
        cpus = s.cpus
        for t in others(self.c, s):
            self.real(i, s, ids, t)
        for k in movers(cpus) if not self.symmetry else sorted_movers(ids):
            moves = m.cpu(sid, k, cpus[k], len(ids))
            if moves is None:
                for t in self.cpu_steps(self.c, s, k):
                    self.real(i, s, ids, t)
                continue
            rest, rest_ids = cpus[:k] + cpus[k + 1 :], ids[:k] + ids[k + 1 :]
            for mv in moves:
                self.move(i, s, k, rest, rest_ids, mv)

    def move(
        self, i: int, s: State, k: int, rest: tuple[Cpu, ...], rest_ids: tuple[int, ...], mv: Move
    ) -> None:
        """A memoised step of CPU k from state i (s); rest: the other CPUs, still sorted."""
        self.res.transitions += 1
        if mv.verdicts:
            self.judge_move(i, s, k, mv)
        sid, vmap = self.memo.canon(mv.sid) if self.symmetry else (mv.sid, None)
        if vmap is not None:  # the vmas were renamed: the CPUs follow them, then sort afresh
            j = self.arrive(i, sid, vmap, s.cpus[:k] + (mv.cpu,) + s.cpus[k + 1 :], mv.via)
        else:
            p = bisect_right(rest, mv.cpu) if self.symmetry else k
            ids = rest_ids[:p] + (mv.cpu_id,) + rest_ids[p:]
            j2 = self.g.index.get((sid, ids))
            j = self.store(i, sid, ids, rest[:p] + (mv.cpu,) + rest[p:], mv.via) if j2 is None else j2
        if self.do_live and j != i:
            self.g.rev_src.append(i)
            self.g.rev_dst.append(j)

    def judge_move(self, i: int, s: State, k: int, mv: Move) -> None:
        """The step properties of a memoised step: known verdicts, and those read off the real
        transition."""
        t = Transition(*mv.via, self.memo.state(mv.sid, s.cpus[:k] + (mv.cpu,) + s.cpus[k + 1 :]))
        for prop, msg in mv.verdicts:
            if prop.name not in self.res.violations:
                if msg is None:
                    assert prop.step is not None
                    msg = prop.step(self.c, s, t)
                if msg is not None:
                    self.record(prop, msg, i, t)

    def real(self, i: int, s: State, ids: tuple[int, ...], t: Transition) -> None:
        """A transition the spec made on the real state i (s, its CPUs numbered ids)."""
        self.res.transitions += 1
        if self.steps:
            self.check_step(i, s, t)
        ns = t.state
        sid, vmap = self.memo.canon(self.memo.sid(ns)) if self.symmetry else (self.memo.sid(ns), None)
        if ns.cpus is s.cpus and vmap is None:  # the CPUs untouched: still sorted, same numbers
            j2 = self.g.index.get((sid, ids))
            j = self.store(i, sid, ids, ns.cpus, (t.action, t.args, t.outcome)) if j2 is None else j2
        else:
            j = self.arrive(i, sid, vmap, ns.cpus, (t.action, t.args, t.outcome))
        if self.do_live and j != i:
            self.g.rev_src.append(i)
            self.g.rev_dst.append(j)

    def arrive(self, i: int, sid: int, vmap: dict[int, int] | None, cpus: tuple[Cpu, ...], via: Via) -> int:
        """The state of canonical shared part sid with these CPUs, renamed by vmap and sorted:
        stored already, or stored now."""
        if self.symmetry:
            cpus = sorted_cpus(cpus, vmap)
        ids = tuple([self.memo.cpu_id(x) for x in cpus])
        j = self.g.index.get((sid, ids))
        if j is None:
            j = self.store(i, sid, ids, tuple([self.memo.cpu_recs[x] for x in ids]), via)
        return j

    def store(self, i: int, sid: int, ids: tuple[int, ...], cpus: tuple[Cpu, ...], via: Via) -> int:
        """Store the new state (sid, ids), reached from state i by via, and judge it."""
        j = self.g.add_key((sid, ids), i, self.memo.vias.setdefault(via, via))
        self.judge_state(j, sid, cpus)
        return j

    def judge_state(self, j: int, sid: int, cpus: tuple[Cpu, ...]) -> None:
        """check_state on state j (shared part sid, these CPUs), with the invariants that read no
        CPU judged once per shared part."""
        verdicts = self.memo.verdicts(sid)
        if verdicts:
            self.judge(j, self.memo.state(sid, cpus), verdicts)

    def expand_plain(self, i: int, s: State) -> None:
        """Every successor of state i (s): its step properties, and the state it reaches,
        stored canonical and judged when new."""
        g = self.g
        ahead: list[int] = []  # the states this one leads to, for liveness's reverse edges
        for t in self.next_states(self.c, s):
            self.res.transitions += 1
            if self.steps:
                self.check_step(i, s, t)
            j = g.index.get(t.state) if self.fast else None
            if j is None:
                j, new = g.add(self.canon(t.state, s), i, t)
                if new:
                    self.check_state(j, g.states[j])
            if j != i:
                ahead.append(j)
        if self.do_live and ahead:  # appended per state: an array's append is a method call
            g.rev_src.extend(array("i", (i,)) * len(ahead))
            g.rev_dst.extend(ahead)

    def liveness(self) -> None:
        """teardown_finishes, decided on the whole graph: some state from which no path leads to an
        idle admin."""
        g = self.g
        stuck = cannot_reach_idle(len(g.states), g.idle, g.rev_src, g.rev_dst)
        if stuck is not None:
            self.record(INVARIANTS["teardown_finishes"], stuck_message(g.states[stuck]), stuck)


def stuck_message(s: State) -> str:
    """teardown_finishes' message about a state from which no idle admin is reachable (shared with
    model/parallel.py, which decides it over partitions)."""
    return (
        f"from here the admin can never finish '{s.admin.prog}' "
        f"(a grace period that never ends, or a step that can never run)"
    )


def sorted_movers(ids: tuple[int, ...]) -> list[int]:
    """spec.system.movers on sorted CPUs, by their records' numbers: equal records sit side by
    side, so the first of each kind is the one whose left neighbour differs."""
    return [k for k in range(len(ids)) if k == 0 or ids[k] != ids[k - 1]]


def _always(action: str) -> bool:
    return True


def _canon(symmetry: bool, fast: bool) -> Callable[[State, State], State]:
    """The canonicalisation of a successor of a stored (so canonical) parent."""
    if not symmetry:
        return lambda s, parent: s
    if not fast:
        return lambda s, parent: canonical(s)
    return Canonicaliser()


def _trace(
    states: list[State] | _Numbered,
    parent: array[int],
    via: list[Via | None],
    at: int,
    last: Transition | None,
) -> list[Step]:
    path: list[Step] = []
    i = at
    while parent[i] >= 0:
        t = via[i]
        assert t is not None
        path.append(Step(t[0], t[1], t[2], states[i]))
        i = parent[i]
    path.reverse()
    if last is not None:
        path.append(Step(last.action, last.args, last.outcome, last.state))
    return path


def _cannot_reach_idle(n: int, idle: bytearray, src: array[int], dst: array[int]) -> int | None:
    """Backward reachability from idle states; the first (shallowest) state outside it, if any.
    The predecessors are grouped by counting sort into one flat array (start[j]..start[j + 1]
    are j's): a list per state would cost more than the rest of the graph."""
    start = array("i", bytes(4 * (n + 1)))
    for b in dst:
        start[b + 1] += 1
    for j in range(n):
        start[j + 1] += start[j]
    fill = array("i", start)
    preds = array("i", bytes(4 * len(src)))
    for a, b in zip(src, dst, strict=True):
        preds[fill[b]] = a
        fill[b] += 1
    good = bytearray(n)
    stack = [i for i in range(n) if idle[i]]
    for i in stack:
        good[i] = 1
    while stack:
        j = stack.pop()
        for k in range(start[j], start[j + 1]):
            p = preds[k]
            if not good[p]:
                good[p] = 1
                stack.append(p)
    for i in range(n):
        if not good[i]:
            return i
    return None


try:  # the same function in C (devdax/native/liveness.c), built only with the compiled form
    _native: Any = importlib.import_module("devdax.model._liveness")
    cannot_reach_idle: Callable[[int, bytearray, array[int], array[int]], int | None] = (
        _native.cannot_reach_idle
    )
except ImportError:
    cannot_reach_idle = _cannot_reach_idle
