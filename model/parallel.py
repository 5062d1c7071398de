"""Breadth-first exploration over worker processes, each owning the states of one partition.

A state belongs to worker ``fingerprint(state) % W``. The search is level-synchronous: each worker
expands the states it owns at depth d (successors, canonicalisation and properties exactly as
check() does, reusing its _Explorer), sends each successor it does not own, or owns but has not
stored, to its owner, and the owners deduplicate. Only the coordinator's exchange of those batches
and of a few integers per new state is needed between levels, so the same code runs over
multiprocessing (fork) or Ray actors (``Backend``); no networking is written here.

Results equal check()'s: same states, counts, depth, verdicts and traces. The key is that every
stored state carries its sequential discovery index. check() numbers the states of depth d + 1 in
the order of their first discovery, that is by (number of the parent, position of the successor
in the parent's list), and takes that first discoverer as the parent. So each successor is sent
with the key ``parent * ORDINALS + ordinal``; an owner keeps, per new state, the smallest key over
every discoverer; the coordinator sorts all keys of the level and the rank of a key, added to the
number of states stored before the level, is the state's sequential number. Parent links then
name (number, owner) pairs, and the first violation of each property is the one with the smallest
number (state invariants), (parent, ordinal) (step properties) or number (liveness), as in check().

Liveness (teardown_finishes) runs as check() decides it, backward reachability from the states
with an idle admin, with the reverse edges kept by the owner of each edge's target and the
propagation exchanged level by level like the search.

The fingerprint is not Python's hash(): that of a str differs between processes (PYTHONHASHSEED),
and Ray's workers are not forked. It is a BLAKE2b digest of each record with its IntEnums and bools
as plain ints, memoised (few distinct records), folded over the tuple fields and summed over the
frozenset of entries into 64 bits.

What partitioning costs (bench/RESULTS.md, "Multi-process frontier"): a state reached in one level
from states of several workers is canonicalised, fingerprinted and sent by each, and every batch
goes through the coordinator, pickled once by its sender and handed on as bytes (with Ray, a
worker could hand its batches to the owners' actors as object references instead; not done). A
worker also keeps the other workers' states it has sent, with their numbers, so that meeting one
again costs an edge of two ints, not a state: memory for speed, up to about twice check()'s states
in all.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import multiprocessing
import pickle
import signal
import time
import traceback
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from devdax.model.checker import (
    CheckResult,
    Progress,
    Step,
    Via,
    Violation,
    _Explorer,
    gc_paused,
    peak_rss,
    stuck_message,
)
from devdax.spec.config import Config, Layout
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS
from devdax.spec.profiles import Profile
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import Transition, init

#: Successors per state are numbered below this; a discovery key is parent * ORDINALS + ordinal.
ORDINALS = 1 << 24
BACKENDS = ("process", "ray")
_MASK = (1 << 64) - 1
_MUL = 0x100000001B3  # the FNV-1a 64-bit prime: any odd multiplier mixes the field digests


def _plain(x: object) -> object:
    """x with records as tuples, IntEnums and bools as ints and frozensets sorted: equal values
    (a phase stored as RegionPhase.LIVE or as 1) get one encoding, whatever the process."""
    if isinstance(x, tuple):
        return tuple(_plain(y) for y in x)
    if isinstance(x, frozenset):
        return tuple(sorted(_plain(y) for y in x))  # type: ignore[type-var]
    if isinstance(x, int):
        return int(x)
    return x


def _digest(x: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(_plain(x)).encode(), digest_size=8).digest(), "little")


#: The State fields the fingerprint reads: a function of fewer fields is as stable and cheaper, and
#: these are the ones that differ between most states (regions, minors, gp and oops rarely do).
FINGERPRINTED = ("devs", "files", "vmas", "entries", "cpus", "admin")


class Fingerprint:
    """A 64-bit hash of a State that every process and machine computes alike: digests of records
    (few distinct ones) folded in order for a tuple field, summed for a frozenset (no order)."""

    def __init__(self) -> None:
        self.memo: list[dict[object, int]] = [{} for _ in FINGERPRINTED]
        self.records: dict[object, int] = {}
        self.fields = [State._fields.index(f) for f in FINGERPRINTED]

    def __call__(self, s: State) -> int:
        h = 0
        for k, memo in zip(self.fields, self.memo, strict=True):
            x = s[k]
            d = memo.get(x)
            if d is None:
                d = memo[x] = self.field(x)
            h = (h * _MUL + d) & _MASK
        return h

    def field(self, x: object) -> int:
        if type(x) is tuple:
            h = len(x)
            for r in x:
                h = (h * _MUL + self.record(r)) & _MASK
            return h
        if isinstance(x, frozenset):
            return sum(self.record(r) for r in x) & _MASK
        return self.record(x)

    def record(self, r: object) -> int:
        d = self.records.get(r)
        if d is None:
            d = self.records[r] = _digest(r)
        return d


#: check()'s switches a worker's _Explorer takes: symmetry, reduce, liveness, only.
Flags = tuple[bool, bool, bool, set[str] | None]
#: What a worker sends an owner about one successor state: the state, its smallest discovery key,
#: how that discoverer reached it, and the numbers of every parent that reached it (for liveness).
Item = tuple[State, int, Via, list[int]]
#: A candidate first violation: (sort key, property name, message, where it happened).
Found = tuple[tuple[int, ...], str, str, tuple[object, ...]]


@dataclass
class Expanded:
    """One worker's expansion of its part of a level."""

    #: by owner, its Items pickled here once: the coordinator hands the bytes on as they are
    #: instead of unpickling and pickling every state again (b"" for this worker's own)
    boxes: list[bytes]
    edges: list[array[int]]  # by owner: (number of a state of theirs, number of its parent) flat
    transitions: int
    found: list[Found]  # first step-property violation of each property, in this worker


@dataclass(slots=True)
class New:
    """A state first reached at this level, by its smallest key so far."""

    key: int
    via: Via
    sender: int
    preds: list[tuple[int, int]] = field(default_factory=list)  # (number, owner) of every parent


@dataclass
class Merged:
    """One owner's new states of a level: their keys, ascending, and first state violations; and
    per sender, what each state it sent is: its number if stored before, else -1 - its key."""

    keys: list[int]
    found: list[Found] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)


class Partition:
    """The states one worker owns, with their sequential numbers, parent links and reverse edges:
    what a worker process or Ray actor holds; the coordinator calls its methods by name."""

    def __init__(self, me: int, n: int, parts: tuple[Config, Profile, Layout], flags: Flags) -> None:
        # a partition lives in a process of its own (a forked worker, a Ray actor) for the whole
        # search: the cyclic collector stays off there, as check() pauses it (checker.gc_paused)
        gc.disable()
        # a fresh Ctx: a pickled one would carry the hash cached by the sending process
        self.c = Ctx(*parts)
        self.x = _Explorer(self.c, *flags, True)
        self.me, self.n = me, n
        self.order = {inv.name: k for k, inv in enumerate(self.x.invs)}
        self.fp = Fingerprint()
        # every state this worker knows: j >= 0, its own state of local number j; -1 - (g * n + o),
        # state number g of worker o (sent there and its number learnt: a successor found here
        # again goes there as an edge, two ints, not as a state). One dict, one hash per lookup.
        self.known: dict[State, int] = {}
        self.states: list[State] = []
        self.number = array("q")  # local -> sequential number
        self.local: dict[int, int] = {}  # sequential number -> local
        self.parent = array("q")  # sequential number of the parent, -1 for the initial state
        self.parent_owner = array("i")
        self.via: list[Via | None] = []
        self.vias: dict[Via, Via] = {}
        self.idle = bytearray()
        self.pred_dst, self.pred_src, self.pred_owner = array("i"), array("q"), array("i")
        self.frontier: list[int] = []  # local numbers of the level to expand, ascending
        self.good = bytearray()
        self.sent: list[list[State]] = [[] for _ in range(n)]
        self.own: list[Item] = []  # what expand sent to this worker itself
        self.edges: list[array[int]] = []  # by owner, during expand
        self.preds: dict[int, list[tuple[int, int]]] = {}  # for liveness: local -> (number, owner)

    def owner(self, s: State) -> int:
        return self.fp(s) % self.n if self.n > 1 else 0

    def store(self, s: State, parent: int, owner: int, via: Via | None) -> int:
        s = self.x.g.intern(s)
        j = len(self.states)
        self.known[s] = j
        self.states.append(s)
        self.parent.append(parent)
        self.parent_owner.append(owner)
        self.via.append(None if via is None else self.vias.setdefault(via, via))
        self.idle.append(0 if s.admin.prog else 1)
        return j

    def seed(self, s0: State) -> Merged:
        """Store the initial state if it is ours (number 0, given with the first expand)."""
        if self.owner(s0) != self.me:
            return Merged([])
        self.store(s0, -1, -1, None)
        found = self.check_state(s0, set())
        return Merged([0], [((-1, 0, 1, k), inv, msg, (0, self.me)) for k, inv, msg in found])

    def check_state(self, s: State, skip: set[str]) -> list[tuple[int, str, str]]:
        """The state invariants s breaks, with their places in check()'s order; as check() judges
        them, those that read no CPU once per shared part (model/memo.py)."""
        out = []
        for inv, known in self.x.memo.verdicts_of(s):
            if inv.name not in skip:
                assert inv.check is not None
                msg = inv.check(self.c, s) if known is None else known
                if msg is not None:
                    out.append((self.order[inv.name], inv.name, msg))
        return out

    def check_step(self, s: State, t: Transition, skip: set[str]) -> list[tuple[int, str, str]]:
        out = []
        for prop in self.x.steps_for(t.action):
            if prop.name not in skip:
                assert prop.step is not None
                msg = prop.step(self.c, s, t)
                if msg is not None:
                    out.append((self.x.steps.index(prop), prop.name, msg))
        return out

    def edge(self, j: int, i: int, owner: int) -> None:
        if self.x.do_live:
            self.pred_dst.append(j)
            self.pred_src.append(i)
            self.pred_owner.append(owner)

    def expand(self, numbers: list[int], ids: list[list[int]], violated: set[str]) -> Expanded:
        """Number the states the last merge stored and learn those of the states sent, then expand
        the level: every successor of every state of ours at this depth, checked and sent to its
        owner unless stored here (or, as an edge only, known to be stored there)."""
        self.assign(numbers)
        for o, got in enumerate(ids):
            if o != self.me:
                for ns, g in zip(self.sent[o], got, strict=True):
                    self.known[ns] = -1 - (g * self.n + o)
        boxes: list[dict[State, Item]] = [{} for _ in range(self.n)]
        self.edges = [array("q") for _ in range(self.n)]
        found: list[Found] = []
        skip = set(violated)
        transitions = 0
        for j in self.frontier:
            s, i = self.states[j], self.number[j]
            succ = self.x.next_states(self.c, s)
            if len(succ) >= ORDINALS:  # keys would collide: parent * ORDINALS + ordinal
                raise ValueError(f"workers: a state has {len(succ):,} successors, more than {ORDINALS:,}")
            for k, t in enumerate(succ):
                transitions += 1
                if self.x.steps:
                    for order, name, msg in self.check_step(s, t, skip):
                        skip.add(name)
                        found.append(((i, k, 0, order), name, msg, (i, self.me, t)))
                self.route(boxes, s, t, i * ORDINALS + k)
        self.sent = [list(b) for b in boxes]
        out = [list(b.values()) for b in boxes]
        self.own = out[self.me]  # kept here for merge, not sent round
        sent = [b"" if o == self.me else pickle.dumps(x, pickle.HIGHEST_PROTOCOL) for o, x in enumerate(out)]
        return Expanded(sent, self.edges, transitions, found)

    def route(self, boxes: list[dict[State, Item]], s: State, t: Transition, key: int) -> None:
        """Send t's state to its owner, unless it is known here (then only a reverse edge)."""
        i = key // ORDINALS
        j = self.known.get(t.state)  # known states are canonical: no need to canonicalise
        if j is None:
            ns = self.x.canon(t.state, s)
            j = None if ns is t.state else self.known.get(ns)
            if j is None:
                box = boxes[self.owner(ns)]
                item = box.get(ns)
                if item is None:
                    box[ns] = (ns, key, (t.action, t.args, t.outcome), [i])
                elif self.x.do_live:
                    item[3].append(i)
                return
        if j < 0:
            if self.x.do_live:
                g, o = divmod(-1 - j, self.n)
                self.edges[o].extend((g, i))
        elif self.number[j] != i:
            self.edge(j, i, self.me)

    def assign(self, numbers: list[int]) -> None:
        """The sequential numbers of the states the last merge stored (in the same order)."""
        base = len(self.number)
        for k, g in enumerate(numbers):
            self.number.append(g)
            self.local[g] = base + k
        self.frontier = list(range(base, base + len(numbers)))

    def merge(self, inboxes: Sequence[bytes], edges: Sequence[array[int]], violated: set[str]) -> Merged:
        """Store the states first reached at this level, in key order (that of check())."""
        new: dict[State, New] = {}
        seen: list[list[int | New]] = []  # per sender, per state sent: its number, or its New
        items: list[list[Item]] = [
            self.own if sender == self.me else pickle.loads(box) for sender, box in enumerate(inboxes)
        ]
        for sender, box in enumerate(items):
            for k in range(0, len(edges[sender]), 2):
                self.edge(self.local[edges[sender][k]], edges[sender][k + 1], sender)
            seen.append([])
            for ns, key, via, parents in box:
                j = self.known.get(ns)
                if j is not None:
                    seen[-1].append(self.number[j])
                    for p in parents:
                        if p != self.number[j]:
                            self.edge(j, p, sender)
                    continue
                n = new.get(ns)
                if n is None:
                    n = new[ns] = New(key, via, sender)
                elif key < n.key:
                    n.key, n.via, n.sender = key, via, sender
                n.preds.extend((p, sender) for p in parents)
                seen[-1].append(n)
        out = Merged(sorted(n.key for n in new.values()))
        out.ids = [
            [] if w == self.me else [-1 - x.key if isinstance(x, New) else x for x in ids]
            for w, ids in enumerate(seen)
        ]
        skip = set(violated)
        for ns, n in sorted(new.items(), key=lambda kv: kv[1].key):
            key, j = n.key, self.store(ns, n.key // ORDINALS, n.sender, n.via)
            for p, o in n.preds:
                self.edge(j, p, o)
            for order, name, msg in self.check_state(self.states[j], skip):
                skip.add(name)
                out.found.append(((key // ORDINALS, key % ORDINALS, 1, order), name, msg, (key, self.me)))
        return out

    def node(self, g: int) -> tuple[State, Via | None, int, int]:
        """State number g (ours): the state, how it was first reached and its parent's (number, owner)."""
        j = self.local[g]
        return self.states[j], self.via[j], self.parent[j], self.parent_owner[j]

    def live_start(self) -> list[list[int]]:
        """Backward reachability from the idle states: mark ours, send the remote predecessors."""
        for dst, src, o in zip(self.pred_dst, self.pred_src, self.pred_owner, strict=True):
            self.preds.setdefault(dst, []).append((src, o))
        self.good = bytearray(len(self.states))
        return self.mark([j for j in range(len(self.states)) if self.idle[j]])

    def live_step(self, inboxes: Sequence[list[int]]) -> list[list[int]]:
        return self.mark([self.local[g] for box in inboxes for g in box])

    def mark(self, todo: list[int]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        stack = [j for j in todo if not self.good[j]]
        for j in stack:
            self.good[j] = 1
        while stack:
            for src, o in self.preds.get(stack.pop(), ()):
                if o != self.me:
                    out[o].append(src)
                elif not self.good[self.local[src]]:
                    self.good[self.local[src]] = 1
                    stack.append(self.local[src])
        return out

    def live_first(self) -> int | None:
        """The smallest number of a state of ours from which no idle admin is reachable."""
        bad = [self.number[j] for j in range(len(self.states)) if not self.good[j]]
        return min(bad, default=None)

    def numbered(self) -> list[tuple[int, State]]:
        return list(zip(self.number, self.states, strict=True))

    def peak(self) -> int:
        return peak_rss()


class Backend(Protocol):
    """W workers, each holding one Partition: call a method on all of them, or on one."""

    n: int

    def call(self, name: str, args: Sequence[tuple[Any, ...]]) -> list[Any]: ...

    def call_one(self, w: int, name: str, *args: Any) -> Any: ...

    def close(self, abort: bool = False) -> None: ...


def _serve(conn: Connection, me: int, n: int, parts: tuple[Config, Profile, Layout], flags: Flags) -> None:
    """A worker process: run the Partition's methods the coordinator names, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    try:
        part = Partition(me, n, parts, flags)
        while (msg := conn.recv()) is not None:
            name, args = msg
            conn.send((True, getattr(part, name)(*args)))
    except EOFError:
        pass
    except Exception:  # the coordinator raises it, with this worker's traceback
        conn.send((False, traceback.format_exc()))


class ProcessBackend:
    """Forked worker processes, one Pipe each."""

    def __init__(self, n: int, parts: tuple[Config, Profile, Layout], flags: Flags) -> None:
        ctx = multiprocessing.get_context("fork")
        self.n = n
        self.conns: list[Connection] = []
        self.procs = []
        for me in range(n):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(theirs, me, n, parts, flags), daemon=True)
            p.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(p)

    def _get(self, w: int) -> Any:
        ok, value = self.conns[w].recv()
        if not ok:
            raise RuntimeError(f"worker {w} failed:\n{value}")
        return value

    def call(self, name: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        for conn, a in zip(self.conns, args, strict=True):
            conn.send((name, a))
        return [self._get(w) for w in range(self.n)]

    def call_one(self, w: int, name: str, *args: Any) -> Any:
        self.conns[w].send((name, args))
        return self._get(w)

    def close(self, abort: bool = False) -> None:
        """Stop the workers: let them finish (or, on abort, e.g. Ctrl-C, end them now)."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for p in self.procs:
            p.join(timeout=0 if abort else 5)
            if p.is_alive():
                p.terminate()
                p.join()


class RayBackend:
    """Ray actors, one per partition, on whatever cluster ray.init() joins (RAY_ADDRESS, or a
    local one with this machine's CPUs when none is running)."""

    def __init__(self, n: int, parts: tuple[Config, Profile, Layout], flags: Flags) -> None:
        import ray

        if not ray.is_initialized():
            # only errors on stderr: the report is the run's output, not ray's start-up chatter
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        resources: Callable[[], dict[str, float]] = ray.cluster_resources  # untyped in ray
        cpus = int(resources().get("CPU", 0))
        if cpus < n:  # an actor holds a CPU: more of them than CPUs would wait forever
            raise ValueError(f"workers: {n} Ray actors need {n} CPUs; the Ray cluster has {cpus}")
        self.ray = ray
        self.n = n
        actor = ray.remote(num_cpus=1)(Partition).options(scheduling_strategy="SPREAD")
        self.actors: list[Any] = [actor.remote(me, n, parts, flags) for me in range(n)]

    def call(self, name: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        refs = [getattr(a, name).remote(*x) for a, x in zip(self.actors, args, strict=True)]
        return list(self.ray.get(refs))

    def call_one(self, w: int, name: str, *args: Any) -> Any:
        return self.ray.get(getattr(self.actors[w], name).remote(*args))

    def close(self, abort: bool = False) -> None:
        for a in self.actors:
            self.ray.kill(a)


BACKEND_CLASSES: dict[str, Callable[[int, tuple[Config, Profile, Layout], Flags], Backend]] = {
    "process": ProcessBackend,
    "ray": RayBackend,
}


def parallel_check(
    c: Ctx,
    workers: int,
    *,
    backend: str = "process",
    symmetry: bool = True,
    reduce: bool = True,
    liveness: bool = True,
    only: set[str] | None = None,
    progress: Progress | None = None,
    states: list[State] | None = None,
    found: set[str] | None = None,
) -> CheckResult:
    """check(c) with the frontier partitioned over ``workers`` workers of ``backend`` (process or
    ray): the same states, transitions, depth, verdicts and traces. ``states``, when given, gets
    every stored state in check()'s order, and ``found`` each violated property's name as soon as the
    coordinator learns of it (as check()'s does). No max_states: where a sequential run stops inside a
    level depends on the order it expands the level in."""
    if workers < 1:
        raise ValueError(f"workers: expected at least 1, got {workers}")
    if backend not in BACKEND_CLASSES:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    t0 = time.perf_counter()
    flags = (symmetry, reduce, liveness, only)
    b = BACKEND_CLASSES[backend](workers, (c.cfg, c.prof, c.layout), flags)
    try:
        with gc_paused():  # the coordinator too: it unpickles every batch of the exchange
            run = _Run(b, _Explorer(c, *flags, True).res.checked, found)
            s0 = init(c)
            run.explore(canonical(s0) if symmetry else s0, progress, t0)
            if liveness and (only is None or "teardown_finishes" in only):
                run.liveness()
            res = run.result()
            if states is not None:
                states[:] = [s for _, s in sorted(x for part in b.call("numbered", [()] * b.n) for x in part)]
            res.peak_rss = peak_rss() + sum(b.call("peak", [()] * b.n))
    except BaseException:  # Ctrl-C, or a worker's error: do not wait for the others
        b.close(abort=True)
        raise
    b.close()
    res.seconds = time.perf_counter() - t0
    return res


class _Run:
    """The coordinator: the level loop, the numbering of each level's new states, the first
    violation of each property and its trace."""

    def __init__(self, b: Backend, checked: list[str], names: set[str] | None = None) -> None:
        self.b = b
        self.res = CheckResult(checked=checked)
        self.found: dict[str, Found] = {}
        self.names: set[str] = set() if names is None else names

    def note(self, found: Iterable[Found]) -> None:
        for f in found:
            if f[1] not in self.found or f[0] < self.found[f[1]][0]:
                self.found[f[1]] = f
                self.names.add(f[1])

    def explore(self, s0: State, progress: Progress | None, t0: float) -> None:
        b, res = self.b, self.res
        seeded: list[Merged] = b.call("seed", [(s0,)] * b.n)
        for m in seeded:
            self.note(m.found)
        stored, numbers = 1, [m.keys for m in seeded]
        ids: list[list[list[int]]] = [[[] for _ in range(b.n)] for _ in range(b.n)]
        while True:
            done = set(self.found)
            ex: list[Expanded] = b.call("expand", [(numbers[w], ids[w], done) for w in range(b.n)])
            res.transitions += sum(e.transitions for e in ex)
            for e in ex:
                self.note(e.found)
            merged: list[Merged] = b.call(
                "merge", [([e.boxes[o] for e in ex], [e.edges[o] for e in ex], done) for o in range(b.n)]
            )
            rank = {k: stored + r for r, k in enumerate(sorted(k for m in merged for k in m.keys))}
            if not rank:
                break
            numbers = [[rank[k] for k in m.keys] for m in merged]
            ids = [[[g if g >= 0 else rank[-1 - g] for g in m.ids[w]] for m in merged] for w in range(b.n)]
            for m in merged:  # a state's key becomes its number, now known
                self.note((f[0], f[1], f[2], (rank[int(f[3][0])], f[3][1])) for f in m.found)  # type: ignore[call-overload]
            stored += len(rank)
            res.depth += 1
            if progress is not None:
                progress(stored, len(rank), res.depth, time.perf_counter() - t0)
        res.states = stored

    def liveness(self) -> None:
        b = self.b
        out: list[list[list[int]]] = b.call("live_start", [()] * b.n)
        while any(any(box) for box in out):
            out = b.call("live_step", [([o[w] for o in out],) for w in range(b.n)])
        firsts = [(g, w) for w, g in enumerate(b.call("live_first", [()] * b.n)) if g is not None]
        if firsts:
            g, w = min(firsts)
            msg = stuck_message(b.call_one(w, "node", g)[0])
            self.note([((1 << 62, 0, 2, 0), "teardown_finishes", msg, (g, w))])

    def trace(self, g: int, w: int) -> list[Step]:
        path: list[Step] = []
        while g >= 0:
            s, via, g, w = self.b.call_one(w, "node", g)
            if via is not None:
                path.append(Step(via[0], via[1], via[2], s))
        path.reverse()
        return path

    def result(self) -> CheckResult:
        """The violations in the order check() records them: by where the sequential run meets them."""
        for _, name, msg, where in sorted(self.found.values(), key=lambda f: f[0]):
            trace = self.trace(int(where[0]), int(where[1]))  # type: ignore[call-overload]
            if len(where) == 3:
                t = where[2]
                assert isinstance(t, Transition)
                trace.append(Step(t.action, t.args, t.outcome, t.state))
            self.res.violations[name] = Violation(INVARIANTS[name], msg, trace)
        return self.res
