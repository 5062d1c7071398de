"""The seeded scheduler of a run's deterministic mode (runner.py, ``scheduled=True``).

Every run thread and handler worker waits at a gate before each logged point (impl/tracelog.py),
and the scheduler, seeded by the run's seed, lets one through whenever no thread can move
otherwise: the same seed then gives the same log (trace.Run.canonical), and a rejected run's report
names the one command that replays it. A test may replace the seeded choice by a scripted one
(``Chooser``; tests/refinement/test_munmap_race.py).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable

from devdax.impl import tracelog
from devdax.impl.tracelog import TraceLog

ACTION = 100  # the gate kind of a run thread's own action (touch, admin call, close)

#: a scripted scheduler's choice: given the waiting gates' labels ("who:what", Scheduler._label) in
#: canonical order and the run's random generator, the index of the one to let through
Chooser = Callable[[list[str], random.Random], int]


def _task_state(pid: int, tid: int) -> str:
    """The scheduler state letter of a thread (R running/runnable, S/D sleeping, ...); "X" if gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return "X"
    return data.rpartition(b")")[2].split()[0].decode()


class Scheduler:
    """The seeded scheduler of deterministic mode: every run thread and handler worker waits at a
    gate before each of its logged points (and a run thread before each of its own actions); when
    no thread can move any more -- each one waits at a gate, has finished, or sleeps in the kernel
    (a toucher in its page fault waits for a worker; a writer in its grace period for a reader; a
    closer for the bus lock) -- the scheduler lets exactly one waiter through, chosen by its random
    generator over the waiters in a canonical order (main-process threads by role, workers by the
    toucher whose fault they serve: which worker the kernel wakes for a fault is not ours to fix,
    and the spec's CPUs are interchangeable).

    "Cannot move" is observed, not proved: no thread of the run or of the handler is runnable (R in
    /proc) for ``settle`` consecutive polls. A thread that is about to move but is neither runnable
    nor at a gate for that long (none known) would make a run differ; the reproduction test
    compares whole logs, so such a difference shows."""

    def __init__(
        self,
        tr: TraceLog,
        seed: int,
        handler_pid: int,
        tids: dict[int, int],
        settle: int = 4,
        poll: float = 2.5e-4,
        chooser: Chooser | None = None,
    ) -> None:
        self.tr = tr
        self.rng = random.Random(seed * 7919 + 17)
        self.hpid = handler_pid
        self.tids = tids  # toucher native id -> toucher index (filled by touchers)
        self.settle = settle
        self.poll = poll
        self.choices: list[str] = []
        self.chooser = chooser  # None: the seeded random choice
        self.error: str | None = None
        self.main_tids: list[int] = []

    def _key(self, g: int) -> tuple[int, int, int, int]:
        gate = self.tr.area.gates[g]
        if g >= tracelog.MAIN_GATE0:
            return (0, g, 0, 0)
        return (1, self.tids.get(int(gate.ptid), 99), int(gate.waiting), g)

    def _label(self, g: int) -> str:
        """ "who:what" of a waiting gate: main<k> (the run's threads by role) or worker(toucher<j>)
        (a handler worker by the toucher whose fault it serves), and the point it waits before."""
        gate = self.tr.area.gates[g]
        kind = int(gate.waiting)
        who = (
            f"main{g - tracelog.MAIN_GATE0}"
            if g >= tracelog.MAIN_GATE0
            else f"worker(toucher{self.tids.get(int(gate.ptid), -1)})"
        )
        what = tracelog.KIND_NAMES.get(kind, "action" if kind == ACTION else str(kind))
        return f"{who}:{what}"

    def _waiting(self) -> list[int]:
        return [g for g in range(tracelog.GATES) if self.tr.area.gates[g].waiting]

    def _still(self) -> bool:
        at_gate = {int(self.tr.area.gates[g].tid) for g in self._waiting()}
        try:
            htids = [int(t) for t in os.listdir(f"/proc/{self.hpid}/task")]
        except OSError:
            htids = []
        for pid, tids in ((os.getpid(), self.main_tids), (self.hpid, htids)):
            for tid in tids:
                if tid not in at_gate and _task_state(pid, tid) == "R":
                    return False
        return True

    def run(self, threads: list[threading.Thread]) -> None:
        """The scheduler thread's body: until the run's threads have finished and the handler has
        nothing left at a gate."""
        quiet = 0
        stuck_since = time.monotonic()
        while True:
            time.sleep(self.poll)
            if not self._still():
                quiet = 0
                continue
            quiet += 1
            if quiet < self.settle:
                continue
            waiting = self._waiting()
            if not waiting:
                if not any(t.is_alive() for t in threads):
                    return
                if time.monotonic() - stuck_since > 10:
                    self.error = "no thread at a gate and none runnable for 10 s (deadlock?)"
                    return
                continue
            order = sorted(waiting, key=self._key)
            labels = [self._label(x) for x in order]
            k = self.chooser(labels, self.rng) if self.chooser is not None else self.rng.randrange(len(order))
            g = order[k]
            gate = self.tr.area.gates[g]
            self.choices.append(labels[k])
            passes = int(gate.passes)
            gate.go = 1
            deadline = time.monotonic() + 10
            while gate.passes == passes and time.monotonic() < deadline:
                time.sleep(self.poll / 4)
            if gate.passes == passes:
                self.error = f"gate {g} did not pass in 10 s"
                return
            quiet = 0
            stuck_since = time.monotonic()
