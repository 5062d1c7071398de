"""The fault-handler process: owns the reading end of the userfaultfd and services every fault.

Why a separate process ("watch the GIL"): a Python thread that touches a mapping
through a memoryview or ctypes holds its interpreter's GIL for the whole page fault. If the code that
resolves the fault needed that same GIL, the fault could never be resolved. This process has its own
interpreter, so a blocked toucher in the main process cannot stall it; it needs nothing from the main
process while servicing a fault (all inputs are in the shared table, see table.py).

Per fault, each worker thread (one emulated CPU, one SRCU slot) first does what the mm does (find
the vma, holding the emulated mmap_lock read side that munmap waits for: Handler._service), then
what dev_dax_huge_fault does: enter the read-side section, check alive (check_vma), negotiate the
fault size, translate pgoff_to_phys, and install exactly one align-sized unit with UFFDIO_CONTINUE
-- or end the fault in SIGBUS with UFFDIO_POISON on the failing unit -- and only then leave the
section. The pure decision
is pluggable (``--policy module:function``) but always runs here, inside the section.

Forks of the main process: with UFFD_FEATURE_EVENT_FORK the child's registered vmas get a new
userfaultfd context, delivered to *this* process by reading the UFFD_EVENT_FORK message. We adopt it
and service the child's faults with the same table, which gives the modern kernel's behaviour for
fork (the child refaults, and after kill it gets SIGBUS). A child context is closed once its mm is
gone (probed with UFFDIO_CONTINUE returning ESRCH).

Started by core.MappingCore as ``python -m devdax.impl.handler --uffd N --table N --ctl N ...``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import errno
import functools
import importlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from devdax.spec import fault, geometry
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx

from . import srcu, tracelog
from . import sys as dsys
from .table import (
    DEV_DEFAULT_LEAKS,
    DEV_NO_FALLBACK,
    DEV_NO_PUD,
    DEV_NO_VMA_BOUNDS,
    DEV_RCU,
    MAX_VMAS,
    MAX_WORKERS,
    TABLE_SIZE,
    VMA_MAYSHARE,
    VMA_NOHUGE,
    VMA_SHARED,
    VMA_WRITE,
    C,
    SharedTable,
)
from .table import LAT_RING as _LAT_RING

PAGE = dsys.PAGE_SIZE


@dataclass(frozen=True, slots=True)
class Decision:
    """What a fault ends in. ``install``: CONTINUE [addr, addr+size); else POISON that range."""

    install: bool
    addr: int
    size: int
    reason: str  # "ok" | "dead" | "check_vma" | "fault" | "no_vma"
    fallbacks: int = 0
    #: read locks a ->huge_fault call took and did not release (M20's "default:" return)
    leaked: int = 0
    #: the entry size the driver chose, when ``size`` is less: the part of a huge entry inside the vma
    #: (without the M3/M4 vma bounds check the kernel maps the rest over whatever lies beyond)
    entry: int = 0


Policy = Callable[[SharedTable, int, int], Decision]
"""(table, vma index, fault address) -> Decision; called inside the SRCU read-side section."""

RULES = geometry.FaultRules()


def device_rules(bits: int) -> geometry.FaultRules:
    """A DeviceDesc.rules word -> the FaultRules of the device's driver (0: the fixed rules)."""
    if not bits & (DEV_NO_FALLBACK | DEV_NO_VMA_BOUNDS | DEV_NO_PUD):
        return RULES
    return geometry.FaultRules(
        fallback=not bits & DEV_NO_FALLBACK,
        vma_bounds=not bits & DEV_NO_VMA_BOUNDS,
        pud_supported=not bits & DEV_NO_PUD,
    )


def mm_fault_size(addr: int, vm_start: int, vm_end: int, first: int = 0) -> int:
    """The first entry size the mm asks the driver for (__handle_mm_fault on a VM_HUGEPAGE vma).

    [INF] The mm tries a PUD, then a PMD, only when the aligned block containing the address lies
    inside the vma (thp_vma_suitable_order); otherwise it starts at PTE size. ``first`` (the table's
    hdr.mm_first, non-zero) is the spec's model of the mm instead (Config.first_fault): that size
    first for every fault, whatever the vma. The 4.x mm was that: create_huge_pmd/create_huge_pud
    called the file vma's fault handler without a range check (only the anonymous path,
    do_huge_pmd_anonymous_page, checked), which is why the driver needed its own vma bounds check
    (M3/M4).
    """
    if first:
        return first
    for size in (geometry.PUD_SIZE, geometry.PMD_SIZE):
        block = addr & ~(size - 1)
        if block >= vm_start and block + size <= vm_end:
            return size
    return geometry.PAGE_SIZE


_ranges_cache: dict[tuple[int, int], tuple[int, tuple[geometry.Range, ...]]] = {}


def _ranges(table: SharedTable, dev_idx: int) -> tuple[geometry.Range, ...]:
    """The device's ranges as geometry.Range, rebuilt only when the device's generation changes."""
    dev = table.t.devices[dev_idx]
    gen = int(dev.gen)
    hit = _ranges_cache.get((table.addr, dev_idx))
    if hit is not None and hit[0] == gen:
        return hit[1]
    ranges = tuple(
        geometry.Range(int(r.start), int(r.end), int(r.pgoff)) for r in dev.ranges[: int(dev.nranges)]
    )
    _ranges_cache[(table.addr, dev_idx)] = (gen, ranges)
    return ranges


@functools.cache
def _mm_ctx(first: int) -> Ctx:
    """A spec context whose mm asks ``first`` first (Config.first_fault): what spec/fault.py
    first_size reads, so that the emulated mm takes its first size by the spec's rule."""
    return Ctx.of(Config(first_fault=geometry.SIZE_NAMES[first]))


def first_fault_size(table: SharedTable, vma_idx: int, addr: int) -> int:
    """The size the mm asks the driver for first (spec/fault.py first_size): the largest the vma
    allows (mm_fault_size), PTE on a VM_NOHUGEPAGE vma, at most PMD where a pmd table fills the
    PUD entry of the address's 1G slot (an earlier fault there went below PUD size)."""
    vma = table.t.vmas[vma_idx]
    first = mm_fault_size(addr, int(vma.start), int(vma.end), int(table.t.hdr.mm_first))
    return fault.first_size(_mm_ctx(first), bool(int(vma.flags) & VMA_NOHUGE), table.pmd_table(addr))


def dax_policy(table: SharedTable, vma_idx: int, addr: int) -> Decision:
    """The mm's fault (first size, fallback) through dev_dax_huge_fault, over the shared descriptors
    (the default policy). A fault whose last attempt was below PUD size leaves a pmd table in its 1G
    slot, whatever it ends in (spec/fault.py leaves_pmd_table): later faults there start at PMD."""
    d, last = _huge_fault(table, vma_idx, addr, first_fault_size(table, vma_idx, addr))
    if fault.leaves_pmd_table(last):
        table.leave_pmd_table(addr)
    return d


def _huge_fault(table: SharedTable, vma_idx: int, addr: int, size: int) -> tuple[Decision, int]:
    """dev_dax_huge_fault from ``size`` down while it answers FALLBACK; the decision and the size
    of the last attempt."""
    vma = table.t.vmas[vma_idx]
    dev_idx = int(vma.dev)
    dev = table.t.devices[dev_idx]
    start, end, align = int(vma.start), int(vma.end), int(dev.align)
    alive = bool(dev.alive)
    vflags = int(vma.flags)
    flags = geometry.VmaFlags(
        shared=bool(vflags & VMA_SHARED),
        mayshare=bool(vflags & VMA_MAYSHARE),
        write=bool(vflags & VMA_WRITE),
        noreserve=False,
        dontcopy=False,
    )
    vma_ok = geometry.check_vma(alive, flags, start, end, align) == 0
    unit = max(align, PAGE)
    poison_at = max(start, addr & ~(unit - 1))
    poison_len = max(PAGE, min(unit, end - poison_at))
    if not vma_ok:
        return Decision(False, poison_at, poison_len, "check_vma" if alive else "dead"), size
    ranges = _ranges(table, dev_idx)
    bits = int(dev.rules)
    rules = device_rules(bits)
    fallbacks = leaked = 0
    while True:
        d = geometry.dax_huge_fault(size, addr, start, end, int(vma.pgoff), align, ranges, vma_ok, rules)
        if d.result is geometry.FaultResult.NOPAGE:
            # without the vma bounds check (M3/M4) a huge entry can reach past vm_end; the part
            # outside the vma cannot be mapped here (no registered range), the part inside is
            lo, hi = max(d.addr, start), min(d.addr + size, end)
            return Decision(True, lo, hi - lo, "ok", fallbacks, leaked, size), size
        if d.result is geometry.FaultResult.SIGBUS:
            break
        if bits & DEV_DEFAULT_LEAKS and size == geometry.PUD_SIZE and not rules.pud_supported:
            # V410/V411 dax_dev_huge_fault: "default: return VM_FAULT_FALLBACK;" between
            # srcu_read_lock and srcu_read_unlock (M20): this call's read lock is never dropped
            leaked += 1
        fallbacks += 1
        nxt = geometry.next_fault_size(size)
        if nxt is None:
            break
        size = nxt
    return Decision(False, poison_at, poison_len, "fault", fallbacks, leaked), size


def sigbus_policy(table: SharedTable, vma_idx: int, addr: int) -> Decision:
    """Every fault ends in SIGBUS on its page: the smallest alternative policy (tests the plumbing)."""
    return Decision(False, addr & ~(PAGE - 1), PAGE, "fault")


def raising_policy(table: SharedTable, vma_idx: int, addr: int) -> Decision:
    """A policy with a bug: the handler must turn it into SIGBUS and an error count, not a hang."""
    raise RuntimeError("policy bug")


def slow_policy(table: SharedTable, vma_idx: int, addr: int) -> Decision:
    """dax_policy, then a pause of ``hdr.policy_arg`` microseconds before the install.

    The pause sits between "checked alive" and "entry installed", inside the read-side section: it
    widens the window the teardown's grace period exists for, so tests can show that kill_device
    waits for it and that a teardown without the grace period leaves a stale entry behind.
    """
    d = dax_policy(table, vma_idx, addr)
    if d.install:
        time.sleep(int(table.t.hdr.policy_arg) / 1e6)
    return d


_INSTALL = {
    geometry.PAGE_SIZE: C.INSTALL_PTE,
    geometry.PMD_SIZE: C.INSTALL_PMD,
    geometry.PUD_SIZE: C.INSTALL_PUD,
}
_SIGBUS = {
    "dead": C.SIGBUS_DEAD,
    "check_vma": C.SIGBUS_VMA,
    "fault": C.SIGBUS_FAULT,
    "no_vma": C.SIGBUS_NO_VMA,
}


class Handler:
    """The state of the handler process: the table, the vma index, the contexts, the workers."""

    def __init__(self, uffd: int, table_fd: int, ctl: socket.socket, nworkers: int, policy: Policy) -> None:
        if not 1 <= nworkers <= MAX_WORKERS:
            raise ValueError(f"workers must be in 1..{MAX_WORKERS}")
        self.uffd = uffd
        self.addr = dsys.mmap(0, TABLE_SIZE, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED, table_fd, 0)
        os.close(table_fd)
        self.table = SharedTable(self.addr)
        self.trace = self.table.trace
        self.ctl = ctl
        self.policy = policy
        self.nworkers = nworkers
        # One epoll per worker, each uffd registered EPOLLEXCLUSIVE: a fault wakes one worker, not all
        # of them (a thundering herd costs a GIL hand-off per woken worker in this process).
        self.eps = [select.epoll() for _ in range(nworkers)]
        self.stopfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        for ep in self.eps:
            ep.register(self.stopfd, select.EPOLLIN)
            ep.register(uffd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self.children: set[int] = set()
        self.backlog: list[list[tuple[int, dsys.uffd_msg]]] = [[] for _ in range(nworkers)]
        self._next_reap = 0.0
        self.ctx_lock = threading.Lock()
        self.index: tuple[list[int], list[tuple[int, int]]] = ([], [])  # (starts, [(end, idx)])
        self.stop = False
        self.workers = [
            threading.Thread(target=self._worker, args=(i,), name=f"dax-cpu{i}", daemon=True)
            for i in range(nworkers)
        ]

    # --- vma index (updated by the control thread, read by workers without locks) ----------------------
    def _rebuild_index(self) -> None:
        items = sorted((int(v.start), int(v.end), i) for i, v in enumerate(self.table.t.vmas) if v.used)
        self.index = ([s for s, _, _ in items], [(e, i) for _, e, i in items])

    def lookup(self, addr: int) -> int | None:
        starts, rest = self.index
        k = bisect.bisect_right(starts, addr) - 1
        if k >= 0 and addr < rest[k][0]:
            return rest[k][1]
        return None

    # --- fault service -----------------------------------------------------------------------------------
    def _pump(self, fd: int, wid: int) -> None:
        """Read pending messages of ``fd`` while an ioctl on it says EAGAIN.

        EAGAIN with nothing done means the context's mm is changing, e.g. a fork whose
        UFFD_EVENT_FORK is still unread -- and the forking thread waits until someone reads it. With a
        single worker that someone is us, so adopt fork events here; page faults read on the way are
        kept in this worker's backlog and serviced after the current one. (Defensive: on 6.18 the
        stress test in tests/impl never saw EAGAIN, but nothing in the uAPI promises that.)
        """
        for m in dsys.read_msgs(fd):
            self.table.t.workers[wid].counters[C.MSGS] += 1
            if m.event == dsys.UFFD_EVENT_FORK:
                self._adopt_child(int(m.arg0 & 0xFFFF_FFFF), wid)
            elif m.event == dsys.UFFD_EVENT_PAGEFAULT:
                self.backlog[wid].append((fd, m))

    def _fill(self, fd: int, d: Decision, wid: int = 0, page: int = PAGE) -> int:
        """Install (or poison) every missing page of the unit; returns the bytes this call changed.

        On shmem (4K pages) a unit is 1 << (21 or 30 - 12) PTEs, not one PMD/PUD entry, so a zap racing
        with an install can leave it half populated. A single CONTINUE over the unit would then fail with
        EEXIST forever and the toucher would refault forever (seen in the GIL test), so this walks the
        unit: a partial ioctl (EAGAIN with a byte count) resumes after the bytes done, EEXIST skips the
        page that is present, EAGAIN with nothing done (mm changing under fork) retries. ``page``:
        the page size of the device's memory; on hugetlbfs one CONTINUE maps whole huge pages (one
        PMD or PUD entry each), and nothing smaller may be skipped.
        """
        op = dsys.uffd_continue if d.install else dsys.uffd_poison
        pos, end, changed, spins = d.addr, d.addr + d.size, 0, 0
        while pos < end:
            try:
                n = op(fd, pos, end - pos, 0)
                return changed + n
            except OSError as e:
                done = int(getattr(e, "mapped", 0))
                if done > 0:
                    changed += done
                    pos += done
                elif e.errno == errno.EEXIST:
                    pos += page
                elif e.errno == errno.EAGAIN and spins < 10000:
                    spins += 1
                    with contextlib.suppress(OSError):
                        self._pump(fd, wid)
                    time.sleep(0.00005)
                else:
                    raise
        return changed

    def _count(self, d: Decision, dev: int | None, wid: int, sign: int) -> None:
        st = self.table.t.workers[wid]
        if d.install:
            st.counters[_INSTALL[d.entry or d.size]] += sign
            if dev is not None:
                st.dev_installs[dev] += sign
        else:
            st.counters[C.SIGBUS] += sign
            st.counters[_SIGBUS[d.reason]] += sign
            if dev is not None:
                st.dev_sigbus[dev] += sign

    def _resolve(self, fd: int, d: Decision, dev: int | None, wid: int) -> int:
        """Run the ioctl(s) for a decision, then make sure every waiter on the unit is woken.

        The outcome is counted *before* the ioctl, because the ioctl wakes the toucher, and a toucher
        that reads the counters right after its access must see its own fault. When the unit turns out
        to be fully present already (a racing fault installed it) the count is taken back and the fault
        is counted as EEXIST instead. Returns the bytes changed (0: all present, -1: the ioctl failed).
        """
        st = self.table.t.workers[wid]
        page = int(self.table.t.devices[dev].page) or PAGE if dev is not None else PAGE
        self._count(d, dev, wid, 1)
        try:
            changed = self._fill(fd, d, wid, page)
        except OSError as e:
            self._count(d, dev, wid, -1)
            if e.errno == errno.ENOENT:
                st.counters[C.ENOENT] += 1  # the vma went away under the fault
            elif e.errno != errno.ESRCH:  # ESRCH: the faulting mm is gone
                st.counters[C.ERRORS] += 1
            changed = -1
        if changed == 0:
            self._count(d, dev, wid, -1)
            st.counters[C.EEXIST] += 1
        if changed != d.size:
            with contextlib.suppress(OSError):
                dsys.uffd_wake(fd, d.addr, d.size)
        return changed

    def service(self, fd: int, msg: dsys.uffd_msg, wid: int, t0: int) -> None:
        """One fault, marked busy from before its read lock to after its unlock (read_nesting)."""
        st = self.table.t.workers[wid]
        st.counters[C.FAULTS] += 1
        if fd != self.uffd:
            st.counters[C.CHILD_FAULTS] += 1
        sr = self.table.srcu
        entered = sr.nesting(wid)
        st.busy = 1
        try:
            self._service(fd, msg, wid, t0, sr, entered)
        finally:
            st.busy = 0

    @staticmethod
    def _point(tr: tracelog.TraceLog | None, kind: int, ptid: int) -> contextlib.AbstractContextManager[None]:
        """A linearization point of the fault (impl/tracelog.py): when trace validation is on, the
        block runs inside the log's critical section, shared with the main process's stores of
        alive, so what it reads and what it records are one point of one total order."""
        return tr.section(kind, ptid) if tr is not None else contextlib.nullcontext()

    def find_vma(self, addr: int) -> int | None:
        """find_vma for a fault: the descriptor in use that covers the address. The index answers
        first; the descriptors themselves are the truth (a munmap retires one, a partial munmap
        moves the rest of a vma to another slot, before the index is rebuilt), so when the index's
        answer does not cover the address every descriptor is looked at (the rare path: a fault
        that raced a munmap)."""
        t = self.table.t
        idx = self.lookup(addr)
        if idx is not None:
            v = t.vmas[idx]
            if v.used and int(v.start) <= addr < int(v.end):
                return idx
        for i in range(MAX_VMAS):
            v = t.vmas[i]
            if v.used and int(v.start) <= addr < int(v.end):
                return i
        return None

    def _service(self, fd: int, msg: dsys.uffd_msg, wid: int, t0: int, sr: srcu.Srcu, entered: int) -> None:
        """One fault as the kernel runs it: the mm finds the vma under mmap_lock held for read, then
        calls the driver's ->huge_fault, then drops mmap_lock.

        mmap_lock (do_user_addr_fault -> lock_vma_under_rcu / lock_mm_and_find_vma; released after
        handle_mm_fault returns): munmap takes it for write (__vm_munmap -> mmap_write_lock ->
        do_vmi_munmap), so a munmap of the range is entirely before the fault (no vma: the mm's
        bad_area, SIGSEGV, the driver is never called) or entirely after it (its entry is zapped
        with the vma). Here the read side is the worker's ``mm_addr`` slot, set before the lookup
        and cleared after the install/poison; MappingCore._mm_write (munmap) waits for slots in its
        range. The handler never waits for the main process (whose thread may be the one blocked
        in this fault, holding its GIL): only the writer waits.

        Traced (trace validation), each driver step is recorded: read_lock (the SRCU slot store; the
        vma lookup shares its point), check (alive as read and the decision: the policy runs under
        the log's lock, so the value logged is the value it decided on), insert or poison (its
        number is taken before the ioctl wakes the toucher, so what the toucher does next comes
        after it), read_unlock (the slot store). A fault that finds no vma records nothing.
        """
        st = self.table.t.workers[wid]
        addr = int(msg.arg1)
        ptid = int(msg.arg2) & 0xFFFF_FFFF
        tr = self.trace if self.trace.on else None
        try:
            with self._point(tr, tracelog.LOCK, ptid):
                st.mm_addr = (addr & ~(PAGE - 1)) | 1  # mmap_read_lock
                idx = self.find_vma(addr)
                if idx is not None:
                    sr.read_lock(wid)
                    if tr is not None:
                        tr.emit(tracelog.LOCK, wid, ptid, addr)
                else:
                    st.mm_addr = 0
            if idx is None:
                t1 = self._bad_area(fd, addr, wid)
            else:
                t1 = self._driver_fault(fd, addr, ptid, idx, wid, tr, sr, entered)
        finally:
            st.mm_addr = 0
        t2 = time.perf_counter_ns()
        i = int(st.lat_idx)
        st.lat_ns[i % _LAT_RING] = t1 - t0
        st.ioctl_ns[i % _LAT_RING] = t2 - t1
        st.lat_idx = i + 1

    def _bad_area(self, fd: int, addr: int, wid: int) -> int:
        """No vma at the address (it was unmapped while the fault waited for us): the kernel's mm
        answers SIGSEGV without calling the driver. Our own context is only woken: the toucher's
        retry finds no vma and gets SIGSEGV from the kernel itself, and a wake can never land in
        a vma mapped there since (a poison would). A forked child's context keeps its copy of the
        vma after the parent's munmap, so there the unit is poisoned as before (SIGBUS)."""
        st = self.table.t.workers[wid]
        t1 = time.perf_counter_ns()
        if fd != self.uffd:
            self._poison_orphan(fd, addr, wid)
            return t1
        st.counters[C.ENOENT] += 1
        with contextlib.suppress(OSError):
            dsys.uffd_wake(fd, addr & ~(PAGE - 1), PAGE)
        return t1

    def _poison_orphan(self, fd: int, addr: int, wid: int) -> None:
        """SIGBUS for a forked child's copy of a vma its parent unmapped. Its descriptor is gone, and
        with it the page size of its memory; hugetlbfs refuses a poison smaller than its page
        (EINVAL), so the sizes are tried from 4K up."""
        for size in (PAGE, geometry.PMD_SIZE, geometry.PUD_SIZE):
            d = Decision(False, addr & ~(size - 1), size, "no_vma")
            self._count(d, None, wid, 1)
            try:
                self._fill(fd, d, wid, size)
                return
            except OSError as e:
                self._count(d, None, wid, -1)
                if e.errno != errno.EINVAL:
                    break
        with contextlib.suppress(OSError):
            dsys.uffd_wake(fd, addr & ~(PAGE - 1), PAGE)

    def _driver_fault(
        self,
        fd: int,
        addr: int,
        ptid: int,
        idx: int,
        wid: int,
        tr: tracelog.TraceLog | None,
        sr: srcu.Srcu,
        entered: int,
    ) -> int:
        """dev_dax_huge_fault, from inside its read-side section (taken by the caller) to its unlock;
        returns when the decision was made (the latency ring's split point)."""
        st = self.table.t.workers[wid]
        try:
            with self._point(tr, tracelog.CHECK, ptid):
                alive = int(self.table.t.devices[int(self.table.t.vmas[idx].dev)].alive)
                # M5: a plain rcu_read_lock() section may not sleep (CONFIG_DEBUG_ATOMIC_SLEEP)
                atomic = bool(int(self.table.t.devices[int(self.table.t.vmas[idx].dev)].rules) & DEV_RCU)
                d = self._decide(addr, idx, wid, sr)
                dev = int(self.table.t.vmas[idx].dev)
                if tr is not None:
                    code = (d.size << 8) | (tracelog.reason_code(d.reason) << 1) | int(d.install)
                    tr.emit(tracelog.CHECK, wid, ptid, addr, idx, alive, code)
            if atomic and d.install:
                # vm_insert_mixed -> pte_alloc -> GFP_KERNEL allocation: might_sleep() inside
                # rcu_read_lock(): "BUG: sleeping function called from invalid context" (M5)
                st.counters[C.SLEEP_IN_ATOMIC] += 1
            t1 = time.perf_counter_ns()
            kind = tracelog.INSERT if d.install else tracelog.POISON
            with self._point(tr, kind, ptid):
                seq = tr.take() if tr is not None else 0
                changed = self._resolve(fd, d, dev, wid)  # the insert happens inside the read-side section
                if tr is not None:
                    tr.emit(kind, wid, ptid, d.addr, idx, changed, d.size, seq)
        finally:
            with self._point(tr, tracelog.UNLOCK, ptid):
                if tr is not None:
                    tr.emit(tracelog.UNLOCK, wid, ptid, addr)
                sr.read_unlock(wid)
                st.mm_addr = 0  # mmap_read_unlock
        if sr.nesting(wid) > entered:
            # lockdep_sys_exit: "WARNING: lock held when returning to user space!" (dax_srcu, M20)
            st.counters[C.LOCK_HELD_RETURN] += 1
        return t1

    def _decide(self, addr: int, idx: int, wid: int, sr: srcu.Srcu) -> Decision:
        """The policy's decision with what it costs the worker: fallbacks counted, and the read-side
        sections of ->huge_fault calls that never unlocked left held. Runs inside the CHECK point,
        so a traced fault logs the decision it acted on."""
        st = self.table.t.workers[wid]
        try:
            d = self.policy(self.table, idx, addr)
        except Exception:
            # a broken (pluggable) policy must not leave the toucher blocked forever: the
            # fault ends in SIGBUS and the error is counted
            st.counters[C.ERRORS] += 1
            d = Decision(False, addr & ~(PAGE - 1), PAGE, "fault")
        st.counters[C.FALLBACK] += d.fallbacks
        for _ in range(d.leaked):
            sr.read_lock(wid)  # taken by a ->huge_fault call that never unlocked
        return d

    def _adopt_child(self, fd: int, wid: int) -> None:
        with self.ctx_lock:
            self.children.add(fd)
            for ep in self.eps:
                ep.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self.table.t.workers[wid].counters[C.FORK_EVENTS] += 1

    def reap_children(self) -> int:
        """Close the contexts of children whose mm is gone; returns how many are still live."""
        with self.ctx_lock:
            for fd in list(self.children):
                try:
                    dsys.uffd_continue(fd, 0x10000, PAGE)  # an address no child maps: ENOENT if alive
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        continue
                else:
                    continue
                for ep in self.eps:
                    ep.unregister(fd)
                os.close(fd)
                self.children.discard(fd)
                self.table.t.workers[0].counters[C.CHILD_CTX_CLOSED] += 1
            return len(self.children)

    def _worker(self, wid: int) -> None:
        self.trace.set_gate(wid)
        while not self.stop:
            try:
                events = self.eps[wid].poll(1.0)
            except OSError:
                return
            if wid == 0 and (not events or time.monotonic() > self._next_reap):
                # dead children's contexts are closed at least once a second even when busy: raw
                # os.fork()s (not touch_in_child, which asks for REAP) would otherwise pile up fds
                self._next_reap = time.monotonic() + 1.0
                self.reap_children()
            for fd, _ in events:
                if fd == self.stopfd:
                    return
                t0 = time.perf_counter_ns()
                try:
                    msgs = dsys.read_msgs(fd)
                except OSError:
                    continue  # a child context closed under us
                # counted as read, all at once: a reader of the counters (trace validation's
                # quiesce) must not see "every message serviced" while this batch still holds one
                # (its toucher may be awake already: another fault's install on the unit woke it)
                self.table.t.workers[wid].counters[C.MSGS] += len(msgs)
                for m in msgs:
                    if m.event == dsys.UFFD_EVENT_PAGEFAULT:
                        self._service_safely(fd, m, wid, t0)
                    elif m.event == dsys.UFFD_EVENT_FORK:
                        self._adopt_child(int(m.arg0 & 0xFFFF_FFFF), wid)
                backlog = self.backlog[wid]
                while backlog:
                    bfd, bm = backlog.pop(0)
                    self._service_safely(bfd, bm, wid, time.perf_counter_ns())

    def _service_safely(self, fd: int, m: dsys.uffd_msg, wid: int, t0: int) -> None:
        """A worker never dies of one fault: on an unexpected error, count it and wake the toucher
        (it refaults; a persistent error then shows as a growing ``errors`` counter, not a hang)."""
        try:
            self.service(fd, m, wid, t0)
        except Exception:
            self.table.t.workers[wid].counters[C.ERRORS] += 1
            with contextlib.suppress(OSError):
                dsys.uffd_wake(fd, int(m.arg1) & ~(PAGE - 1), PAGE)

    # --- control channel -----------------------------------------------------------------------------------
    def run(self) -> int:
        srcu.register_reader_process()
        for w in self.workers:
            w.start()
        self.table.t.hdr.handler_pid = os.getpid()
        self.table.t.hdr.nworkers = self.nworkers
        self.table.t.hdr.ready = 1
        self.ctl.send(b"READY")
        try:
            while True:
                req = self.ctl.recv(256)
                if not req or req == b"STOP":
                    break
                if req in (b"ADD", b"DEL"):
                    self._rebuild_index()
                    self.ctl.send(b"OK")
                elif req == b"REAP":
                    self.ctl.send(b"OK %d" % self.reap_children())
                elif req == b"PING":
                    self.ctl.send(b"OK")
                else:
                    self.ctl.send(b"ERR unknown request")
        finally:
            self.stop = True
            os.eventfd_write(self.stopfd, 1)
            for w in self.workers:
                w.join(5)
            with self.ctx_lock:
                for fd in self.children:
                    os.close(fd)
                self.children.clear()
            for ep in self.eps:
                ep.close()
            os.close(self.stopfd)
            os.close(self.uffd)
            with contextlib.suppress(OSError):
                self.ctl.send(b"BYE")
            self.ctl.close()
        return 0


def load_policy(spec: str) -> Policy:
    """'module:function' -> the function (runs in this process only)."""
    mod, _, fn = spec.partition(":")
    p: Policy = getattr(importlib.import_module(mod), fn)
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="devdax.impl.handler")
    ap.add_argument("--uffd", type=int, required=True)
    ap.add_argument("--table", type=int, required=True)
    ap.add_argument("--ctl", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--policy", default="devdax.impl.handler:dax_policy")
    a = ap.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group; the owner decides when we stop (STOP or
    # EOF on the control socket), otherwise its mappings would be revoked under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=a.ctl)
    h = Handler(a.uffd, a.table, ctl, a.workers, load_policy(a.policy))
    return h.run()


if __name__ == "__main__":
    raise SystemExit(main())
