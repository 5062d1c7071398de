"""munmap (and mremap, and the last munmap of a closed file) against a fault the handler is servicing.

The kernel's rule: a fault holds mmap_lock for read from its vma lookup (do_user_addr_fault ->
lock_vma_under_rcu / lock_mm_and_find_vma) until handle_mm_fault returns, and munmap takes it for
write (__vm_munmap -> mmap_write_lock -> do_vmi_munmap), so a munmap of the range happens entirely
before the fault (it finds no vma: SIGSEGV, the driver is never called) or entirely after it (its
entry is zapped with the vma). spec/vma.py do_munmap models this: it cannot run while a CPU is in a
fault on the vma. impl services faults in another process over userfaultfd, where the kernel drops
mmap_lock while the toucher waits, so impl has its own read side (the worker's ``mm_addr`` slot) and
writer (MappingCore._mm_write); these tests stall a worker at a chosen point of its fault with the
trace log's gates (impl/tracelog.py; the test opens them one at a time, no sleeps decide anything)
and run the munmap meanwhile, in both orders.

Each asserts: no crash, no hang (a bounded join that fails the test), the toucher's outcome is one
the spec allows for the order the log shows, no entry is installed where the vma was (pagemap, also
after another vma is mapped at the same address), the data written stays in the backing store.
The trace log of such runs is checked against the spec in tests/refinement/test_munmap_race.py.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devdax.impl import sys as dsys
from devdax.impl import tracelog
from devdax.impl.bus import DaxBus
from devdax.impl.core import MappingCore
from devdax.impl.event import Event
from devdax.impl.table import MAX_WORKERS
from devdax.impl.vma import UserMapping, present_units
from devdax.impl.vmcore import claim
from devdax.spec.abi import MAP, PROT

pytestmark = pytest.mark.timeout(120)

K4 = 4096
M2 = 2 << 20
RW = PROT["PROT_READ"] | PROT["PROT_WRITE"]
SH = MAP["MAP_SHARED"]
BOUND = 20.0  # seconds a thread may take before the test calls it a hang


class Gates:
    """The handler workers' trace gates, opened by the test: with ``sched`` set every worker waits
    before each traced point of a fault (read_lock, check, insert/poison, read_unlock) until its
    gate is opened once. Main-process threads have no gate here and run freely."""

    def __init__(self, bus: DaxBus) -> None:
        table = bus.core.table
        self.tr = table.trace
        self.tr.enable()
        table.srcu.tracer = self.tr

    def __enter__(self) -> Gates:
        self.tr.area.sched = 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.tr.area.sched = 0

    def waiting(self, kind: int, timeout: float = BOUND) -> int:
        """The gate of the worker that waits before ``kind``; fails the test if none does in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for g in range(tracelog.MAIN_GATE0):
                if self.tr.area.gates[g].waiting == kind:
                    return g
            time.sleep(1e-4)
        pytest.fail(f"no handler worker reached {tracelog.KIND_NAMES[kind]} in {timeout} s")

    def open(self, g: int) -> None:
        gate = self.tr.area.gates[g]
        passes = int(gate.passes)
        gate.go = 1
        deadline = time.monotonic() + BOUND
        while gate.passes == passes:
            assert time.monotonic() < deadline, f"gate {g} did not pass"
            time.sleep(1e-4)

    def hold_before(self, kind: int) -> int:
        """Let the stalled fault through its points up to ``kind``; returns the gate it waits at."""
        order = [tracelog.LOCK, tracelog.CHECK, tracelog.INSERT, tracelog.UNLOCK]
        g = self.waiting(tracelog.LOCK)
        for k in order[1 : order.index(kind) + 1]:
            self.open(g)
            g = self.waiting(k)
        return g

    def release(self, threads: list[threading.Thread]) -> None:
        """Open every gate until ``threads`` have finished; fail the test on a hang."""
        deadline = time.monotonic() + BOUND
        while any(t.is_alive() for t in threads):
            if time.monotonic() > deadline:
                pytest.fail("a thread did not finish: hang")
            for g in range(tracelog.MAIN_GATE0):
                if self.tr.area.gates[g].waiting:
                    self.tr.area.gates[g].go = 1
            time.sleep(1e-4)
        self.tr.area.sched = 0

    def records(self) -> list[tracelog.TraceRec]:
        return self.tr.records(max(0, self.tr.now() - tracelog.RING + 1), self.tr.now())


def spawn(fn: Callable[[], Any], out: dict[str, Any], key: str) -> threading.Thread:
    def body() -> None:
        try:
            out[key] = fn()
        except BaseException as e:  # reported by the test, not lost in the thread
            out[key + "_error"] = e

    t = threading.Thread(target=body)
    t.start()
    return t


def joined(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(BOUND)
        assert not t.is_alive(), "hang: a thread did not finish"


class Toucher:
    """A thread that touches one byte through process_vm_readv/writev (the GIL is released while
    it waits in the fault), remembering its native thread id (the trace records' ptid)."""

    def __init__(self, addr: int, value: int | None) -> None:
        self.addr, self.value = addr, value
        self.tid = 0
        self.outcome = ""
        self.data = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.tid = threading.get_native_id()
            if self.value is None:
                t = MappingCore.touch_read(self.addr, 1)
            else:
                t = MappingCore.touch_write(self.addr, bytes([self.value]))
            self.outcome, self.data = t.outcome, t.data
        except BaseException as e:
            self.error = e


@pytest.fixture
def bus() -> Iterator[DaxBus]:
    b = DaxBus(workers=2, events=[])
    try:
        yield b
    finally:
        b.core.table.trace.area.sched = 0
        b.close()


def setup(bus: DaxBus, units: int = 2, align: int = M2) -> tuple[UserMapping, int]:
    """A device whose backing holds 0x5a in the first 128 bytes of every unit; a shared mapping."""
    r = bus.create_region(8 * align, align)
    fd = r.backing.backing.fd
    for u in range(8):  # a 2M backing may be hugetlbfs, which has no write(2)
        bus.core.write_backing(r.backing.backing, u * align, b"\x5a" * 0x80)
    f = bus.open(r.devices[0])
    return f.mmap(units * align, RW, SH), fd


def seq_of(events: list[Event], kind: str) -> int:
    seqs = [e.seq for e in events if e.kind == kind]
    assert seqs, f"no {kind} event logged"
    return seqs[-1]


def fault_points(g: Gates, tid: int) -> dict[str, int]:
    """The logged points of the toucher's fault: kind name -> sequence number."""
    return {tracelog.KIND_NAMES[int(r.kind)]: int(r.seq) for r in g.records() if int(r.ptid) == tid}


STAGES = {"check": tracelog.CHECK, "insert": tracelog.INSERT, "unlock": tracelog.UNLOCK}


def completed_then_unmapped(t: Toucher, g: Gates, events: list[Event]) -> bool:
    """The toucher got SIGSEGV although its fault completed before the unmap: the fault inserted
    its entry and dropped the read side, the unmap ran, and only then did the toucher retry its
    access, which found no vma. The kernel allows that order too (mmap_lock is dropped when
    handle_mm_fault returns, before the access is retried); there the window is a few
    instructions, here the toucher's wake-up (the handler clears its read side right after the
    UFFDIO_CONTINUE that wakes it), which a loaded machine makes wide enough to see."""
    if t.outcome != "SIGSEGV":
        return False
    pts = fault_points(g, t.tid)
    return pts["insert"] < pts["read_unlock"] < seq_of(events, "munmap")


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_munmap_waits_for_a_fault_in_flight(bus: DaxBus, stage: str, write: bool) -> None:
    """The fault has looked its vma up (it holds the read side) and waits before ``stage``: the
    munmap waits for it, so the fault completes (the toucher gets its data or stores its byte, or,
    retrying its access only after the munmap, SIGSEGV: completed_then_unmapped), its read_unlock
    is logged before the munmap, and the munmap then leaves no entry -- not even in a vma mapped
    at the same address afterwards."""
    v, fd = setup(bus)
    addr = v.addr
    other = bus.open(bus.create_region(8 * M2, K4).devices[0])
    events = bus.events
    assert events is not None
    with Gates(bus) as g:
        t = Toucher(addr + 0x40, 0x77 if write else None)
        gate = g.hold_before(STAGES[stage])
        out: dict[str, Any] = {}
        m = spawn(v.munmap, out, "munmap")
        # the munmap cannot finish while the fault holds the read side; once the gate opens
        # both must finish
        m.join(0.3)
        assert m.is_alive(), "munmap returned while a fault on its vma was in flight"
        assert not any(e.kind == "munmap" for e in events)
        assert MappingCore._perms(addr) is not None, "the vma went away under the fault"
        g.open(gate)
        g.release([t.thread, m])
    joined(t.thread, m)
    assert t.error is None and "munmap_error" not in out, (t.error, out)
    ok = t.outcome == "ok"
    assert ok or completed_then_unmapped(t, g, events), "a fault that began before the munmap completes"
    if ok and not write:
        assert t.data == b"\x5a"
    pts = fault_points(g, t.tid)
    assert pts["insert"] < pts["read_unlock"] < seq_of(events, "munmap"), pts
    assert present_units(addr, addr + 2 * M2, K4) == []
    assert MappingCore._perms(addr) is None  # the vma is gone: SIGSEGV
    assert v.touch(0x40) == "SIGSEGV"
    # another vma at the same address starts empty: nothing of the old fault lands in it
    w = other.mmap(2 * M2, RW, SH | MAP["MAP_FIXED"], 0, addr)
    assert w.addr == addr and present_units(addr, addr + 2 * M2, K4) == []
    # the data stays in the backing; a store whose retry found no vma never happened
    assert os.pread(fd, 1, 0x40) == (b"\x77" if write and ok else b"\x5a")
    assert os.pread(fd, 1, 0) == b"\x5a"
    assert bus.core.counters()["errors"] == 0


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
def test_munmap_before_the_fault_looks_up_its_vma(bus: DaxBus, write: bool) -> None:
    """The toucher has faulted but the handler has not looked the vma up yet: the munmap does not
    wait (the fault is not in flight in the kernel's sense, it has not found its vma), and the fault
    then finds no vma: the driver is never called (nothing is logged for it), the toucher gets
    SIGSEGV, nothing is installed, the backing is unchanged."""
    v, fd = setup(bus)
    addr = v.addr
    before = bus.core.counters()
    with Gates(bus) as g:
        t = Toucher(addr + 0x40, 0x77 if write else None)
        gate = g.waiting(tracelog.LOCK)
        out: dict[str, Any] = {}
        m = spawn(v.munmap, out, "munmap")
        joined(m)  # while the worker is still held at its gate
        assert g.tr.area.gates[gate].waiting == tracelog.LOCK
        assert MappingCore._perms(addr) is None
        g.release([t.thread])
    joined(t.thread)
    assert t.error is None and "munmap_error" not in out
    assert t.outcome == "SIGSEGV"
    assert fault_points(g, t.tid) == {}, "a fault without a vma reached the driver"
    after = bus.core.counters()
    assert after["enoent"] == before["enoent"] + 1
    assert sum(after[k] - before[k] for k in ("install_pte", "install_pmd", "install_pud", "sigbus")) == 0
    assert present_units(addr, addr + 2 * M2, K4) == []
    assert os.pread(fd, 1, 0x40) == b"\x5a" and os.pread(fd, 1, 0) == b"\x5a"


def test_last_reference_goes_after_the_fault(bus: DaxBus) -> None:
    """close(fd) first: the vma holds the file's last reference, so the munmap is also __fput. The
    file (and the cdev reference it holds) is released only after the fault in flight finished
    (which the toucher sees as its data, or as SIGSEGV when it retried its access only after the
    munmap: completed_then_unmapped)."""
    v, _ = setup(bus)
    addr = v.addr
    f = v.file
    f.close()
    events = bus.events
    assert events is not None
    with Gates(bus) as g:
        t = Toucher(v.addr, None)
        gate = g.hold_before(tracelog.INSERT)
        out: dict[str, Any] = {}
        m = spawn(v.munmap, out, "munmap")
        m.join(0.3)
        assert m.is_alive() and f.f_count.count == 1, "the file's last reference went under a fault"
        g.open(gate)
        g.release([t.thread, m])
    joined(t.thread, m)
    assert t.outcome == "ok" or completed_then_unmapped(t, g, events), (
        "a fault that began before the munmap completes"
    )
    assert t.outcome != "ok" or t.data == b"\x5a"
    released = [e.seq for e in events if e.kind == "release" and e.obj == f.name]
    assert len(released) == 1 and fault_points(g, t.tid)["read_unlock"] < released[0]
    assert f.f_count.released and not v.areas
    assert present_units(addr, addr + 2 * M2, K4) == []


@pytest.mark.parametrize("how", ["move", "shrink"])
def test_mremap_waits_for_a_fault_in_flight(bus: DaxBus, how: str) -> None:
    """mremap is the same writer: a move maps the vma anew and unmaps the old one, a shrink unmaps
    the tail. The fault in flight on the part that goes away completes first; afterwards that part
    has no entry, and (move) the data is reachable at the new address."""
    v, _ = setup(bus)
    old = v.addr
    blocker = old + 2 * M2
    held = claim(blocker, M2)  # no room to grow in place: mremap must move
    try:
        target = old if how == "move" else old + M2
        with Gates(bus) as g:
            t = Toucher(target, None)
            gate = g.hold_before(tracelog.INSERT)
            out: dict[str, Any] = {}
            if how == "move":
                m = spawn(lambda: v.mremap(0, 2 * M2, 3 * M2, may_move=True), out, "mremap")
            else:
                m = spawn(lambda: v.mremap(0, 2 * M2, M2), out, "mremap")
            m.join(0.3)
            assert m.is_alive(), "mremap unmapped a range under a fault in flight"
            g.open(gate)
            g.release([t.thread, m])
        joined(t.thread, m)
        assert t.error is None and "mremap_error" not in out, (t.error, out)
        events = bus.events
        assert events is not None
        assert (t.outcome == "ok" and t.data == b"\x5a") or completed_then_unmapped(t, g, events)
        if how == "move":
            assert out["mremap"] != old and v.base == out["mremap"]
            assert present_units(old, old + 2 * M2, K4) == [] and MappingCore._perms(old) is None
            assert v.check(0, 0x5A) == "ok" and v.check(M2, 0x5A) == "ok"
        else:
            assert present_units(old + M2, old + 2 * M2, K4) == []
            assert v.touch(M2) == "SIGSEGV" and v.check(0, 0x5A) == "ok"
    finally:
        if held:
            dsys.munmap(blocker, M2)


def test_without_the_wait_a_late_install_lands_in_the_next_vma(
    bus: DaxBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure the wait exists for, shown on impl with it taken out (munmap as it was before:
    no wait): the fault decided for the old 2M vma installs its whole unit into the 4K device's vma
    mapped at the same address, where nothing faulted -- the pagemap check above catches it."""
    monkeypatch.setattr(MappingCore, "_mm_write", lambda self, lo, hi, op: op())
    v, _ = setup(bus)
    addr = v.addr
    other = bus.open(bus.create_region(8 * M2, K4).devices[0])
    with Gates(bus) as g:
        t = Toucher(addr, None)
        gate = g.hold_before(tracelog.INSERT)
        v.munmap()  # returns at once
        w = other.mmap(2 * M2, RW, SH | MAP["MAP_FIXED"], 0, addr)
        assert w.addr == addr and present_units(addr, addr + 2 * M2, K4) == []
        g.open(gate)
        g.release([t.thread])
    joined(t.thread)
    assert len(present_units(addr, addr + 2 * M2, K4)) == M2 // K4, "the stale install did not land"


# ------------------------------------------------------------------ untraced: the writer's waits --


class PlantAtMunmap(list[Event]):
    """An event log that, when the munmap event is appended (at the munmap's point, after the
    syscall), takes the read side in the given slot: a fault that looked the vma up just before."""

    def __init__(self) -> None:
        super().__init__()
        self.plant: Callable[[], None] | None = None

    def append(self, ev: Event) -> None:
        super().append(ev)
        if ev.kind == "munmap" and self.plant is not None:
            self.plant()


def test_writer_waits_before_and_after_its_point_untraced() -> None:
    """Without tracing nothing is held under a lock; the writer's two waits are shown on a planted
    read side (a worker slot no worker of this handler uses): the munmap does not happen while a
    fault on the range holds it (the vma stays), and after the munmap the writer still waits for
    one that took it in between (the vma is gone, the call has not returned)."""
    log = PlantAtMunmap()
    with DaxBus(workers=1, events=log) as bus:
        v, _ = setup(bus)
        addr = v.addr
        slot = bus.core.table.t.workers[MAX_WORKERS - 1]
        slot.mm_addr = (addr + M2) | 1
        out: dict[str, Any] = {}
        m = spawn(v.munmap, out, "munmap")
        m.join(0.3)
        assert m.is_alive() and MappingCore._perms(addr) is not None
        slot.mm_addr = 0
        joined(m)
        assert MappingCore._perms(addr) is None and "munmap_error" not in out

        v2, _ = setup(bus)
        log.plant = lambda: setattr(slot, "mm_addr", v2.addr | 1)
        m = spawn(v2.munmap, out, "munmap2")
        m.join(0.3)
        assert m.is_alive() and log[-1].kind == "munmap" and MappingCore._perms(v2.addr) is None
        slot.mm_addr = 0
        joined(m)
        assert "munmap2_error" not in out and not v2.areas


def test_writer_wait_is_bounded() -> None:
    """A read side that is never dropped (a wedged handler) turns the munmap into ETIMEDOUT with
    nothing changed, not a hang; once it is dropped the munmap works."""
    with DaxBus(workers=1, timeout=0.5) as bus:
        v, _ = setup(bus)
        slot = bus.core.table.t.workers[MAX_WORKERS - 1]
        slot.mm_addr = v.addr | 1
        with pytest.raises(OSError) as e:
            v.munmap()
        assert e.value.errno == errno.ETIMEDOUT
        assert v.areas and v.check(0, 0x5A) == "ok"
        slot.mm_addr = 0
        v.munmap()
        assert v.touch(0) == "SIGSEGV"


def test_gil_holding_faults_vs_munmap_cycles() -> None:
    """A thread faulting through a memoryview (GIL held in each fault) while another thread maps,
    touches and unmaps another vma over and over: the writer's waits never need the faulting
    thread, so nothing deadlocks and every byte read is the byte written."""
    size = 4 << 20
    with DaxBus(workers=2) as bus:
        r = bus.create_region(2 * size, K4, [size, size])
        d0, d1 = r.devices
        f0, f1 = bus.open(d0), bus.open(d1)
        v0 = f0.mmap(size, RW, SH)
        fd = r.backing.backing.fd
        pattern = bytes(i % 251 for i in range(size // K4))
        for i, b in enumerate(pattern):
            os.pwrite(fd, bytes([b]), i * K4)
        view = v0.view()
        got: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                got.extend(view[i * K4] for i in range(size // K4))
            except BaseException as e:  # pragma: no cover
                errors.append(e)

        outcomes: list[str] = []

        def mapper() -> None:
            try:
                for k in range(20):
                    w = f1.mmap(2 * K4, RW, SH, k * K4)
                    outcomes.append(w.touch(0, True, k))
                    w.munmap()
                    outcomes.append(w.touch(0))
            except BaseException as e:  # pragma: no cover
                errors.append(e)

        ts = [threading.Thread(target=reader), threading.Thread(target=mapper)]
        for t in ts:
            t.start()
        joined(*ts)
        assert errors == []
        assert bytes(got) == pattern
        assert outcomes == ["ok", "SIGSEGV"] * 20
        view.release()
        v0.munmap()
