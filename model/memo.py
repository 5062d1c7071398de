"""Fault steps and invariants memoised on the part of the state they read (issue 15).

A state is its CPUs and everything else, its shared part. With many CPUs few shared parts recur
in many states: the race at 12 CPUs has 61,369 states but 21 shared parts and 11 CPU records.
A fault step reads the shared part and its own CPU only, and most invariants the shared part
alone, so Memo runs each once per (shared part, CPU record) or per shared part, on a probe: the
state with everything the call is not given replaced by UNREAD. Any use of UNREAD (a field, an
element, iteration, a comparison, a hash, printing) raises Peeked, and a call that peeks runs on
the real state every time instead, as the plain checker does; so does a step that changes
another CPU. A memoised result therefore provably depends on nothing left out of its probe: the
memo is exact by construction, not by a claim about the spec (tests/model/test_fast_paths.py
compares whole runs with the plain checker all the same). The invariant verdicts serve both of
the checker's fast paths; the fault steps only the memo path (model/checker.py MEMO_MIN_CPUS).

The admin and the user programs are not memoised: the admin's grace-period steps read every CPU,
and so does every munmap (a fault holds mmap_lock); measured, memoising the rest gained nothing.

States are numbered by their shared part (an int) and their CPU tuple, so the checker's index
hashes a few small records instead of the whole nested state, and the symmetry renaming of files
and vmas is computed once per shared part.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

from devdax.spec.ctx import Ctx
from devdax.spec.invariants import Invariant
from devdax.spec.state import Cpu, State
from devdax.spec.symmetry import Canonicaliser
from devdax.spec.system import Transition

#: Where the CPUs sit among State's fields; the shared part is every other field, in order.
CPUS = State._fields.index("cpus")
_FILES, _VMAS, _ENTRIES = (State._fields.index(f) for f in ("files", "vmas", "entries"))
assert max(_FILES, _VMAS, _ENTRIES) < CPUS  # all three in the head of a shared part
#: How a transition was made: its action, args and outcome (the checker's record of a step).
Via = tuple[str, tuple[object, ...], str]
#: A shared part: State's fields other than cpus.
Shared = tuple[Any, ...]
_shared_of = operator.itemgetter(*(k for k in range(len(State._fields)) if k != CPUS))


class Peeked(BaseException):
    """A memoised call used a part of the state its probe left out. A BaseException, so that no
    `except Exception` on the way can take it for the spec's own error."""


def _peek(*args: object, **kwargs: object) -> NoReturn:
    raise Peeked


#: Every way Python code can use an object, beyond asking its type or its identity.
_USES = " ".join(
    (
        "__getitem__ __iter__ __len__ __bool__ __contains__ __call__",
        "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __hash__",
        "__repr__ __str__ __format__ __index__ __int__ __float__",
    )
).split()


def _attribute(self: object, name: str) -> NoReturn:
    """A field or method of UNREAD: Peeked. A dunder name is what tools ask of any object
    (pytest's __test__, copy's __deepcopy__), not the spec's use: plain AttributeError."""
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    raise Peeked


#: What a probe holds in place of the parts a call is not given: every use raises Peeked.
Unread = type("Unread", (), {"__slots__": (), **dict.fromkeys(_USES, _peek), "__getattr__": _attribute})

UNREAD: Any = Unread()
#: How a peek shows: Peeked from UNREAD itself, or, under mypyc (devdax/compiled.py), the TypeError
#: of the type check compiled code makes when it takes UNREAD out of a field or tuple typed Cpu
#: or tuple; a TypeError of the spec's own would come again on the real state.
PEEKS = (Peeked, TypeError)


#: The properties (the state invariants of a shared part, the step properties of a step) that do
#: not simply hold, in the order they are checked: with the message of their failure, or with None
#: when they read the CPUs and must be judged on each real state or transition.
Verdicts = tuple[tuple[Invariant, str | None], ...]


class Move(NamedTuple):
    """A memoised step of one CPU: how it was made, the shared part and the CPU's record after
    it."""

    via: Via
    sid: int
    cpu: Cpu
    cpu_id: int  # Memo.cpu_id(cpu)
    #: its step properties that do not simply hold
    verdicts: Verdicts


#: How often a CPU's steps from one shared part run on the real state before they are probed: a
#: probe costs about one and a half real runs (the run, then the shared part and step properties
#: of each result), and in the v4.10 default most pairs are met once or twice (43,182 pairs, 71,935
#: meetings), while in the race each pair is met thousands of times.
PROBE_AFTER = 2


class Memo:
    """The shared parts met so far, numbered, and every memoised call on them."""

    def __init__(
        self,
        c: Ctx,
        cpu_steps: Callable[[Ctx, State, int], list[Transition]],
        invariants: list[Invariant],
        steps_for: Callable[[str], list[Invariant]],
        symmetry: bool,
    ) -> None:
        self.c, self.cpu_steps, self.invariants, self.steps_for = c, cpu_steps, invariants, steps_for
        self.symmetry = symmetry
        self.ids: dict[Shared, int] = {}
        self.heads: list[Shared] = []  # per shared part: the fields before cpus
        self.tails: list[Shared] = []  # and after
        self.vias: dict[Via, Via] = {}
        self.cpu_ids: dict[Cpu, int] = {}
        self.cpu_recs: list[Cpu] = []
        self._cpu: dict[tuple[int, int, Cpu], tuple[Move, ...] | None] = {}
        self._met: dict[tuple[int, int, Cpu], int] = {}  # CPU steps met, not yet probed: how often
        self._canon: dict[int, tuple[int, dict[int, int] | None]] = {}
        self._verdicts: dict[int, Verdicts] = {}
        self._by_shared: dict[Shared, Verdicts] = {}  # verdicts_of's
        self._kinds: dict[Verdicts, Verdicts] = {}  # one copy of each distinct verdict
        self._peeked: set[str] = set()  # the state invariants that have read a CPU on a probe
        self.canonicaliser = Canonicaliser()

    # -- shared parts ------------------------------------------------------------------------

    def sid(self, s: State) -> int:
        """The number of s's shared part (numbered on first sight)."""
        key: Shared = _shared_of(s)
        n = self.ids.get(key)
        if n is None:
            n = self.ids[key] = len(self.heads)
            self.heads.append(key[:CPUS])
            self.tails.append(key[CPUS:])
        return n

    def cpu_id(self, cpu: Cpu) -> int:
        """The number of a CPU record (numbered on first sight; cpu_recs[n] is the record)."""
        n = self.cpu_ids.get(cpu)
        if n is None:
            n = self.cpu_ids[cpu] = len(self.cpu_recs)
            self.cpu_recs.append(cpu)
        return n

    def state_of(self, sid: int, ids: tuple[int, ...]) -> State:
        """The state of shared part sid whose CPUs have these record numbers."""
        return self.state(sid, tuple([self.cpu_recs[x] for x in ids]))

    def state(self, sid: int, cpus: object) -> State:
        """The state of shared part sid with these CPUs."""
        return tuple.__new__(State, self.heads[sid] + (cpus,) + self.tails[sid])

    def via(self, t: Transition) -> Via:
        v = (t.action, t.args, t.outcome)
        return self.vias.setdefault(v, v)

    # -- memoised calls ----------------------------------------------------------------------

    def cpu(self, sid: int, i: int, cpu: Cpu, n: int) -> tuple[Move, ...] | None:
        """CPU i's steps (record cpu, n CPUs in all) from shared part sid; None when they read
        another CPU and must run on each real state, as they do the first PROBE_AFTER times."""
        key = (sid, i, cpu)
        if key in self._cpu:
            return self._cpu[key]
        met = self._met.get(key, 0)
        if met < PROBE_AFTER:
            self._met[key] = met + 1
            return None
        del self._met[key]
        others = (UNREAD,) * n
        probe = self.state(sid, others[:i] + (cpu,) + others[i + 1 :])
        moves: tuple[Move, ...] | None
        try:
            ts = self.cpu_steps(self.c, probe, i)
            if all(_only_cpu(t.state.cpus, i, n) for t in ts):
                moves = tuple(self._move(probe, t, t.state.cpus[i]) for t in ts)
            else:
                moves = None
        except PEEKS:
            moves = None
        self._cpu[key] = moves
        return moves

    def _move(self, probe: State, t: Transition, cpu: Cpu) -> Move:
        props = self.steps_for(t.action)

        def run(prop: Invariant) -> str | None:
            assert prop.step is not None
            return prop.step(self.c, probe, t)

        verdicts = _verdicts(props, run)
        return Move(self.via(t), self.sid(t.state), cpu, self.cpu_id(cpu), verdicts)

    # -- symmetry and invariants -------------------------------------------------------------

    def canon(self, sid: int) -> tuple[int, dict[int, int] | None]:
        """The canonical shared part of sid (spec.symmetry.rename) and the vma renaming its CPUs
        follow (None: identity); the CPUs are then sorted (spec.symmetry.sorted_cpus)."""
        r = self._canon.get(sid)
        if r is None:
            r = self._canon[sid] = self._rename(sid)
        return r

    def _rename(self, sid: int) -> tuple[int, dict[int, int] | None]:
        head = self.heads[sid]
        files, vmas, entries = head[_FILES], head[_VMAS], head[_ENTRIES]
        if not self.symmetry or (len(files) <= 1 and len(vmas) <= 1):
            return sid, None
        # per triple, far fewer than shared parts: 971 in the v4.10 default
        nf, nv, ne, vmap = self.canonicaliser.renaming(files, vmas, entries)
        renamed = self.state(sid, ())._replace(files=nf, vmas=nv, entries=ne)
        return self.sid(renamed), vmap

    def verdicts_of(self, s: State) -> Verdicts:
        """verdicts() for the whole-state path, keyed by s's shared part itself (no number)."""
        key: Shared = _shared_of(s)
        v = self._by_shared.get(key)
        if v is None:
            v = self._judge(s._replace(cpus=UNREAD))
            v = self._by_shared[key] = self._kinds.setdefault(v, v)
        return v

    def verdicts(self, sid: int) -> Verdicts:
        """The state invariants on shared part sid (Verdicts)."""
        v = self._verdicts.get(sid)
        if v is None:
            v = self._judge(self.state(sid, UNREAD))
            v = self._verdicts[sid] = self._kinds.setdefault(v, v)
        return v

    def _judge(self, probe: State) -> Verdicts:

        def run(inv: Invariant) -> str | None:
            assert inv.check is not None
            return inv.check(self.c, probe)

        return _verdicts(self.invariants, run, self._peeked)


def _verdicts(
    props: list[Invariant], run: Callable[[Invariant], str | None], peeked: set[str] | None = None
) -> Verdicts:
    """Each property run on a probe, in order: those that fail with their message, those that
    peek with None (judged on each real state or transition); those that hold left out.

    ``peeked``, when given, names the properties that peeked on an earlier probe: they are given
    None without running. None is always a right verdict (it only asks for the real judgement),
    and a peek raises through every compiled frame on its way (a traceback entry each), which
    was most of what judging a new shared part cost: lock_balanced and refcount_exact_all read
    the CPUs on every one."""
    out: list[tuple[Invariant, str | None]] = []
    for prop in props:
        if peeked is not None and prop.name in peeked:
            out.append((prop, None))
            continue
        try:
            msg = run(prop)
        except PEEKS:
            if peeked is not None:
                peeked.add(prop.name)
            out.append((prop, None))
            continue
        if msg is not None:
            out.append((prop, msg))
    return tuple(out)


def _only_cpu(cpus: tuple[Any, ...], i: int, n: int) -> bool:
    """The step left every CPU but i as UNREAD: it wrote no other CPU."""
    return len(cpus) == n and all(x is UNREAD for k, x in enumerate(cpus) if k != i)
