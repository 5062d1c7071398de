"""What one worker of the partitioned search holds: the states it owns and their numbers.

A state belongs to worker ``fingerprint(state) % W`` (model/parallel.py runs the levels). Each
worker expands the states it owns at depth d (successors, canonicalisation and properties exactly
as check() does, reusing its _Explorer), sends each successor it does not own, or owns but has not
stored, to its owner, and the owners deduplicate (merge).

Results equal check()'s. The key is that every stored state carries its sequential discovery
index. check() numbers the states of depth d + 1 in the order of their first discovery, that is by
(number of the parent, position of the successor in the parent's list), and takes that first
discoverer as the parent. So each successor is sent with the key ``parent * ORDINALS + ordinal``;
an owner keeps, per new state, the smallest key over every discoverer; the coordinator sorts all
keys of the level and the rank of a key, added to the number of states stored before the level, is
the state's sequential number. Parent links then name (number, owner) pairs.

The fingerprint is not Python's hash(): that of a str differs between processes (PYTHONHASHSEED),
and Ray's workers are not forked. It is a BLAKE2b digest of each record with its IntEnums and bools
as plain ints, memoised (few distinct records), folded over the tuple fields (FINGERPRINTED: the
vmas and the CPUs) into 64 bits.

This module runs once per successor and is compiled with the spec (devdax/compiled.py); the
coordinator and the transports around it (model/parallel.py) run a few times per level and are
not: mypyc type-checks what they import, Ray included, which made the build three times longer.
"""

from __future__ import annotations

import gc
import hashlib
import pickle
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from devdax.model.checker import Via, _Explorer, peak_rss
from devdax.spec.config import Config, Layout
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import Profile
from devdax.spec.state import State
from devdax.spec.system import Transition

#: Successors per state are numbered below this; a discovery key is parent * ORDINALS + ordinal.
ORDINALS = 1 << 24
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


#: The State fields the fingerprint reads, which decide a state's owner. Few steps change the
#: mappings and the CPUs at once (a fault step changes the CPUs, mmap and munmap the vmas; admin
#: steps, opens, closes and releases neither), so a successor often has its parent's owner and stays
#: with the worker that found it; yet states differ in them evenly enough to split each level in
#: two. Measured over the v4.10 default (transitions crossing to the other worker; the larger half
#: of a level against the mean): these two 19% and 1.037, all six of devs, files, vmas, entries,
#: cpus and admin 32% and 1.013; the race at 12 CPUs (one file, one vma) 47% and 1.015 (50%,
#: 1.017); files and vmas alone 18% and 1.051, but the race's one file and vma put every state in
#: one worker. --devices 2 --workers 2: bench/RESULTS.md.
FINGERPRINTED = ("vmas", "cpus")


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
        # again goes there as an edge, two ints, not as a state); during a level, a state put in a
        # box: the list of its parents, which each later discoverer joins. One dict, one hash per
        # lookup.
        self.known: dict[State, int | list[int]] = {}
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
        # for liveness, the reverse edges grouped by target (compressed rows): those of local
        # state j are first[j]:first[j + 1] of pred (a local number, or one of another worker's
        # states by its sequential number) and pred_at (the worker that owns it)
        self.first, self.pred, self.pred_at = array("q"), array("q"), array("i")

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
        boxes: list[list[Item]] = [[] for _ in range(self.n)]
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
        self.sent = [[item[0] for item in box] for box in boxes]
        self.own = boxes[self.me]  # kept here for merge, not sent round
        sent = [
            b"" if o == self.me else pickle.dumps(box, pickle.HIGHEST_PROTOCOL) for o, box in enumerate(boxes)
        ]
        return Expanded(sent, self.edges, transitions, found)

    def route(self, boxes: list[list[Item]], s: State, t: Transition, key: int) -> None:
        """Send t's state to its owner, unless it is known here (then only a reverse edge) or
        already in a box at this level (then only one more parent for it).

        The lookup comes before canonicalising, as check()'s does: known states are canonical, and
        a successor equal to one is that state. The states boxed at this level are in the same
        dict: without them, each of the many successors that meet a state first reached earlier
        in the level was canonicalised and fingerprinted again (check() has stored it by then).
        """
        i = key // ORDINALS
        j = self.known.get(t.state)
        if j is None:
            ns = self.x.canon(t.state, s)
            if ns is not t.state:
                j = self.known.get(ns)
            if j is None:
                parents = [i]
                ns = self.x.g.intern(ns)  # kept in known for good: made of the parts stored here
                self.known[ns] = parents
                boxes[self.owner(ns)].append((ns, key, (t.action, t.args, t.outcome), parents))
                return
        if isinstance(j, list):
            if self.x.do_live:
                j.append(i)
        elif j < 0:
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
                if isinstance(j, int):  # stored before (a list: boxed at this level, not stored)
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
        """Backward reachability from the idle states: mark ours, send the remote predecessors.

        The edges are regrouped by target into flat arrays first, as check()'s liveness pass keeps
        them (_cannot_reach_idle): a dict of lists of pairs, one per edge, took more memory than the
        states themselves with two devices.
        """
        n, m = len(self.states), len(self.pred_dst)
        first = array("q", bytes(8 * (n + 1)))
        for dst in self.pred_dst:
            first[dst + 1] += 1
        for j in range(n):
            first[j + 1] += first[j]
        fill = array("q", first)
        pred, pred_at = array("q", bytes(8 * m)), array("i", bytes(4 * m))
        for dst, src, o in zip(self.pred_dst, self.pred_src, self.pred_owner, strict=True):
            k = fill[dst]
            fill[dst] = k + 1
            pred[k] = self.local[src] if o == self.me else src
            pred_at[k] = o
        self.first, self.pred, self.pred_at = first, pred, pred_at
        self.pred_dst, self.pred_src, self.pred_owner = array("i"), array("q"), array("i")
        self.good = bytearray(n)
        return self.mark([j for j in range(n) if self.idle[j]])

    def live_step(self, inboxes: Sequence[list[int]]) -> list[list[int]]:
        return self.mark([self.local[g] for box in inboxes for g in box])

    def mark(self, todo: list[int]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        stack = [j for j in todo if not self.good[j]]
        for j in stack:
            self.good[j] = 1
        first, pred, pred_at, good, me = self.first, self.pred, self.pred_at, self.good, self.me
        while stack:
            j = stack.pop()
            for k in range(first[j], first[j + 1]):
                src, o = pred[k], pred_at[k]
                if o != me:
                    out[o].append(src)
                elif not good[src]:
                    good[src] = 1
                    stack.append(src)
        return out

    def live_first(self) -> int | None:
        """The smallest number of a state of ours from which no idle admin is reachable."""
        bad = [self.number[j] for j in range(len(self.states)) if not self.good[j]]
        return min(bad, default=None)

    def numbered(self) -> list[tuple[int, State]]:
        return list(zip(self.number, self.states, strict=True))

    def peak(self) -> int:
        return peak_rss()
