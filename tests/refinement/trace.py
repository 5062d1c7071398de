"""Trace validation of concurrent runs on impl: a run is accepted only if its log is a path of the spec.

Three parts, one module each:

* the plan (plan.py): what a run will do -- the setup's touches, each thread's actions and pauses --
  drawn from the run's seed before anything runs;
* the runner (runner.py; its seeded scheduler in scheduler.py): carries the plan out on impl with
  real threads (touchers, an admin thread that disables and re-enables the device, a closer, a user
  thread that opens, maps, unmaps and closes) and collects the log into a ``Run``;
* the trace checker (checker.py): replays the log on the spec, one method per event kind, and
  accepts the run only if some path of the spec explains every event, touch and final state.

This module holds what passes between the runner and the checker: the ``Run`` and its records.

The log is one total order over both processes (impl/tracelog.py): every linearization point is
done inside a process-shared critical section and numbered by one global counter. The main process
logs the admin steps (and, as the step's own point, the stores of alive: ``alive_clear``,
``alive_set``), grace-period start/end, unmap, closes, puts and releases; impl/srcu.py logs the
phase flip and the end of each real grace period; each handler worker (one spec CPU) logs, per
fault, ``read_lock`` (the SRCU slot store), ``check`` (alive as read, and the decision: install at
a size, or SIGBUS with its reason), ``insert`` (bytes the UFFDIO_CONTINUE changed; 0 = all present,
the kernel's -EBUSY) or ``poison``, and ``read_unlock``, each attributed to the faulting thread
(``HRec``). A toucher's action is known by its window: the numbers before it began and after it
returned, as log positions once the run is collected (``TouchRec``, ``UserRec``, ``AdminRec``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from devdax.impl.dax import Event
from devdax.spec.state import State

from .driver import SHAPES

SHAPE_2 = next(m for m in SHAPES if m.name == "shared-2")
_NAMES = re.compile(r"\b(dax\d+\.\d+|region\d+|file\d+|cpu\d+)\b")


@dataclass(frozen=True)
class TouchRec:
    cpu: int  # the toucher (not a spec CPU: faults run on the handler's workers)
    vma: int  # spec vma slot
    addr: int  # spec address
    write: bool
    k0: int  # window [k0, k1) as log indices (the runner converts from sequence numbers)
    k1: int
    outcome: str
    #: a touch of the user's mapping: (file, impl start) as its mmap event names it; ``vma`` is then
    #: -1 and ``addr`` the offset in the mapping (the checker finds the spec slot at the mmap event)
    ukey: tuple[str, str] | None = None


@dataclass(frozen=True)
class AdminRec:
    kind: str  # disable | enable
    node: int
    k0: int
    k1: int
    outcome: str


@dataclass(frozen=True)
class UserRec:
    """A file operation of the user thread (open, mmap, munmap, close of its own file and mapping):
    one that succeeded is also an event of the log (applied there); one that failed is checked like
    a touch: the spec's call must fail with the same errno at some point of its window."""

    kind: str  # open | mmap | munmap | close
    file: str  # impl file name ("" before the open succeeded)
    k0: int
    k1: int
    outcome: str  # ok | errno name


@dataclass(frozen=True)
class HRec:
    """One handler point of the merged log (impl/tracelog.py record, translated to spec terms)."""

    kind: str  # read_lock | check | insert | poison | read_unlock | gp_flip | gp_done
    cpu: int  # the handler worker = the spec CPU (its SRCU slot is the reader)
    toucher: int  # the thread whose fault it is (-1: not a toucher of this run)
    vma: int  # spec vma slot (-1: no vma of the run)
    addr: int  # spec address of the fault
    alive: int = 0  # check: alive as the handler read it
    install: bool = False  # check: the decision
    size: int = 0  # check: the install size; insert/poison: the unit
    reason: str = ""  # check: Decision.reason
    changed: int = 0  # insert/poison: bytes the ioctl changed (0: all present, -1: failed)
    ukey: tuple[str, str] | None = None  # a fault on the user's mapping (as TouchRec.ukey)


@dataclass
class Run:
    """One race run as the checker reads it: the merged log (the race is ``events[k_start:]``),
    every thread's records, the spec state the race began from and abstraction(impl) at its end,
    and what is needed to name and replay it."""

    seed: int
    profile: str
    events: list[Event]
    k_start: int
    touches: list[list[TouchRec | UserRec]]  # per run thread: touches; last, the user thread's
    admin_ops: list[AdminRec]
    files: dict[str, int]  # impl file name -> spec slot
    devs: dict[str, int]  # impl device name -> spec device index
    s0: State
    final: State  # abstraction(impl) after the threads joined
    hrecs: dict[int, HRec] = field(default_factory=dict)  # log index -> handler point
    notes: list[str] = field(default_factory=list)
    scheduled: bool = False  # the interleaving was the seeded scheduler's
    impl: str = ""  # the impl profile's name (a variant: "base+name")
    choices: list[str] = field(default_factory=list)  # the scheduler's decisions, in order
    node: int = 0  # spec device the user thread opens
    user_ops: list[UserRec] = field(default_factory=list)  # all of them, failed or not
    script: str = ""  # a scripted run (chooser): the test that makes it

    def rerun(self) -> str:
        """The one-line command that replays this run (exactly, when it was scheduled)."""
        if self.script:
            return f".venv/bin/pytest -p no:randomly '{self.script}'"
        env = f"DEVDAX_TRACE_SEED={self.seed}"
        variant = self.impl.partition("+")[2]
        if variant:
            env += f" DEVDAX_TRACE_VARIANT={variant}"
        test = "test_scheduled_runs" if self.scheduled else "test_trace_validation"
        where = f"tests/refinement/test_trace_validation.py::{test}[{self.profile}]"
        return f"{env} .venv/bin/pytest -p no:randomly '{where}'"

    def canonical(self) -> list[str]:
        """The log since the race began up to renaming: objects (files, devices, regions, CPUs)
        by first appearance, large numbers (minors) blanked: equal for two runs that took the same
        path, whatever names and minors the bus handed out."""
        names: dict[str, str] = {}

        def name(m: re.Match[str]) -> str:
            return names.setdefault(m.group(0), f"o{len(names)}")

        out = []
        for e in self.events[self.k_start :]:
            obj = names.setdefault(e.obj, f"o{len(names)}")
            detail = _NAMES.sub(name, e.detail)
            detail = " ".join("#" if w.isdigit() and int(w) > 4096 else w for w in detail.split())
            out.append(f"{e.kind} {obj} {detail}")
        return out
