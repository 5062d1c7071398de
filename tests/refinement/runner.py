"""The runner: one race run on impl, carried out as its plan (plan.py) says, and the log it leaves.

Sequential setup through the lockstep driver (open two files, map each), then real concurrency:
toucher threads touch units of the mappings through process_vm_readv/writev, with no lock of ours
(their faults are serviced by the handler process's workers under the real SRCU read lock), while an
admin thread disables (and, modern, enables) the device, a closer thread closes an fd, and a user
thread opens the node, maps SHAPE_2 through its new file, unmaps it and closes it (file operations
serialise with the admin program on the bus lock, as the kernel's do on the device's locks; faults
do not). A user toucher touches the user's mapping while the user thread unmaps it; forks are left
to the lockstep tests.

Free-running (the mass test), the OS interleaves: the seed fixes only the plan, so a failing seed
may not fail again. Scheduled, the seeded Scheduler (scheduler.py) chooses at every logged point:
the same seed gives the same log.

``Runner`` has one method per thread of the run; each records its actions with the window of log
sequence numbers it ran in, and ``Runner.collect`` merges impl's events with the handler's records
and turns the windows into log positions (trace.Run, what the checker reads).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import errno
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import icontract

from devdax.impl import sys as dsys
from devdax.impl import tracelog
from devdax.impl.core import MappingCore
from devdax.impl.dax import MAP, PROT, DaxBus, DaxFile, Event, KernelBug, UserMapping, VmArea
from devdax.impl.tracelog import TraceLog, TraceRec
from devdax.impl.vmcore import claim
from devdax.spec.config import Config
from devdax.spec.geometry import SIZE_NAMES

from .abstraction import abstraction
from .driver import Driver, spec_config
from .plan import SETUP_FILES, Plan
from .scheduler import ACTION, Chooser, Scheduler
from .trace import SHAPE_2, AdminRec, HRec, Run, TouchRec, UserRec


class RunState:
    """What the user thread of a run shares with the user toucher and a scripted chooser: the
    mapping (file name, impl start) once mmap returned, and where the user thread is (phase:
    "" -> "before-munmap" -> "munmap" -> "unmapped" -> "done")."""

    def __init__(self) -> None:
        self.mapping: tuple[str, int] | None = None
        self.mapped = threading.Event()  # set when mapping is known, or known never to come
        self.phase = ""
        self.reused = False  # the kernel reused the unmapped range (see Runner.unmap_user)


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


def settle(bus: DaxBus, seed: int, seq0: int) -> int:
    """The end of a run's log: quiesced, and no fault begun since ``seq0`` still inside its read
    section. quiesce counts messages read; a worker that read one just after quiesce's snapshot
    (seen once in about 25,000 free runs: the log ended at a read_lock) has begun a fault the
    log would cut in two, so the end is taken again once that fault's read_unlock is logged."""
    tr = bus.core.table.trace
    deadline = time.monotonic() + 10
    while True:
        quiesce(bus, seed)
        seq1 = tr.now()
        inside: set[int] = set()
        for r in tr.records(seq0, seq1):
            if int(r.kind) == tracelog.LOCK:
                inside.add(int(r.wid))
            elif int(r.kind) == tracelog.UNLOCK:
                inside.discard(int(r.wid))
        if not inside:
            return seq1
        if time.monotonic() > deadline:
            raise TimeoutError(f"seed {seed}: workers {sorted(inside)} still inside a fault")
        time.sleep(2e-4)


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
    plan = Plan.draw(seed, profile, touchers, touches, users, force_user)
    if not bus.core.table.trace.on:
        enable_tracing(bus)
    cfg: Config = spec_config(profile, cpus=int(bus.core.table.t.hdr.nworkers), generations=2)
    drv = Driver(cfg, impl_profile=impl_profile, bus=bus, minor_base=minor_base)  # type: ignore[arg-type]
    try:
        runner = Runner(bus, drv, plan, seed)
        runner.race(scheduled, chooser)
        return runner.collect(profile, str(getattr(impl_profile, "name", profile)), minor_base, script)
    finally:
        drv.close()


class Runner:
    """One race run in progress: the setup, one method per thread of the race, and what the threads
    record (each action with the window of log sequence numbers it ran in)."""

    def __init__(self, bus: DaxBus, drv: Driver, plan: Plan, seed: int) -> None:
        self.bus = bus
        self.drv = drv
        self.plan = plan
        self.seed = seed
        self.tr = bus.core.table.trace
        self.touchers = len(plan.touches)
        self.ut = self.touchers  # the user toucher's index (tids, records)
        self.ustate = RunState()
        self.ureserved: list[tuple[int, int]] = []  # the unmapped user range, held PROT_NONE until the end
        self.trecs: list[list[TouchRec]] = [[] for _ in range(self.touchers)]
        self.urecs_t: list[TouchRec] = []
        self.arecs: list[AdminRec] = []
        self.urecs: list[UserRec] = []
        self.tids: dict[int, int] = {}  # toucher native thread id -> toucher index
        self.errors: list[BaseException] = []
        self.sched: Scheduler | None = None
        self.setup()

    def setup(self) -> None:
        """The sequential part, in lockstep with the spec: two files of device 0, each mapped once,
        touched as the plan says; the race begins at ``k_start`` from the spec state ``s0``."""
        drv = self.drv
        drv.open(0, True)
        drv.open(0, True)
        drv.mmap(0, SHAPE_2)
        drv.mmap(1, SHAPE_2)
        for k, unit, write in self.plan.setup_touches:
            drv.touch(k, unit, write)
        self.vmas = drv.live_vmas()
        self.files = {f.name: k for f, k in drv.live_files()}
        assert len(self.vmas) == len(self.files) == SETUP_FILES, "the plan's choices assume the setup's"
        self.events = drv.events
        self.k_start = len(self.events)
        self.s0 = drv.s
        self.align = drv.c.align
        self.close_target = sorted(self.files)[self.plan.close_target]
        self.dev = drv.ref.regions[-1].devices[0]

    # --------------------------------------------------------------------------- the race --

    def race(self, scheduled: bool, chooser: Callable[[RunState], Chooser] | None) -> None:
        """Start the threads together (a barrier), wait for them, and for the handler to finish
        every fault they raised; the log of the race is [seq0, seq1)."""
        plan, tr = self.plan, self.tr
        threads = [threading.Thread(target=self.toucher, args=(j,)) for j in range(self.touchers)]
        threads.append(threading.Thread(target=self.admin))
        if plan.close_at is not None:
            threads.append(threading.Thread(target=self.closer))
        if plan.user is not None:
            threads.append(threading.Thread(target=self.user))
            threads.append(threading.Thread(target=self.utoucher))
        self.barrier = threading.Barrier(len(threads))
        quiesce(self.bus, self.seed)
        self.seq0 = tr.now()
        if scheduled:
            hpid = int(self.bus.core.table.t.hdr.handler_pid)
            made = chooser(self.ustate) if chooser is not None else None
            self.sched = Scheduler(tr, self.seed, hpid, self.tids, chooser=made)
        self._join(threads)
        self.seq1 = settle(self.bus, self.seed, self.seq0)

    def _join(self, threads: list[threading.Thread]) -> None:
        sched, seed = self.sched, self.seed
        sthread = None
        if sched is not None:
            self.tr.area.sched = 1
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
            self.tr.area.sched = 0  # a thread still at a gate goes on
            for a, n in self.ureserved:
                dsys.munmap(a, n)
        if sched is not None and sched.error:
            raise RuntimeError(f"seed {seed}: scheduler: {sched.error}")
        if self.errors:
            raise self.errors[0]

    def enter(self, g: int) -> None:
        """A thread of the run takes main gate g (scheduled) before its first action."""
        if self.sched is not None:
            self.sched.main_tids.append(threading.get_native_id())
            self.tr.set_gate(tracelog.MAIN_GATE0 + g)

    def pause(self, t: float) -> None:
        """The plan's pause before an action; scheduled, the scheduler's turn instead."""
        if self.sched is None:
            time.sleep(t)
        else:
            self.tr.gate(ACTION)

    def toucher(self, j: int) -> None:
        try:
            self.tids[threading.get_native_id()] = j
            self.enter(j)
            self.barrier.wait()
            for vi, unit, write, p in self.plan.touches[j]:
                self.pause(p)
                a, slot, delta = self.vmas[vi]
                addr = a.start + unit * self.align + 0x40 * (j + 1)
                k0 = self.tr.now()
                outcome = _touch(addr, write, j)
                k1 = self.tr.now()
                self.trecs[j].append(TouchRec(j, slot, addr + delta, write, k0, k1, outcome))
        except BaseException as e:
            self.errors.append(e)

    def admin(self) -> None:
        try:
            self.enter(self.touchers)
            self.barrier.wait()
            for kind, p in self.plan.admin:
                self.pause(p)
                k0 = self.tr.now()
                try:
                    (self.bus.disable if kind == "disable" else self.bus.enable)(self.dev)
                    out = "ok"
                except OSError as e:
                    out = f"errno {e.errno}"
                except icontract.ViolationError as e:
                    out = f"contract: {' '.join(str(e).splitlines()[1:3])}"
                except KernelBug as e:
                    out = f"KernelBug: {e}"
                self.arecs.append(AdminRec(kind, 0, k0, self.tr.now(), out))
        except BaseException as e:
            self.errors.append(e)

    def closer(self) -> None:
        try:
            self.enter(self.touchers + 1)
            self.barrier.wait()
            assert self.plan.close_at is not None
            self.pause(self.plan.close_at)
            f = next(f for f, _ in self.drv.live_files() if f.name == self.close_target)
            f.close()
        except BaseException as e:
            self.errors.append(e)

    def user(self) -> None:
        """open the node, map SHAPE_2 through the new file, unmap it, close: each may meet the
        admin program (they serialise with it on the bus lock, as the kernel's file operations
        do on the device's locks) and must fail exactly when the spec's would."""
        plan = self.plan
        try:
            self.enter(self.touchers + 2)
            assert plan.user is not None
            f, h = self.open_map(0.0, 0.0) if plan.user_early else (None, None)
            self.barrier.wait()
            if not plan.user_early:
                f, h = self.open_map(plan.user[0], plan.user[1])
            if not isinstance(f, DaxFile):
                return
            closed = isinstance(h, UserMapping) and self.unmap_user(f, h)
            self.ustate.mapped.set()
            if not closed:
                self.pause(plan.user[3])
                self.user_op("close", f.name, f.close)
        except BaseException as e:
            self.errors.append(e)
        finally:
            self.ustate.mapped.set()
            self.ustate.phase = "done"

    def user_op(self, kind: str, name: str, fn: Callable[[], object]) -> object:
        """One file operation of the user thread, recorded with its window and errno."""
        k0 = self.tr.now()
        try:
            out: object = fn()
            res = "ok"
        except OSError as e:
            out, res = None, errno.errorcode.get(e.errno or 0, "EIO")
        except KernelBug as e:  # modern M21: mmap of a file opened while dead
            out, res = None, "OOPS"
            self.drv.ref.note_oops(str(e))
        self.urecs.append(UserRec(kind, name, k0, self.tr.now(), res))
        return out

    def open_map(self, first: float, second: float) -> tuple[object, object]:
        self.pause(first)
        f = self.user_op("open", "", lambda: self.bus.open(self.dev, os.O_RDWR))
        if not isinstance(f, DaxFile):
            return f, None
        self.pause(second)
        rw = PROT["PROT_READ"] | PROT["PROT_WRITE"]
        return f, self.user_op("mmap", f.name, lambda: f.mmap(2 * self.align, rw, MAP["MAP_SHARED"], 0, None))

    def unmap_user(self, f: DaxFile, h: UserMapping) -> bool:
        """Publish the user's mapping to the user toucher, then unmap it (closing the fd first if
        the plan says so); whether the fd was closed."""
        plan, st, length = self.plan, self.ustate, 2 * self.align
        assert plan.user is not None
        start = h.addr
        st.mapping = (f.name, start)
        st.mapped.set()
        closed = False
        if plan.close_first:
            # the fd goes first: the vma holds the file's last reference, so the munmap racing the
            # user toucher's fault is also the last fput
            self.pause(plan.user[3])
            self.user_op("close", f.name, f.close)
            closed = True
        st.phase = "before-munmap"
        self.pause(plan.user[2])
        st.phase = "munmap"
        self.user_op("munmap", f.name, lambda: h.munmap(0, length))
        st.phase = "unmapped"
        # nothing else may be placed there while the user toucher may still touch it (a touch must
        # meet no vma: SIGSEGV); a PROT_NONE reservation answers the same
        if claim(start, length):
            self.ureserved.append((start, length))
        else:
            st.reused = True
        return closed

    def utoucher(self) -> None:
        """Touches the user's mapping once it exists (it waits for the mmap, off any gate):
        its faults race the user's munmap, and after it the access meets no vma."""
        ut = self.ut
        try:
            self.tids[threading.get_native_id()] = ut
            self.enter(self.touchers + 3)
            self.barrier.wait()
            self.ustate.mapped.wait(30)
            if self.ustate.mapping is None:
                return
            name, start = self.ustate.mapping
            for unit, write, p in self.plan.user_touches:
                self.pause(p)
                off = unit * self.align + 0x40 * (ut + 1)
                k0 = self.tr.now()
                outcome = _touch(start + off, write, ut)
                # the munmap's number is taken right after its syscall, in its section: a touch
                # that returned in between met no vma before that number was given out, so the
                # window ends after the event in progress (number now()), not before
                k1 = self.tr.now() + 1
                self.urecs_t.append(TouchRec(ut, -1, off, write, k0, k1, outcome, ukey=(name, f"{start:#x}")))
        except BaseException as e:
            self.errors.append(e)

    # ------------------------------------------------------------------------- the record --

    def collect(self, profile: str, impl: str, minor_base: int, script: str) -> Run:
        """The run as the checker reads it: impl's events and the handler's points in one log,
        every window as log positions, abstraction(impl) at the end."""
        drv, tr, ustate = self.drv, self.tr, self.ustate
        final = abstraction(drv.c, self.bus, drv.ref, minor_base=minor_base)
        notes = [f"setup: {op.text} -> {op.impl}" for op in drv.history]
        devs = {d.name: drv.ref.dev_index(drv.c, d) for r in drv.ref.regions for d in r.devices}
        umap = None if ustate.mapping is None else (*ustate.mapping, 2 * self.align)
        points = tr.records(self.seq0, self.seq1)
        log, hrecs = _merge(list(self.events), self.k_start, points, self.vmas, self.tids, umap)
        at = _log_positions(log, self.k_start)
        touches: list[list[TouchRec | UserRec]] = [[at(r) for r in rs] for rs in self.trecs]
        user_ops = [at(u) for u in self.urecs]
        utouches = [at(r) for r in self.urecs_t]
        if ustate.reused:
            # the kernel gave the unmapped range to someone else before the reservation: a touch
            # that may have run after the munmap began may have read foreign memory; not judged
            began = min((u.k0 for u in user_ops if u.kind == "munmap"), default=len(log))
            notes.append(
                f"the user's range was reused after its munmap: {sum(r.k1 >= began for r in utouches)} "
                "user touch(es) after it not judged"
            )
            utouches = [r for r in utouches if r.k1 < began]
        touches.append(list(utouches))
        touches.append([u for u in user_ops if u.outcome != "ok"])
        return Run(
            self.seed,
            profile,
            log,
            self.k_start,
            touches,
            [at(a) for a in self.arecs],
            self.files,
            devs,
            self.s0,
            final,
            hrecs,
            notes,
            scheduled=self.sched is not None,
            impl=impl,
            choices=self.sched.choices if self.sched else [],
            node=drv.ref.dev_index(drv.c, self.dev),
            user_ops=user_ops,
            script=script,
        )


def _touch(addr: int, write: bool, j: int) -> str:
    """Toucher j's access at addr (a write stores j + 1): its outcome, ok or the signal."""
    if write:
        return MappingCore.touch_write(addr, bytes([j + 1])).outcome
    return MappingCore.touch_read(addr, 1).outcome


R = TypeVar("R", TouchRec, UserRec, AdminRec)


def _log_positions(log: list[Event], k_start: int) -> Callable[[R], R]:
    """A record's window as log positions: each sequence number -> the index of the first event of
    the merged log at or after it."""
    seqs = [e.seq for e in log]

    def at(r: R) -> R:
        k0 = bisect.bisect_left(seqs, r.k0, lo=k_start)
        return dataclasses.replace(r, k0=k0, k1=bisect.bisect_left(seqs, r.k1, lo=k_start))

    return at


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
    merged: list[tuple[int, Event, HRec | None]] = [(e.seq, e, None) for e in events[k_start:]]
    for r in recs:
        ev, h = _translate(r, vmas, tids, umap)
        merged.append((int(r.seq), ev, h))
    merged.sort(key=lambda x: x[0])
    log = events[:k_start] + [e for _, e, _ in merged]
    hrecs = {k_start + i: h for i, (_, _, h) in enumerate(merged) if h is not None}
    return log, hrecs


def _translate(
    r: TraceRec, vmas: list[tuple[VmArea, int, int]], tids: dict[int, int], umap: tuple[str, int, int] | None
) -> tuple[Event, HRec]:
    """One handler record as a handler point in spec terms, and its log event."""
    kind = tracelog.KIND_NAMES[int(r.kind)]
    if r.kind in (tracelog.GP_FLIP, tracelog.GP_DONE):
        return Event(kind, "srcu", "", int(r.seq)), HRec(kind, -1, -1, -1, 0)
    slot, addr = _locate(vmas, int(r.addr))
    ukey = None
    if slot < 0 and umap is not None and umap[1] <= int(r.addr) < umap[1] + umap[2]:
        ukey = (umap[0], f"{umap[1]:#x}")
        addr = int(r.addr) - umap[1]  # the offset in the user's mapping
    who = tids.get(int(r.ptid), -1)
    h, detail = _point(kind, r, who, slot, addr)
    if ukey is not None:
        h = dataclasses.replace(h, ukey=ukey)
    what = f"toucher{who}" if who >= 0 else "no toucher"
    where = f"vma{slot}" if ukey is None else "user-vma +"
    return Event(kind, f"cpu{h.cpu}", f"{what} {where} {addr:#x} {detail}".rstrip(), int(r.seq)), h


def _locate(vmas: list[tuple[VmArea, int, int]], addr: int) -> tuple[int, int]:
    """(spec vma slot, spec address) of an impl address in a setup vma; (-1, addr) outside them."""
    for a, slot, delta in vmas:
        if a.start <= addr < a.end:
            return slot, addr + delta
    return -1, addr


def _point(kind: str, r: TraceRec, who: int, slot: int, addr: int) -> tuple[HRec, str]:
    """The handler point of a fault record (read_lock, check, insert, poison, read_unlock) and the
    detail its log event shows."""
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
        return h, f"alive={h.alive} -> {dec} ({h.reason})"
    if r.kind in (tracelog.INSERT, tracelog.POISON):
        changed = int(r.a)
        changed = -1 if changed == 2**64 - 1 else changed
        h = HRec(kind, int(r.wid), who, slot, addr, size=int(r.b), changed=changed)
        return h, f"{changed:#x} of {h.size:#x} bytes changed" if changed >= 0 else "ioctl failed"
    return HRec(kind, int(r.wid), who, slot, addr), ""


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
