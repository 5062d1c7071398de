"""Concurrent runs on impl and the checker that accepts a run only if it is a path of the spec.

A run (``race_run``): sequential setup through the lockstep driver (open two files, map each), then
real concurrency: toucher threads touch units of the mappings through process_vm_readv/writev, with
no lock of ours (their faults are serviced by the handler process's workers under the real SRCU
read lock), while an admin thread disables (and, modern, enables) the device, a closer thread
closes an fd, and a user thread opens the node, maps SHAPE_2 through its new file, unmaps it and
closes it (file operations serialise with the admin program on the bus lock, as the kernel's do on
the device's locks; faults do not). Sleeps between the actions come from the run's seed.

Two modes. Free-running (the mass test): the OS interleaves; the seed fixes only the plan, so a
failing seed may not fail again. Scheduled (``scheduled=True``): every run thread and handler
worker waits at a gate before each logged point (impl/tracelog.py), and a ``Scheduler`` seeded by
the run's seed lets one through whenever no thread can move otherwise; the same seed then gives the
same log (``Run.canonical``), and a rejected run's report names the one command that replays it.

The log is one total order over both processes (impl/tracelog.py): every linearization point is
done inside a process-shared critical section and numbered by one global counter. The main process
logs the admin steps (and, as the step's own point, the stores of alive: ``alive_clear``,
``alive_set``), grace-period start/end, unmap, closes, puts and releases; impl/srcu.py logs the
phase flip and the end of each real grace period; each handler worker (one spec CPU) logs, per
fault, ``read_lock`` (the SRCU slot store), ``check`` (alive as read, and the decision: install at
a size, or SIGBUS with its reason), ``insert`` (bytes the UFFDIO_CONTINUE changed; 0 = all present,
the kernel's -EBUSY) or ``poison``, and ``read_unlock``, each attributed to the faulting thread.
A toucher's action is known by its window: the numbers before it began and after it returned.

The checker (``check_trace``) replays the log on the spec, every event being the spec step at that
position: each admin step event must be the step the spec's admin program takes next (same name,
same outcome; a step the impl skipped must be one the spec skips), applied at its linearization
point; each close is do_close of the file's slot; each handler point is the step of its CPU
(fault_lock, fault_check with the mm's fallback retries taken at once, since the handler negotiates
the size inside one section, fault_insert, fault_unlock) and must agree with the spec on alive, the
decision, the size and whether the entry was already there; ``synchronize_wait`` is blocked while a
CPU that was inside its read section at ``synchronize_start`` has not left it. Separately, impl's
own SRCU must have waited, at each ``gp_done``, for every section open at the ``gp_flip`` before it.
A touch has no step of its own: its outcome must be what an access sees at some point of its window
(ok: an entry covers the address; SIGBUS: a fault there would end in SIGBUS). A user file operation
that succeeded is the spec's do_open/do_mmap/do_munmap/do_close at its log event (same outcome); one
that failed must fail alike (ENXIO, modern's M21 OOPS) at some point of its window. Every spec state on
the path must satisfy the state invariants except the profile's findings, and the end state must be
abstraction(impl). The search is a memoised DFS over (log position, spec state, touches done); its
only choices are where each touch (and failed user call) takes effect and the relaxations below.

The user's mapping is touched by a user toucher while the user thread unmaps it: a fault in flight
there must end (read_unlock) before the munmap event (spec/vma.py do_munmap waits for it; impl's
MappingCore._mm_write), a fault whose vma is gone is logged by nothing (the mm's bad_area), and a
touch of that mapping may end in SIGSEGV where the spec's mapping is gone. Forks are left to the
lockstep tests.

Three relaxations, where impl's steps are finer than the spec's or where the emulation differs from
the kernel on purpose: unmap_mapping_range zaps the vmas one by one; run_dax (core.revive_device)
zaps the device's vmas after setting alive (an entry installed in between vanishes); until that
zap, and during a kill, a poison marker a fault of the dead device left may answer SIGBUS, and an
install may find such a unit present (impl's units are 512 PTEs, and its markers are sticky; see
check_trace).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import errno
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import icontract

from devdax.impl import sys as dsys
from devdax.impl import tracelog
from devdax.impl.core import MappingCore
from devdax.impl.dax import MAP, PROT, DaxBus, DaxFile, Event, KernelBug, UserMapping, VmArea
from devdax.impl.tracelog import TraceLog, TraceRec
from devdax.impl.vmcore import claim
from devdax.spec import admin
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.fault import covered, fault_check, fault_insert, fault_lock, fault_unlock
from devdax.spec.file import do_close, do_open
from devdax.spec.geometry import SIZE_NAMES, next_fault_size
from devdax.spec.invariants import state_invariants
from devdax.spec.state import C_CHECKED, C_DONE, C_IDLE, C_LOCKED, R_FALLBACK, Admin, Cpu, State
from devdax.spec.vma import do_mmap, do_munmap

from .abstraction import abstraction, diff, project
from .driver import SHAPES, Driver, spec_config

SHAPE_2 = next(m for m in SHAPES if m.name == "shared-2")
_NAMES = re.compile(r"\b(dax\d+\.\d+|region\d+|file\d+|cpu\d+)\b")


@dataclass(frozen=True)
class TouchRec:
    cpu: int  # the toucher (not a spec CPU: faults run on the handler's workers)
    vma: int  # spec vma slot
    addr: int  # spec address
    write: bool
    k0: int  # window [k0, k1) as log indices (race_run converts from sequence numbers)
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


class TraceRejected(AssertionError):
    pass


class RunState:
    """What the user thread of a run shares with the user toucher and a scripted chooser: the
    mapping (file name, impl start) once mmap returned, and where the user thread is (phase:
    "" -> "before-munmap" -> "munmap" -> "unmapped" -> "done")."""

    def __init__(self) -> None:
        self.mapping: tuple[str, int] | None = None
        self.mapped = threading.Event()  # set when mapping is known, or known never to come
        self.phase = ""
        self.reused = False  # the kernel reused the unmapped range (see race_run)


# ---------------------------------------------------------------------------------------- runs ----


def enable_tracing(bus: DaxBus) -> TraceLog:
    """Switch the shared trace log on for ``bus`` (before any run: the handler must be idle)."""
    table = bus.core.table
    table.trace.enable()
    table.srcu.tracer = table.trace
    return table.trace


def quiesce(bus: DaxBus, seed: int) -> None:
    """Wait until the handler has serviced every fault message it read, to its read_unlock. The
    toucher wakes at the insert, before the unlock; and a worker may hold a message whose toucher
    another fault's install already woke: without this the log could begin or end inside a fault.
    (Unread messages have a blocked toucher: none once the run's threads have joined.)"""
    table = bus.core.table
    deadline = time.monotonic() + 10
    while True:
        c = table.counters()
        # a fault whose service raised counts in errors (its read_unlock is still logged); errors
        # counted inside a completed service make ``served`` an upper bound, never a shortfall
        served = sum(int(w.lat_idx) for w in table.t.workers) + c["errors"]
        if c["msgs"] - c["fork_events"] <= served:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"seed {seed}: the handler read {c['msgs']} messages, serviced {served}")
        time.sleep(2e-4)


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


def race_run(
    bus: DaxBus,
    profile: str,
    seed: int,
    impl_profile: object = None,
    touchers: int = 2,
    touches: int = 3,
    minor_base: int = 1 << 19,
    scheduled: bool = False,
    users: bool = True,
    chooser: Callable[[RunState], Chooser] | None = None,
    force_user: bool = False,
    script: str = "",
) -> Run:
    """One concurrent run on ``bus`` (tracing switched on if it is not); its plan (units, accesses,
    sleeps, admin actions) is a function of ``seed``. Free-running (the default), the interleaving
    is the OS's; ``scheduled``, a Scheduler seeded by ``seed`` chooses it at every logged point and
    the pauses are left out: the same seed gives the same log. The spec has one CPU per handler
    worker.

    With the user thread (``users``; the plan has it in 7 of 10 seeds, always with ``force_user``)
    a user toucher touches the user's mapping once it exists, racing the user's munmap: its faults
    may be in flight in the handler when the munmap comes (spec/vma.py do_munmap waits for them;
    impl: MappingCore._mm_write). ``chooser`` (scheduled only): builds, from the run's RunState,
    a scripted choice that replaces the seeded random one (tests/refinement/test_munmap_race.py;
    ``script``: that test's id, for the replay command of a rejected run)."""
    rng = random.Random(seed)
    tr = bus.core.table.trace if bus.core.table.trace.on else enable_tracing(bus)
    cfg: Config = spec_config(profile, cpus=int(bus.core.table.t.hdr.nworkers), generations=2)
    drv = Driver(cfg, impl_profile=impl_profile, bus=bus, minor_base=minor_base)  # type: ignore[arg-type]
    try:
        drv.open(0, True)
        drv.open(0, True)
        drv.mmap(0, SHAPE_2)
        drv.mmap(1, SHAPE_2)
        for _ in range(rng.randrange(3)):
            drv.touch(rng.randrange(2), rng.randrange(2), rng.random() < 0.5)
        vmas = drv.live_vmas()
        files = {f.name: k for f, k in drv.live_files()}
        events = drv.events
        k_start = len(events)
        s0 = drv.s
        align = drv.c.align
        plan_t = [
            [
                (rng.randrange(len(vmas)), rng.randrange(2), rng.random() < 0.4, rng.random() * 3e-4)
                for _ in range(touches)
            ]
            for _ in range(touchers)
        ]
        admin_plan = [("disable", rng.random() * 6e-4)]
        if profile == "modern" and rng.random() < 0.7:
            admin_plan.append(("enable", rng.random() * 3e-4))
        close_at = rng.random() * 8e-4 if rng.random() < 0.5 else None
        close_target = rng.choice(sorted(files))
        user_plan = (
            [rng.random() * 4e-4 for _ in range(4)] if users and (rng.random() < 0.7 or force_user) else None
        )
        # the user toucher: (unit, write, pause) per touch of the user's mapping; its first touch
        # comes soon after the mmap, so that the munmap after the user's pause often meets its fault
        uplan = [
            (rng.randrange(2), rng.random() < 0.4, rng.random() * (1e-4 if k == 0 else 4e-4))
            for k in range(2)
        ]
        # in half the runs with a user, its open and mmap come before the race (so that its mapping
        # mostly exists when the admin acts) and only its munmap and close race
        user_early = rng.random() < 0.5
        close_first = rng.random() < 0.3  # the user's munmap is its file's last reference
        ut = touchers  # its toucher index (tids, records)
        ustate = RunState()
        ureserved: list[tuple[int, int]] = []  # the unmapped user range, held PROT_NONE until the end
        trecs: list[list[TouchRec]] = [[] for _ in range(touchers)]
        urecs_t: list[TouchRec] = []
        arecs: list[AdminRec] = []
        urecs: list[UserRec] = []
        tids: dict[int, int] = {}
        errors: list[BaseException] = []
        barrier = threading.Barrier(touchers + 1 + (close_at is not None) + 2 * (user_plan is not None))
        dev = drv.ref.regions[-1].devices[0]
        quiesce(bus, seed)
        seq0 = tr.now()
        sched = (
            Scheduler(
                tr,
                seed,
                int(bus.core.table.t.hdr.handler_pid),
                tids,
                chooser=chooser(ustate) if chooser is not None else None,
            )
            if scheduled
            else None
        )

        def enter(g: int) -> None:
            if sched is not None:
                sched.main_tids.append(threading.get_native_id())
                tr.set_gate(tracelog.MAIN_GATE0 + g)

        def pause(t: float) -> None:
            if sched is None:
                time.sleep(t)
            else:
                tr.gate(ACTION)

        def toucher(j: int) -> None:
            try:
                tids[threading.get_native_id()] = j
                enter(j)
                barrier.wait()
                for vi, unit, write, p in plan_t[j]:
                    pause(p)
                    a, slot, delta = vmas[vi]
                    addr = a.start + unit * align + 0x40 * (j + 1)
                    k0 = tr.now()
                    if write:
                        t = MappingCore.touch_write(addr, bytes([j + 1]))
                    else:
                        t = MappingCore.touch_read(addr, 1)
                    k1 = tr.now()
                    trecs[j].append(TouchRec(j, slot, addr + delta, write, k0, k1, t.outcome))
            except BaseException as e:
                errors.append(e)

        def admin_thread() -> None:
            try:
                enter(touchers)
                barrier.wait()
                for kind, p in admin_plan:
                    pause(p)
                    k0 = tr.now()
                    try:
                        (bus.disable if kind == "disable" else bus.enable)(dev)
                        out = "ok"
                    except OSError as e:
                        out = f"errno {e.errno}"
                    except icontract.ViolationError as e:
                        out = f"contract: {' '.join(str(e).splitlines()[1:3])}"
                    except KernelBug as e:
                        out = f"KernelBug: {e}"
                    arecs.append(AdminRec(kind, 0, k0, tr.now(), out))
            except BaseException as e:
                errors.append(e)

        def closer() -> None:
            try:
                enter(touchers + 1)
                barrier.wait()
                assert close_at is not None
                pause(close_at)
                f = next(f for f, _ in drv.live_files() if f.name == close_target)
                f.close()
            except BaseException as e:
                errors.append(e)

        def user() -> None:
            """open the node, map SHAPE_2 through the new file, unmap it, close: each may meet the
            admin program (they serialise with it on the bus lock, as the kernel's file operations
            do on the device's locks) and must fail exactly when the spec's would."""
            try:
                enter(touchers + 2)
                assert user_plan is not None

                def op(kind: str, name: str, fn: Callable[[], object]) -> object:
                    k0 = tr.now()
                    try:
                        out: object = fn()
                        res = "ok"
                    except OSError as e:
                        out, res = None, errno.errorcode.get(e.errno or 0, "EIO")
                    except KernelBug as e:  # modern M21: mmap of a file opened while dead
                        out, res = None, "OOPS"
                        drv.ref.note_oops(str(e))
                    urecs.append(UserRec(kind, name, k0, tr.now(), res))
                    return out

                def open_map(first: float, second: float) -> tuple[object, object]:
                    pause(first)
                    f = op("open", "", lambda: bus.open(dev, os.O_RDWR))
                    if not isinstance(f, DaxFile):
                        return f, None
                    pause(second)
                    rw = PROT["PROT_READ"] | PROT["PROT_WRITE"]
                    return f, op("mmap", f.name, lambda: f.mmap(2 * align, rw, MAP["MAP_SHARED"], 0, None))

                f, h = open_map(0.0, 0.0) if user_early else (None, None)
                barrier.wait()
                if not user_early:
                    f, h = open_map(user_plan[0], user_plan[1])
                if not isinstance(f, DaxFile):
                    return
                closed = False
                if isinstance(h, UserMapping):
                    start = h.addr
                    ustate.mapping = (f.name, start)
                    ustate.mapped.set()
                    if close_first:
                        # the fd goes first: the vma holds the file's last reference, so the munmap
                        # racing the user toucher's fault is also the last fput
                        pause(user_plan[3])
                        op("close", f.name, f.close)
                        closed = True
                    ustate.phase = "before-munmap"
                    pause(user_plan[2])
                    ustate.phase = "munmap"
                    op("munmap", f.name, lambda: h.munmap(0, 2 * align))
                    ustate.phase = "unmapped"
                    # nothing else may be placed there while the user toucher may still touch it
                    # (a touch must meet no vma: SIGSEGV); a PROT_NONE reservation answers the same
                    if claim(start, 2 * align):
                        ureserved.append((start, 2 * align))
                    else:
                        ustate.reused = True
                ustate.mapped.set()
                if not closed:
                    pause(user_plan[3])
                    op("close", f.name, f.close)
            except BaseException as e:
                errors.append(e)
            finally:
                ustate.mapped.set()
                ustate.phase = "done"

        def utoucher() -> None:
            """Touches the user's mapping once it exists (it waits for the mmap, off any gate):
            its faults race the user's munmap, and after it the access meets no vma."""
            try:
                tids[threading.get_native_id()] = ut
                enter(touchers + 3)
                barrier.wait()
                ustate.mapped.wait(30)
                if ustate.mapping is None:
                    return
                name, start = ustate.mapping
                for unit, write, p in uplan:
                    pause(p)
                    off = unit * align + 0x40 * (ut + 1)
                    k0 = tr.now()
                    if write:
                        t = MappingCore.touch_write(start + off, bytes([ut + 1]))
                    else:
                        t = MappingCore.touch_read(start + off, 1)
                    # the munmap's number is taken right after its syscall, in its section: a
                    # touch that returned in between met no vma before that number was given out,
                    # so the window ends after the event in progress (number now()), not before
                    k1 = tr.now() + 1
                    urecs_t.append(
                        TouchRec(ut, -1, off, write, k0, k1, t.outcome, ukey=(name, f"{start:#x}"))
                    )
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=toucher, args=(j,)) for j in range(touchers)]
        threads.append(threading.Thread(target=admin_thread))
        if close_at is not None:
            threads.append(threading.Thread(target=closer))
        if user_plan is not None:
            threads.append(threading.Thread(target=user))
            threads.append(threading.Thread(target=utoucher))
        assert barrier.parties == len(threads)
        sthread = None
        if sched is not None:
            tr.area.sched = 1
            sthread = threading.Thread(target=sched.run, args=(threads,))
        try:
            for t in threads:
                t.start()
            if sthread is not None:
                sthread.start()
            for t in threads:
                t.join(30)
                if t.is_alive():
                    raise TimeoutError(f"seed {seed}: a thread of the run did not finish in 30 s")
            if sthread is not None:
                sthread.join(30)
        finally:
            tr.area.sched = 0  # a thread still at a gate goes on
            for a, n in ureserved:
                dsys.munmap(a, n)
        if sched is not None and sched.error:
            raise RuntimeError(f"seed {seed}: scheduler: {sched.error}")
        if errors:
            raise errors[0]
        quiesce(bus, seed)
        seq1 = tr.now()
        final = abstraction(drv.c, bus, drv.ref, minor_base=minor_base)
        notes = [f"setup: {op.text} -> {op.impl}" for op in drv.history]
        devs = {d.name: drv.ref.dev_index(drv.c, d) for r in drv.ref.regions for d in r.devices}
        umap = None if ustate.mapping is None else (*ustate.mapping, 2 * align)
        log, hrecs = _merge(list(events), k_start, tr.records(seq0, seq1), vmas, tids, umap)
        seqs = [e.seq for e in log]

        def at(k: int) -> int:  # a sequence number -> the index of the first event >= it
            return bisect.bisect_left(seqs, k, lo=k_start)

        trecs2: list[list[TouchRec | UserRec]] = [
            [TouchRec(r.cpu, r.vma, r.addr, r.write, at(r.k0), at(r.k1), r.outcome) for r in recs]
            for recs in trecs
        ]
        urecs2 = [UserRec(u.kind, u.file, at(u.k0), at(u.k1), u.outcome) for u in urecs]
        ut2 = [
            TouchRec(r.cpu, r.vma, r.addr, r.write, at(r.k0), at(r.k1), r.outcome, r.ukey) for r in urecs_t
        ]
        if ustate.reused:
            # the kernel gave the unmapped range to someone else before the reservation: a touch
            # that may have run after the munmap began may have read foreign memory; not judged
            began = min((u.k0 for u in urecs2 if u.kind == "munmap"), default=len(log))
            notes.append(
                f"the user's range was reused after its munmap: {sum(r.k1 >= began for r in ut2)} "
                "user touch(es) after it not judged"
            )
            ut2 = [r for r in ut2 if r.k1 < began]
        trecs2.append(list(ut2))
        trecs2.append([u for u in urecs2 if u.outcome != "ok"])
        arecs2 = [AdminRec(a.kind, a.node, at(a.k0), at(a.k1), a.outcome) for a in arecs]
        name = getattr(impl_profile, "name", profile)
        return Run(
            seed,
            profile,
            log,
            k_start,
            trecs2,
            arecs2,
            files,
            devs,
            s0,
            final,
            hrecs,
            notes,
            scheduled=scheduled,
            impl=str(name),
            choices=sched.choices if sched else [],
            node=drv.ref.dev_index(drv.c, dev),
            user_ops=urecs2,
            script=script,
        )
    finally:
        drv.close()


def _merge(
    events: list[Event],
    k_start: int,
    recs: list[TraceRec],
    vmas: list[tuple[VmArea, int, int]],
    tids: dict[int, int],
    umap: tuple[str, int, int] | None = None,
) -> tuple[list[Event], dict[int, HRec]]:
    """impl's main-process events since the race began and the handler's records, in the order of
    their sequence numbers, the handler's translated to spec terms (vma slot, spec address; for the
    user's mapping ``umap`` = (file, start, length): its key and the offset, see TouchRec.ukey)."""

    def locate(addr: int) -> tuple[int, int]:
        for a, slot, delta in vmas:
            if a.start <= addr < a.end:
                return slot, addr + delta
        return -1, addr

    def user_key(addr: int) -> tuple[str, str] | None:
        if umap is not None and umap[1] <= addr < umap[1] + umap[2]:
            return (umap[0], f"{umap[1]:#x}")
        return None

    merged: list[tuple[int, Event, HRec | None]] = [(e.seq, e, None) for e in events[k_start:]]
    for r in recs:
        kind = tracelog.KIND_NAMES[int(r.kind)]
        if r.kind in (tracelog.GP_FLIP, tracelog.GP_DONE):
            h = HRec(kind, -1, -1, -1, 0)
            merged.append((int(r.seq), Event(kind, "srcu", "", int(r.seq)), h))
            continue
        slot, addr = locate(int(r.addr))
        ukey = user_key(int(r.addr)) if slot < 0 else None
        if ukey is not None and umap is not None:
            addr = int(r.addr) - umap[1]  # the offset in the user's mapping
        who = tids.get(int(r.ptid), -1)
        if r.kind == tracelog.CHECK:
            code = int(r.b)
            h = HRec(
                kind,
                int(r.wid),
                who,
                slot,
                addr,
                alive=int(r.a),
                install=bool(code & 1),
                size=code >> 8,
                reason=dict(enumerate(tracelog.REASONS)).get((code >> 1) & 0x7F, "?"),
            )
            dec = f"install {SIZE_NAMES.get(h.size, hex(h.size))}" if h.install else "SIGBUS"
            detail = f"alive={h.alive} -> {dec} ({h.reason})"
        elif r.kind in (tracelog.INSERT, tracelog.POISON):
            changed = int(r.a)
            changed = -1 if changed == 2**64 - 1 else changed
            h = HRec(kind, int(r.wid), who, slot, addr, size=int(r.b), changed=changed)
            detail = f"{changed:#x} of {h.size:#x} bytes changed" if changed >= 0 else "ioctl failed"
        else:
            h = HRec(kind, int(r.wid), who, slot, addr)
            detail = ""
        if ukey is not None:
            h = dataclasses.replace(h, ukey=ukey)
        what = f"toucher{who}" if who >= 0 else "no toucher"
        where = f"vma{slot}" if ukey is None else "user-vma +"
        ev = Event(kind, f"cpu{h.cpu}", f"{what} {where} {addr:#x} {detail}".rstrip(), int(r.seq))
        merged.append((int(r.seq), ev, h))
    merged.sort(key=lambda x: x[0])
    log = events[:k_start] + [e for _, e, _ in merged]
    hrecs = {k_start + i: h for i, (_, _, h) in enumerate(merged) if h is not None}
    return log, hrecs


# ------------------------------------------------------------------------------------- checker ----


def _start_program(c: Ctx, s: State, rec: AdminRec) -> State:
    """The spec program an admin action stands for, started (first inapplicable steps skipped)."""
    g = s.admin.generation - 1
    if c.prof.bind_cycles:
        prog, arg = ("unbind" if rec.kind == "disable" else "bind"), rec.node
    elif rec.kind == "disable":
        prog, arg = "remove", g
    else:
        prog, arg = "probe", g + 1
    gen = s.admin.generation + (prog == "probe")
    a = s.admin._replace(prog=prog, dev=arg, pc=0, generation=gen)
    return admin._finish(c, s._replace(admin=a))


def _keep_left(s: State, j: int, left: int) -> State:
    """The bound on faults is the checker's, not the kernel's: keeping it constant lets the memo
    merge states that differ only in faults taken."""
    if s.cpus[j].left == left:
        return s
    return s._replace(cpus=tuple(x._replace(left=left) if k == j else x for k, x in enumerate(s.cpus)))


def _lock(c: Ctx, s: State, j: int, v: int, addr: int) -> State | None:
    """fault_lock of CPU j. The spec's fault_lock refuses an address an entry covers (the mm does
    not call the driver then), but impl's handler may be servicing a fault whose unit another
    worker installed after the mm saw it missing (the kernel's insert then says -EBUSY): the step
    is taken as if the entry were not there yet, and the entry stays."""
    r = fault_lock(c, s._replace(entries=frozenset()), j, v, addr)
    return None if r is None else r[1]._replace(entries=s.entries)


def _check_chain(c: Ctx, s: State, j: int) -> tuple[str, State] | None:
    """fault_check of CPU j and, while it says FALLBACK at a size with a smaller one, the mm's
    retry (unlock, lock one size down, check): impl's handler negotiates the size inside one read
    section (dax_policy), so its one check point stands for this chain taken at once."""
    r = fault_check(c, s, j)
    while r is not None and r[0] != "OOPS":
        cpu = r[1].cpus[j]
        if cpu.result != R_FALLBACK:
            return r
        if cpu.pc == C_DONE:
            if next_fault_size(cpu.size) is None:
                return r
            u = fault_unlock(c, r[1], j)
            assert u is not None
            cpu = u[1].cpus[j]
            r = (r[0], u[1])
        if cpu.pc != C_IDLE:
            return r
        lk = fault_lock(c, r[1], j, cpu.vma, cpu.addr)
        if lk is None:
            return None
        r = fault_check(c, lk[1], j)
    return r


def would_sigbus(c: Ctx, s: State, v: int, addr: int) -> bool:
    """A CPU faulting on (v, addr) in state s would end in SIGBUS (run on an extra idle CPU)."""
    if covered(s, v, addr):
        return False
    j = len(s.cpus)
    t = s._replace(cpus=(*s.cpus, Cpu(left=1)))
    lk = _lock(c, t, j, v, addr)
    if lk is None:
        return False
    r = _check_chain(c, lk, j)
    return r is not None and r[1].cpus[j].pc != C_CHECKED


def _srcu_check(run: Run) -> str | None:
    """impl's own grace period against its readers, from the log alone: every read section that
    was open at a gp_flip must be closed before the next gp_done (the SRCU guarantee the teardown
    relies on, kernel-semantics 4). Returns the violation, if any."""
    open_: set[int] = set()
    waited: set[int] = set()
    for k in range(run.k_start, len(run.events)):
        h = run.hrecs.get(k)
        if h is None:
            continue
        if h.kind == "read_lock":
            open_.add(h.cpu)
        elif h.kind == "read_unlock":
            open_.discard(h.cpu)
            waited.discard(h.cpu)
        elif h.kind == "gp_flip":
            waited = set(open_)
        elif h.kind == "gp_done" and waited:
            return (
                f"log event {k}: grace period ended while cpu{sorted(waited)} were still in sections "
                "begun before its flip"
            )
    return None


#: admin steps whose effect is a store the handler reads, done with its event in one traced section:
#: the step is applied at that event, not at the "step" event that follows when the step returns
_LIN_EVENT = {"clear_alive": "alive_clear", "set_alive": "alive_set", "run_dax": "alive_set"}


def check_trace(c: Ctx, run: Run, findings: dict[str, str] | None = None, budget: int = 400_000) -> None:
    """Raise TraceRejected with a readable report unless the run is a path of the spec."""
    findings = c.prof.findings if findings is None else findings
    invs = [i for i in state_invariants() if i.name not in findings and i.check is not None]
    events = run.events
    n = len(events)
    T = run.touches
    H = run.hrecs
    for op in run.admin_ops:
        if op.outcome.startswith(("contract", "KernelBug")):
            head = f"impl stopped the admin program: {op.outcome} (no spec step fails that way)"
            raise TraceRejected(_report(run, c, head, (0, [f"admin {op.kind} stopped by {op.outcome}"])))
    err0 = _srcu_check(run)
    if err0:
        raise TraceRejected(_report(run, c, "impl's SRCU broke its guarantee", (0, [err0])))
    ops = [op for op in run.admin_ops if op.outcome == "ok"]
    steps_at = [k for k, e in enumerate(events) if e.kind == "step"]
    # a step logged at k whose linearization point is an earlier event: apply it there
    step_at: dict[int, int] = {}  # log index of the point -> log index of the step event
    for k in steps_at:
        name, _, out = events[k].detail.rpartition(" ")
        if k >= run.k_start and name in _LIN_EVENT and out == "ok":
            inner = next(
                (
                    x
                    for x in range(k - 1, run.k_start - 1, -1)
                    if events[x].kind == _LIN_EVENT[name] and events[x].obj == events[k].obj
                ),
                None,
            )
            if inner is not None:
                step_at[inner] = k
    moved = set(step_at.values())

    # A step's effect precedes its "step" event (logged when the step function returns), so a touch
    # that returned before event k1 may already have seen the effect of the admin step in progress
    # then: the touch must end before the event *after* the first step event at or after k1.
    def end_of(rec: TouchRec | UserRec) -> int:
        later = [k for k in steps_at if k >= rec.k1]
        return later[0] + 1 if later else rec.k1

    ends = [[end_of(r) for r in recs] for recs in T]
    # unmap_mapping_range zaps the device's vmas one after another (so does the kernel's walk of
    # i_mmap): while that step runs, a touch may find one vma zapped and another not yet. The
    # search may therefore zap single vmas of the device early, between the previous step event
    # and the unmap step event; the step itself then zaps the rest.
    unmap_at: dict[int, int] = {}  # log index inside an unmap step -> spec device
    stale: set[int] = set()  # log indices where a poison marker may answer SIGBUS
    prev = run.k_start - 1
    for k in steps_at:
        if k < run.k_start:
            continue
        name = events[k].detail.rpartition(" ")[0]
        if name == "unmap_mapping_range" and events[k].obj in run.devs:
            for x in range(prev + 1, k + 1):
                unmap_at[x] = run.devs[events[k].obj]
            # a unit is 512 PTEs here: a fault that saw alive and one that saw dead on the same
            # unit during the kill can leave it part installed, part poisoned, so a toucher whose
            # fault saw alive may still meet a marker (the kernel's PMD insert is all or nothing)
            kill = [x for x in range(run.k_start, k) if events[x].kind == "alive_clear"]
            if kill:
                stale.update(range(kill[-1], k + 2))
        # impl's run_dax: alive = 1 (the step's point), then core.revive_device's grace period and
        # zap of the device's vmas (it clears the emulation's poison markers; the kernel has
        # none). A fault between the two installs an entry the zap then removes: entries of the
        # device may vanish until just after the step event (losing an entry only costs a refault)
        if name == "run_dax" and events[k].obj in run.devs:
            for x in range(prev + 1, k + 2):
                unmap_at[x] = run.devs[events[k].obj]
            # until that zap, a poison marker left by a fault of the dead device still answers
            # SIGBUS (the emulation's markers are sticky; the kernel's handler would refault)
            stale.update(range(prev + 1, k + 2))
        prev = k
    target = project(run.final)
    best: tuple[int, list[str]] = (-1, [])
    pruned: list[str] = []  # invariant violations that cut a path

    def note(depth: int, why: str) -> None:
        nonlocal best
        if depth > best[0]:
            best = (depth, [why])
        elif depth == best[0] and len(best[1]) < 8:
            best[1].append(why)

    def bad(s: State) -> str | None:
        for inv in invs:
            assert inv.check is not None
            err = inv.check(c, s)
            if err:
                return f"invariant {inv.name}: {err}"
        return None

    def admin_step(i: int, k: int, s: State, aidx: int, depth: int) -> list[tuple[State, int]]:
        ev = events[k]
        name, _, outcome = ev.detail.rpartition(" ")
        if outcome == "skipped":
            return [(s, aidx)]
        s1, a1 = s, aidx
        if not s1.admin.prog:
            if aidx >= len(ops):
                note(depth, f"log event {k} ({ev.obj} {ev.detail}) but no admin action runs")
                return []
            s1, a1 = _start_program(c, s, ops[aidx]), aidx + 1
        steps = admin.admin_steps(c, s1)
        ok = [t for nm, _, lab, t in steps if nm == name and lab == outcome]
        if not ok:
            offered = ", ".join(f"{nm} {lab}" for nm, _, lab, _ in steps) or "nothing (blocked)"
            where = f"log event {i}" + (f" (the point of step event {k})" if i != k else "")
            note(
                depth,
                f"{where}: impl step {ev.obj} '{name} {outcome}'; the spec's {s1.admin.prog} "
                f"program offers: {offered}",
            )
        return [(t, a1) for t in ok]

    def cpu_step(i: int, h: HRec, s: State, depth: int) -> State | None:
        """The spec step of the handler point h (CPU h.cpu), or None with a note why not."""
        if h.ukey is not None:
            at = user_vma(h.ukey, h.addr, f"log event {i}: cpu{h.cpu} {h.kind}", depth)
            if at is None:
                return None
            h = dataclasses.replace(h, vma=at[0], addr=at[1], ukey=None)
        j = h.cpu
        cpu = s.cpus[j]
        who = f"log event {i}: cpu{j} {h.kind} (toucher{h.toucher} vma{h.vma} {h.addr:#x})"
        if h.kind == "read_lock":
            if h.vma < 0:
                note(depth, f"{who}: a fault outside every vma of the run")
                return None
            t = _lock(c, s, j, h.vma, h.addr) if cpu.pc == C_IDLE and cpu.result != R_FALLBACK else None
            if t is None:
                note(depth, f"{who}: the spec CPU cannot begin a fault (pc {cpu.pc}, result {cpu.result})")
            return t
        if h.kind == "check":
            r = _check_chain(c, s, j) if cpu.pc == C_LOCKED else None
            if r is None or r[0] == "OOPS":
                note(depth, f"{who}: the spec CPU cannot check ({'OOPS: ' + r[0] if r else f'pc {cpu.pc}'})")
                return None
            d = s.files[s.vmas[cpu.vma].file].dev
            if int(s.devs[d].alive) != h.alive:
                note(depth, f"{who}: impl read alive={h.alive}, the spec's dax{d} has {s.devs[d].alive}")
                return None
            got = r[1].cpus[j]
            if h.install != (got.pc == C_CHECKED) or (h.install and got.size != h.size):
                spec = f"install {SIZE_NAMES.get(got.size)}" if got.pc == C_CHECKED else "SIGBUS"
                note(
                    depth,
                    f"{who}: impl decided {'install' if h.install else 'SIGBUS'} "
                    f"{SIZE_NAMES.get(h.size, '')} ({h.reason}), the spec's check {r[0]} -> {spec}",
                )
                return None
            return _keep_left(r[1], j, cpu.left)
        if h.kind == "insert":
            r = fault_insert(c, s, j)
            if r is None:
                note(depth, f"{who}: the spec CPU is not ready to insert (pc {cpu.pc})")
                return None
            if i not in stale and r[0] != "ok" and h.changed > 0:
                note(depth, f"{who}: impl installed {h.changed:#x} bytes, the spec's entry is there (EBUSY)")
                return None
            if i not in stale and r[0] == "ok" and h.changed == 0:
                note(depth, f"{who}: impl found the unit present, the spec installs it")
                return None
            if h.changed < 0:
                note(depth, f"{who}: impl's install ioctl failed")
                return None
            return r[1]
        if h.kind == "poison":
            if cpu.pc != C_DONE:
                note(depth, f"{who}: impl poisons (SIGBUS) but the spec CPU is at pc {cpu.pc}")
                return None
            return s
        if h.kind == "read_unlock":
            r = fault_unlock(c, s, j)
            if r is None:
                note(depth, f"{who}: the spec CPU is not in a fault (pc {cpu.pc})")
                return None
            return _keep_left(r[1], j, cpu.left)
        return s  # gp_flip / gp_done: checked by _srcu_check

    fslot = dict(run.files)  # impl file name -> spec slot (the user's file added)
    vslot: dict[tuple[str, str], int] = {}  # (file, impl start) -> spec vma slot of the user's mapping
    ustart: dict[int, int] = {}  # that slot -> the spec vma's start

    def user_vma(key: tuple[str, str], off: int, what: str, depth: int) -> tuple[int, int] | None:
        """(spec slot, spec address) of an offset in the user's mapping; the slot is the one its
        mmap event took (the same on every path), so it is known once a path has passed that event."""
        v = vslot.get(key)
        if v is None:
            note(depth, f"{what}: the user's mapping {key} is not mapped in the spec yet")
            return None
        return v, ustart[v] + off

    def file_op(i: int, ev: Event, s: State, depth: int) -> State | None:
        """A file operation that succeeded in impl, as the spec's: the same outcome here. Slots
        are the spec's free_slot choices; they depend only on the file operations before, which
        the log orders, so every path gives the user's file and mapping the same slots."""
        r: tuple[str, State] | None = None
        if ev.kind == "open":
            r = do_open(c, s, run.node, True)
            if r is not None and r[0] == "ok":
                fslot[ev.obj] = next(
                    k for k, (x, y) in enumerate(zip(s.files, r[1].files, strict=True)) if x != y
                )
        elif ev.obj not in fslot:
            note(depth, f"log event {i}: {ev.kind} of {ev.obj}, a file the spec never opened")
            return None
        elif ev.kind == "close":
            r = do_close(c, s, fslot[ev.obj])
        elif ev.kind == "mmap":
            r = do_mmap(c, s, fslot[ev.obj], SHAPE_2)
            if r is not None and r[0] == "ok":
                new = next(k for k, (x, y) in enumerate(zip(s.vmas, r[1].vmas, strict=True)) if x != y)
                vslot[(ev.obj, ev.detail.split("+")[0])] = new
                ustart[new] = r[1].vmas[new].start
        else:
            v = vslot.get((ev.obj, ev.detail.split("+")[0]))
            r = do_munmap(c, s, v, "all") if v is not None else None
        if r is None or r[0] != "ok":
            note(
                depth,
                f"log event {i}: impl's {ev.kind} of {ev.obj} succeeded, the spec's "
                f"{'cannot run here' if r is None else 'ends ' + r[0]}",
            )
            return None
        return r[1]

    def user_done(i: int, s: State, rec: UserRec, depth: int) -> State | None:
        """A failed file operation of the user thread may take effect at i: the spec's fails alike
        (the state after it: unchanged, or the spec's oops for an OOPS)."""
        r: tuple[str, State] | None = None
        if rec.kind == "open":
            r = do_open(c, s, run.node, True)
        elif rec.kind == "mmap" and rec.file in fslot:
            r = do_mmap(c, s, fslot[rec.file], SHAPE_2)
        if r is not None and r[0] == rec.outcome:
            return r[1]
        note(
            depth,
            f"log event {i}: the user's {rec.kind} failed {rec.outcome} (window [{rec.k0}, "
            f"{rec.k1}]); the spec's {'cannot run' if r is None else 'ends ' + r[0]} here",
        )
        return None

    def touch_done(i: int, s: State, rec: TouchRec | UserRec, depth: int) -> State | None:
        """The toucher's access may take effect at log position i with its outcome: the state then.
        A touch of the user's mapping may also end in SIGSEGV: where the mapping is gone (munmap
        before the access; the mm finds no vma)."""
        if isinstance(rec, UserRec):
            return user_done(i, s, rec, depth)
        if rec.ukey is not None:
            at = user_vma(rec.ukey, rec.addr, f"log event {i}: user toucher", depth)
            if at is None:
                return None
            rec = dataclasses.replace(rec, vma=at[0], addr=at[1], ukey=None)
            if rec.outcome == "SIGSEGV":
                if s.vmas[rec.vma].file < 0:
                    return s
                note(
                    depth,
                    f"log event {i}: toucher{rec.cpu}'s touch of the user's mapping ended SIGSEGV "
                    f"(window [{rec.k0}, {rec.k1}]) while the spec's is mapped",
                )
                return None
        if rec.outcome == "ok":
            ok = covered(s, rec.vma, rec.addr)
        elif rec.outcome == "SIGBUS":
            ok = i in stale or would_sigbus(c, s, rec.vma, rec.addr)
        else:
            ok = False
        if ok or rec.outcome in ("ok", "SIGBUS"):
            if not ok:
                act = "write" if rec.write else "read"
                note(
                    depth,
                    f"log event {i}: toucher{rec.cpu}'s {act} of vma{rec.vma} {rec.addr:#x} "
                    f"(window [{rec.k0}, {rec.k1}]) ended {rec.outcome}; the spec disagrees here",
                )
            return s if ok else None
        note(depth, f"cpu{rec.cpu} touch {rec.addr:#x}: outcome {rec.outcome}, which no spec fault gives")
        return None

    Node = tuple[int, State, tuple[int, ...], int]
    start: Node = (run.k_start, run.s0, (0,) * len(T), 0)
    stack = [start]
    seen: set[Node] = {start}
    explored = 0
    while stack:
        i, s, tidx, aidx = stack.pop()
        explored += 1
        if explored > budget:
            raise TraceRejected(_report(run, c, f"search budget of {budget} nodes exhausted", best))
        depth = i + sum(tidx)
        succ: list[Node] = []
        done = all(tidx[j] == len(T[j]) for j in range(len(T)))
        if i == n and done and not s.admin.prog:
            if project(s._replace(admin=Admin(generation=s.admin.generation))) == target:
                return
            note(
                depth + 1,
                "end of log, but abstraction(impl) != spec state:\n      "
                + "\n      ".join(diff(target, project(s))),
            )
        # the next log event, unless a touch that returned before it is still unfinished
        blocked = any(tidx[j] < len(T[j]) and ends[j][tidx[j]] <= i for j in range(len(T)))
        if i < n and not blocked:
            ev = events[i]
            if i in step_at:
                succ += [(i + 1, t, tidx, a) for t, a in admin_step(i, step_at[i], s, aidx, depth)]
            elif i in moved:
                succ.append((i + 1, s, tidx, aidx))
            elif ev.kind == "step":
                succ += [(i + 1, t, tidx, a) for t, a in admin_step(i, i, s, aidx, depth)]
            elif ev.kind in ("close", "open", "mmap", "munmap"):
                t2 = file_op(i, ev, s, depth)
                if t2 is not None:
                    succ.append((i + 1, t2, tidx, aidx))
            elif i in H:
                t1 = cpu_step(i, H[i], s, depth)
                if t1 is not None:
                    succ.append((i + 1, t1, tidx, aidx))
            else:
                succ.append((i + 1, s, tidx, aidx))
        if i in unmap_at:
            d = unmap_at[i]
            for v in {e.vma for e in s.entries}:
                if s.files[s.vmas[v].file].dev == d:
                    succ.append(
                        (i, s._replace(entries=frozenset(e for e in s.entries if e.vma != v)), tidx, aidx)
                    )
        # a toucher's access takes effect (the touches of one thread in order, each in its window)
        for j in range(len(T)):
            if tidx[j] == len(T[j]):
                continue
            rec = T[j][tidx[j]]
            after = touch_done(i, s, rec, depth) if rec.k0 <= i else None
            if after is not None:
                nxt = list(tidx)
                nxt[j] += 1
                succ.append((i, after, tuple(nxt), aidx))
        for node in succ:
            if node in seen:
                continue
            err = bad(node[1])
            if err:
                note(node[0] + sum(node[2]), err)
                if err not in pruned and len(pruned) < 3:
                    pruned.append(err)
                continue
            seen.add(node)
            stack.append(node)
    why = "no path of the spec explains this log"
    if pruned:
        why += "; paths cut by invariants: " + " | ".join(pruned)
    raise TraceRejected(_report(run, c, why, best))


def _report(run: Run, c: Ctx, head: str, best: tuple[int, list[str]]) -> str:
    lines = [
        f"TRACE REJECTED (profile {c.prof.name}, seed {run.seed}): {head}",
        f"  rerun{' (exactly: scheduled)' if run.scheduled else ' (same plan; the OS interleaves)'}: "
        f"{run.rerun()}",
        "  furthest the spec got explains:",
    ]
    lines += [f"    - {w}" for w in best[1]]
    lines += [f"  {x}" for x in run.notes]
    lines.append("  log since the race began (index kind obj detail):")
    for k in range(run.k_start, len(run.events)):
        e = run.events[k]
        lines.append(f"    {k:3} {e.kind} {e.obj} {e.detail}")
    for j, recs in enumerate(run.touches):
        for r in recs:
            if isinstance(r, TouchRec):
                act = "write" if r.write else "read"
                lines.append(
                    f"  toucher{j}: {act} vma{r.vma} {r.addr:#x} in window [{r.k0}, {r.k1}] -> {r.outcome}"
                )
    for u in run.user_ops:
        lines.append(f"  user: {u.kind} {u.file} in window [{u.k0}, {u.k1}] -> {u.outcome}")
    for a in run.admin_ops:
        lines.append(f"  admin: {a.kind} in window [{a.k0}, {a.k1}] -> {a.outcome}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ the bus ----


class _SinkIda:
    """What a shared bus's minor ida becomes before it closes: the devices a modern re-bind leaked
    (the spec's finding) hold minors of the drivers' private idas, long gone."""

    def alloc(self) -> int:
        raise OSError(28, "closed")

    def free(self, i: int) -> None:
        pass


def leaked(bus: DaxBus) -> int:
    return sum(1 for r in bus.regions for d in r.devices if d.phase not in (0, 4))


def close_bus(bus: DaxBus) -> None:
    bus.minor_ida = _SinkIda()  # type: ignore[assignment]
    with contextlib.suppress(Exception):  # a variant's defect may strike again in cleanup
        bus.close()
