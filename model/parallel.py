"""Breadth-first exploration over worker processes, each owning the states of one partition.

The search is level-synchronous: each worker (model/partition.py) expands the states it owns at
depth d and sends each successor to the worker that owns it; the owners deduplicate. Only the
coordinator's exchange of those batches and of a few integers per new state is needed between
levels, so the same code runs over multiprocessing (fork) or Ray actors (``Backend``); no
networking is written here.

Results equal check()'s: same states, counts, depth, verdicts and traces. The coordinator ranks
each level's discovery keys (model/partition.py) into sequential numbers, and the first violation
of each property is the one with the smallest number (state invariants), (parent, ordinal) (step
properties) or number (liveness), as in check().

Liveness (teardown_finishes) runs as check() decides it, backward reachability from the states
with an idle admin, with the reverse edges kept by the owner of each edge's target and the
propagation exchanged level by level like the search.

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
import logging
import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

from devdax.model.checker import (
    CheckResult,
    Progress,
    Step,
    Violation,
    _Explorer,
    gc_paused,
    peak_rss,
    stuck_message,
)
from devdax.model.partition import Expanded, Flags, Found, Merged, Partition
from devdax.spec.config import Config, Layout
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS
from devdax.spec.profiles import Profile
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import Transition, init

BACKENDS = ("process", "ray")


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


class _Actor:
    """A Partition as a Ray actor. Ray makes an actor by subclassing its class, which a Partition
    compiled by mypyc (`--compiled`) does not allow, so the actor holds one and calls it by name,
    as a forked worker does (_serve)."""

    def __init__(self, me: int, n: int, parts: tuple[Config, Profile, Layout], flags: Flags) -> None:
        self.part = Partition(me, n, parts, flags)

    def call(self, name: str, *args: Any) -> Any:
        return getattr(self.part, name)(*args)


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
        actor = ray.remote(num_cpus=1)(_Actor).options(scheduling_strategy="SPREAD")
        self.actors: list[Any] = [actor.remote(me, n, parts, flags) for me in range(n)]

    def call(self, name: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        refs = [a.call.remote(name, *x) for a, x in zip(self.actors, args, strict=True)]
        return list(self.ray.get(refs))

    def call_one(self, w: int, name: str, *args: Any) -> Any:
        return self.ray.get(self.actors[w].call.remote(name, *args))

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
