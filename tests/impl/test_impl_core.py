"""MappingCore with real faults: every claim of impl/README.md is exercised here on the running kernel.

Why each test exists is in its docstring; all of them also check, through the ``core`` fixture, that
closing the core returns every fd, mapping, thread and the handler process.
"""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from devdax.impl import sys as dsys
from devdax.impl.core import Mapping, MappingCore, Piece

pytestmark = pytest.mark.timeout(60)

K4, M2, G1 = 4096, 2 << 20, 1 << 30
M = 1 << 20


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _our_maps() -> list[str]:
    """Mappings of our own objects (memfds, the empty memfd, files under our temp dirs)."""
    with open("/proc/self/maps") as f:
        return [ln for ln in f if "devdax" in ln]


def _tasks() -> int:
    """Python threads of this process (every thread the core starts is one). /proc/self/task is not
    used: Thread.join() returns before the OS thread has left it, which made counts flaky under load."""
    return threading.active_count()


@pytest.fixture
def core() -> Iterator[MappingCore]:
    fds, maps, tasks = _fds(), _our_maps(), _tasks()
    c = MappingCore(workers=2, timeout=10)
    pid = c.handler_pid
    try:
        yield c
    finally:
        c.close()
    assert _fds() == fds, "leaked fds"
    assert _our_maps() == maps, "leaked mappings"
    assert _tasks() == tasks, "leaked threads"
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: the handler process is gone


@pytest.mark.parametrize("align,units", [(K4, 64), (M2, 4)])
def test_first_touch_faults_once_per_unit(core: MappingCore, align: int, units: int) -> None:
    """One handler fault per align unit on first touch, none on the second touch of any byte."""
    b = core.create_backing(units * align)
    d = core.add_device(b, [(0, units * align)], align)
    m = core.map_shared(d, units * align)
    assert m.addr % align == 0 and m.mode == "uffd"
    for u in range(units):
        assert core.touch_read(m.addr + u * align + (u % 7) * 8, 8).outcome == "ok"
    c = core.counters()
    name = {K4: "install_pte", M2: "install_pmd"}[align]
    assert c["faults"] == units and c[name] == units and c["sigbus"] == 0
    assert core.touch_read(m.addr, units * align).outcome == "ok"  # every byte, again
    assert core.counters()["faults"] == units
    assert core.device_counts(d) == (units, 0)


def test_first_touch_1g_unit(core: MappingCore) -> None:
    """A 1G-aligned device installs one PUD-sized unit: one fault for a whole GiB."""
    b = core.create_backing(G1)
    d = core.add_device(b, [(0, G1)], G1)
    before = set(_intervals())
    m = core.map_shared(d, G1)
    assert m.addr % G1 == 0
    assert _touching(m.addr, m.end, before) == [(m.addr, m.end)]  # no piece of the reservation left
    assert core.touch_write(m.addr + G1 - 8, b"12345678").outcome == "ok"
    assert core.touch_read(m.addr, 8).outcome == "ok"
    c = core.counters()
    assert (c["faults"], c["install_pud"]) == (1, 1)
    core.unmap(m)
    assert os.pread(b.fd, 8, G1 - 8) == b"12345678"


def test_4k_device_falls_back_from_pmd(core: MappingCore) -> None:
    """A 4K-aligned device in a vma that could hold a PMD: the mm tries PMD, the driver says FALLBACK."""
    b = core.create_backing(4 * M2)
    d = core.add_device(b, [(0, 4 * M2)], K4)
    m = core.map_shared(d, 4 * M2)
    first = (m.addr + M2 - 1) & ~(M2 - 1)
    blocks = [a for a in range(first, m.end, M2) if a + M2 <= m.end]
    assert blocks
    assert core.touch_read(blocks[0] + 3 * K4, 1).outcome == "ok"
    c = core.counters()
    assert c["install_pte"] == 1 and c["fallback"] >= 1 and c["install_pmd"] == 0


def test_zap_then_touch_faults_again(core: MappingCore) -> None:
    b = core.create_backing(2 * M2)
    d = core.add_device(b, [(0, 2 * M2)], M2)
    m = core.map_shared(d, 2 * M2)
    core.touch_write(m.addr + 100, b"x")
    core.touch_read(m.addr + M2, 1)
    assert core.counters()["faults"] == 2
    core.zap(m)
    assert core.touch_read(m.addr + 100, 1) == core.touch_read(m.addr + 100, 1)
    assert core.counters()["faults"] == 3  # one refault, then installed again
    assert core.touch_read(m.addr + 100, 1).data == b"x"


def test_dead_device_touch_gives_sigbus(core: MappingCore) -> None:
    """alive == false: the handler poisons the unit; EFAULT here, SIGBUS in a child doing a plain load."""
    b = core.create_backing(2 * M2)
    d = core.add_device(b, [(0, 2 * M2)], M2)
    m = core.map_shared(d, 2 * M2)
    assert core.touch_write(m.addr, b"\x2a").outcome == "ok"
    assert core.touch_in_child(m.addr + 1, write=True, value=7).value == 7  # shared with the child
    assert core.touch_read(m.addr + 1, 1).data == b"\x07"
    assert core.touch_in_child(m.addr).value == 42
    core.kill_device(d)
    assert core.touch_read(m.addr, 1).outcome == "SIGBUS"
    assert core.touch_write(m.addr + M2, b"y").outcome == "SIGBUS"
    assert core.touch_in_child(m.addr).outcome == "SIGBUS"
    c = core.counters()
    assert c["sigbus_dead"] >= 2 and c["fork_events"] == c["child_ctx_closed"] == 3
    core.revive_device(d)  # modern rebind: old vmas work again
    assert core.touch_read(m.addr, 1).data == b"\x2a"
    assert core.touch_in_child(m.addr).value == 42


def test_set_alive_false_without_installed_entries(core: MappingCore) -> None:
    b = core.create_backing(K4 * 8)
    d = core.add_device(b, [(0, K4 * 8)], K4, alive=False)
    m = core.map_shared(d, K4 * 8)
    assert core.touch_read(m.addr, 1).outcome == "SIGBUS"
    assert core.device_counts(d) == (0, 1)


def test_multi_range_device_and_oversized_mapping(core: MappingCore) -> None:
    """Ranges at non-contiguous backing offsets become separate MAP_FIXED pieces; past the end SIGBUS."""
    b = core.create_backing(8 * M2)
    d = core.add_device(b, [(6 * M2, M2), (2 * M2, 2 * M2)], M2)
    m = core.map_shared(d, 5 * M2)
    assert m.pieces == (Piece(0, M2, 6 * M2), Piece(M2, 2 * M2, 2 * M2), Piece(3 * M2, 2 * M2, None))
    assert core.touch_write(m.addr + 5, b"A").outcome == "ok"
    assert core.touch_write(m.addr + M2 + 5, b"B").outcome == "ok"
    assert core.touch_write(m.addr + 2 * M2 + 5, b"C").outcome == "ok"
    assert core.touch_read(m.addr + 3 * M2, 1).outcome == "SIGBUS"
    assert core.touch_in_child(m.addr + 4 * M2).outcome == "SIGBUS"
    assert [os.pread(b.fd, 1, off + 5) for off in (6 * M2, 2 * M2, 3 * M2)] == [b"A", b"B", b"C"]
    assert core.counters()["install_pmd"] == 3
    m2 = core.map_shared(d, M2, pgoff=M2 // K4)  # device offset 2M lands on backing 2M
    assert core.touch_read(m2.addr + 5, 1).data == b"B"


def test_misaligned_offset_is_einval_and_leaks_nothing(core: MappingCore) -> None:
    b = core.create_backing(2 * M2)
    d = core.add_device(b, [(0, 2 * M2)], M2)
    maps = _our_maps()
    with pytest.raises(OSError) as e:
        core.map_shared(d, 2 * M2, pgoff=1)  # congruent to a misaligned offset
    assert e.value.errno == errno.EINVAL
    assert _our_maps() == maps
    with pytest.raises(OSError):
        core.map_shared(d, M2 + K4)  # vm_end misaligned
    with pytest.raises(OSError):
        core.add_device(b, [(K4, M2)], M2)
    m = core.map_shared(d, M2)
    core.unmap(m)
    with pytest.raises(ValueError):
        core.unmap(m)
    with pytest.raises(ValueError):
        core.zap(m)


def test_data_in_backing_after_unmap_and_in_file_after_close() -> None:
    """memfd: data visible with pread after munmap; tmpfs file: data survives the core."""
    fds = _fds()
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="devdax-") as tmp:
        path = os.path.join(tmp, "region")
        with MappingCore(workers=1) as c:
            mb = c.create_backing(M2)
            fb = c.create_backing(2 * M2, path=path)
            dm = c.add_device(mb, [(0, M2)], M2)
            df = c.add_device(fb, [(M2, M2)], K4)
            m1, m2 = c.map_shared(dm, M2), c.map_shared(df, M2)
            assert m2.mode == "uffd"
            view = memoryview((ctypes.c_char * M2).from_address(m1.addr)).cast("B")
            view[10:15] = b"memfd"  # a plain store from this interpreter
            assert c.touch_write(m2.addr + 4096 * 3, b"file!").outcome == "ok"
            c.unmap(m1)
            assert os.pread(mb.fd, 5, 10) == b"memfd"
        with open(path, "rb") as f:
            f.seek(M2 + 4096 * 3)
            assert f.read(5) == b"file!"
        with MappingCore(workers=1) as c:  # a new "boot" of the same region
            fb = c.create_backing(2 * M2, path=path)
            df = c.add_device(fb, [(M2, M2)], K4)
            m2 = c.map_shared(df, M2)
            assert c.touch_read(m2.addr + 4096 * 3, 5).data == b"file!"
    assert _fds() == fds


def test_non_shmem_file_uses_reported_prefault_mode() -> None:
    """userfaultfd minor mode needs shmem/hugetlbfs; other files get prefault, still SIGBUS after kill."""
    with tempfile.TemporaryDirectory(prefix="devdax-") as tmp, MappingCore(workers=1) as c:
        if os.statvfs(tmp).f_fsid == os.statvfs("/dev/shm").f_fsid:
            pytest.skip("temp dir is on tmpfs")
        b = c.create_backing(M2, path=os.path.join(tmp, "region"))
        d = c.add_device(b, [(0, M2)], K4)
        m = c.map_shared(d, M2)
        assert m.mode == "prefault"
        assert c.touch_write(m.addr + 1, b"p").outcome == "ok"
        assert c.counters()["faults"] == 0
        c.kill_device(d)
        assert c.touch_read(m.addr + 1, 1).outcome == "SIGBUS"
        c.revive_device(d)
        assert c.touch_read(m.addr + 1, 1).data == b"p"
        c.set_alive(d, False)
        m2 = c.map_shared(d, M2)  # mapped while dead: not readable either
        assert m2.mode == "prefault" and c.touch_read(m2.addr + 1, 1).outcome == "SIGBUS"


def test_memoryview_touchers_and_teardown_never_deadlock(core: MappingCore) -> None:
    """The GIL hazard: memoryview touches fault while holding the GIL; teardown runs in a third thread.

    Touchers use device A (zapped over and over, so they keep faulting under the GIL); the teardown
    thread kills and revives device B (touched through process_vm_readv) and zaps A. Everyone must
    finish within the timeout; a hang fails the test instead of hanging CI.
    """
    ba, bb = core.create_backing(8 * M2), core.create_backing(2 * M2)
    da, db = core.add_device(ba, [(0, 8 * M2)], M2), core.add_device(bb, [(0, 2 * M2)], K4)
    ma, mb = core.map_shared(da, 8 * M2), core.map_shared(db, 2 * M2)
    stop = threading.Event()
    errors: list[BaseException] = []
    touched = [0, 0]

    def toucher(k: int) -> None:
        try:
            view = memoryview((ctypes.c_char * ma.length).from_address(ma.addr)).cast("B")
            rnd = random.Random(k)
            while not stop.is_set():
                off = rnd.randrange(ma.length)
                view[off] = (view[off] + 1) & 0xFF
                touched[k] += 1
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    def teardown() -> None:
        try:
            while not stop.is_set():
                core.zap(ma)
                core.kill_device(db, timeout=5)
                assert core.touch_read(mb.addr, 1).outcome == "SIGBUS"
                core.revive_device(db)
                assert core.touch_read(mb.addr, 1).outcome == "ok"
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=toucher, args=(k,), daemon=True) for k in (0, 1)]
    ts.append(threading.Thread(target=teardown, daemon=True))
    # A toucher stuck in a fault holds the GIL, so no Python-level timeout (pytest-timeout, join)
    # could ever run: faulthandler's C watchdog thread needs no GIL and ends the process instead.
    faulthandler.dump_traceback_later(30, exit=True)
    try:
        for t in ts:
            t.start()
        time.sleep(1.5)
        stop.set()
        for t in ts:
            t.join(10)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert not any(t.is_alive() for t in ts), "deadlock: a thread did not finish"
    assert not errors, errors
    assert min(touched) > 0 and core.counters()["install_pmd"] > 8
    assert core.table.srcu.grace_periods > 0


GIL_CHILD = textwrap.dedent(
    """
    import ctypes, random, sys, threading, time, faulthandler
    faulthandler.disable()
    from devdax.impl.core import MappingCore
    M2 = 2 << 20
    c = MappingCore(workers=2)
    b = c.create_backing(4 * M2)
    d = c.add_device(b, [(0, 4 * M2)], M2)
    m = c.map_shared(d, 4 * M2)
    view = memoryview((ctypes.c_char * m.length).from_address(m.addr)).cast("B")
    def toucher(k):
        rnd = random.Random(k)
        while True:
            view[rnd.randrange(m.length)] += 0
    for k in (0, 1):
        threading.Thread(target=toucher, args=(k,), daemon=True).start()
    time.sleep(0.2)
    c.kill_device(d, timeout=5)     # a toucher's next fault must now SIGBUS this whole process
    time.sleep(2)
    print("survived", flush=True)
    """
)


def test_touching_a_dying_device_from_python_ends_in_sigbus_not_a_hang() -> None:
    """Same hazard on the device being torn down: the process dies by SIGBUS, it does not hang."""
    p = subprocess.run([sys.executable, "-c", GIL_CHILD], capture_output=True, timeout=30)
    assert p.returncode == -7, (p.returncode, p.stdout, p.stderr[-2000:])


def test_misuse_after_close(core: MappingCore) -> None:
    b = core.create_backing(K4)
    d = core.add_device(b, [(0, K4)], K4)
    with pytest.raises(OSError):
        core.remove_device(d) if core.map_shared(d, K4) else None
    with pytest.raises(OSError):
        core.close_backing(b)
    with pytest.raises(OSError):
        core.add_device(b, [(0, K4)], 12345)
    with pytest.raises(OSError):
        core.create_backing(100)
    core.close()
    core.close()
    with pytest.raises(ValueError):
        core.map_shared(d, K4)
    with pytest.raises(ValueError):
        core.create_backing(K4)


def test_hole_mapping_direct_sigbus_facts() -> None:
    """The empty-memfd trick the core uses for holes: any access past EOF is SIGBUS/EFAULT."""
    fd = dsys.memfd_create("devdax-probe-hole")
    try:
        a = dsys.mmap(0, K4, dsys.PROT_READ, dsys.MAP_SHARED, fd, 0)
        assert MappingCore.touch_read(a, 1).outcome == "SIGBUS"
        dsys.munmap(a, K4)
    finally:
        os.close(fd)


def test_policy_is_pluggable_and_runs_in_the_handler() -> None:
    with MappingCore(workers=1, policy="devdax.impl.handler:sigbus_policy", event_fork=False) as c:
        b = c.create_backing(M2)
        d = c.add_device(b, [(0, M2)], K4)
        m = c.map_shared(d, M2)
        assert c.touch_read(m.addr, 1).outcome == "SIGBUS"
        assert c.counters()["sigbus_fault"] == 1
        with pytest.raises(ValueError):
            c.touch_in_child(m.addr)


def _stopped(pid: int, tid: str) -> bool:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "tT"
    except FileNotFoundError:
        return True


def test_handler_death_fails_safe(core: MappingCore) -> None:
    """If the handler dies, a toucher blocked in a fault is released with SIGBUS/EFAULT, never left
    hanging, later touches SIGBUS, kill_device still completes, and close() leaks nothing."""
    b = core.create_backing(2 * M2)
    d = core.add_device(b, [(0, 2 * M2)], M2)
    m = core.map_shared(d, 2 * M2)
    assert core.touch_read(m.addr, 1).outcome == "ok"
    pid = core.handler_pid
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(core.touch_read(m.addr + M2, 1).outcome))
    try:
        os.kill(pid, signal.SIGSTOP)  # faults now queue up unanswered
        deadline = time.monotonic() + 10
        while not all(_stopped(pid, tid) for tid in os.listdir(f"/proc/{pid}/task")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t.start()
        time.sleep(0.2)
        assert not result  # blocked in the fault
    finally:
        os.kill(pid, signal.SIGKILL)
    t.join(10)
    assert result == ["SIGBUS"]
    assert core.broken
    assert core.touch_read(m.addr, 1).outcome == "SIGBUS"  # installed entries went with the revoke
    core.kill_device(d, timeout=5)
    with pytest.raises(OSError):
        core.map_shared(d, M2)


def _touching(lo: int, hi: int, before: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """New mappings that overlap or adjoin [lo, hi). What is left of a len+align reservation around
    a vma adjoins it (the reservation is one range); a mapping another thread of the test process
    makes meanwhile (a stack, an arena) may land anywhere else near it and is not ours to judge."""
    return [iv for iv in _intervals() if iv[0] <= hi and iv[1] >= lo and iv not in before]


def _intervals() -> list[tuple[int, int]]:
    out = []
    with open("/proc/self/maps") as f:
        for ln in f:
            lo, hi = ln.split()[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


@pytest.mark.parametrize("align", [K4, M2])
def test_reservation_slack_is_released(core: MappingCore, align: int) -> None:
    """get_unmapped_area emulation reserves len+align PROT_NONE: nothing of it may outlive the vma."""
    b = core.create_backing(align)
    d = core.add_device(b, [(0, align)], align)
    before = set(_intervals())
    m = core.map_shared(d, align)
    assert _touching(m.addr, m.end, before) == [(m.addr, m.end)]  # exactly the vma, no slack pieces
    core.unmap(m)
    assert _touching(m.addr, m.end, before) == []


def test_grace_period_covers_a_fault_between_alive_check_and_insert() -> None:
    """docs/semantics.md#teardown on real faults: a fault that saw alive == true before kill must
    finish before the zap. With the grace period the entry it installs is zapped (SIGBUS after kill);
    the mutant "clear alive -> unmap, no sync" leaves that entry behind (memory readable after kill).
    """
    with MappingCore(workers=2, policy="devdax.impl.handler:slow_policy") as c:
        c.table.t.hdr.policy_arg = 300_000  # 300 ms between alive check and insert
        b = c.create_backing(2 * M2)
        good, mutant = c.add_device(b, [(0, M2)], M2), c.add_device(b, [(M2, M2)], M2)
        mg, mm = c.map_shared(good, M2), c.map_shared(mutant, M2)

        def in_flight_fault(m: Mapping) -> threading.Thread:
            t = threading.Thread(target=c.touch_read, args=(m.addr, 1))
            t.start()
            time.sleep(0.1)  # the handler has seen alive == 1
            return t

        t = in_flight_fault(mg)
        t0 = time.monotonic()
        c.kill_device(good)  # alive = 0; synchronize; zap
        assert time.monotonic() - t0 >= 0.15  # it waited for the in-flight fault
        t.join(5)
        assert c.touch_read(mg.addr, 1).outcome == "SIGBUS"

        t = in_flight_fault(mm)
        c.set_alive(mutant, False)  # the mutant: no grace period
        c.zap(mm)
        t.join(5)
        assert c.touch_read(mm.addr, 1).outcome == "ok"  # a stale entry survived the teardown


def test_partial_munmap_splits_at_align_boundaries(core: MappingCore) -> None:
    """munmap of the middle unit: both sides keep faulting through the handler with the right pgoff;
    a cut not on an align boundary is EINVAL (.may_split)."""
    b = core.create_backing(4 * M2)
    d = core.add_device(b, [(0, 4 * M2)], M2)
    m = core.map_shared(d, 4 * M2)
    for u in range(4):
        assert core.touch_write(m.addr + u * M2, bytes([u + 1])).outcome == "ok"
    with pytest.raises(OSError) as e:
        core.munmap_range(m, K4, M2)
    assert e.value.errno == errno.EINVAL
    left, right = core.munmap_range(m, M2, M2)
    assert (left.addr, left.length, right.addr, right.length) == (m.addr, M2, m.addr + 2 * M2, 2 * M2)
    assert right.pgoff == 2 * M2 // K4
    core.zap(left)
    core.zap(right)
    before = core.counters()["faults"]
    assert core.touch_read(left.addr, 1).data == b"\x01"
    assert core.touch_read(right.addr + M2, 1).data == b"\x04"
    assert core.counters()["faults"] == before + 2
    assert core.touch_read(m.addr + M2, 1).outcome == "SIGSEGV"  # the hole: no vma
    with pytest.raises(ValueError):
        core.zap(m)
    (tail,) = core.munmap_range(right, 0, M2)
    assert core.touch_read(tail.addr, 1).data == b"\x04"
    core.kill_device(d)
    assert core.touch_read(tail.addr, 1).outcome == "SIGBUS"
    assert core.munmap_range(tail, 0, M2) == ()


def test_touch_tells_sigsegv_from_sigbus(core: MappingCore) -> None:
    """EFAULT from process_vm_rw is SIGSEGV where there is no vma or the protection forbids it."""
    b = core.create_backing(K4 * 2)
    d = core.add_device(b, [(0, K4 * 2)], K4)
    m = core.map_shared(d, K4 * 2, prot=dsys.PROT_READ)
    assert core.touch_read(m.addr, 1).outcome == "ok"
    assert core.touch_write(m.addr, b"x").outcome == "SIGSEGV"
    assert core.touch_in_child(m.addr, write=True, value=1).outcome == "SIGSEGV"
    core.kill_device(d)
    assert core.touch_read(m.addr, 1).outcome == "SIGBUS"
    assert core.touch_in_child(m.addr).outcome == "SIGBUS"


def test_single_worker_forks_while_faulting() -> None:
    """One handler worker, faults racing forks: forks complete promptly (a CONTINUE that says EAGAIN
    because a fork event is pending reads that event itself), and the contexts of exited children are
    closed even while the handler never goes idle."""
    with MappingCore(workers=1) as c:
        b = c.create_backing(8 * M2)
        d = c.add_device(b, [(0, 8 * M2)], K4)
        m = c.map_shared(d, 8 * M2)
        stop = threading.Event()

        def faulter() -> None:
            while not stop.is_set():
                c.zap(m)
                for off in range(0, m.length, 64 * K4):
                    c.touch_read(m.addr + off, 1)

        t = threading.Thread(target=faulter)
        t.start()
        try:
            for _ in range(10):
                t0 = time.monotonic()
                assert c.touch_in_child(m.addr + K4).outcome == "ok"
                assert time.monotonic() - t0 < 0.9
            for _ in range(15):  # raw forks: nobody asks for REAP
                pid = os.fork()
                if pid == 0:  # pragma: no cover - child
                    os._exit(0)
                os.waitpid(pid, 0)
            deadline = time.monotonic() + 5  # still faulting: reaped while busy
            while c.counters()["child_ctx_closed"] < c.counters()["fork_events"]:
                assert time.monotonic() < deadline, c.counters()
                time.sleep(0.05)
        finally:
            stop.set()
            t.join(10)
        assert c.counters()["errors"] == 0


def test_a_raising_policy_gives_sigbus_not_a_hang() -> None:
    with MappingCore(workers=1, policy="devdax.impl.handler:raising_policy", event_fork=False) as c:
        b = c.create_backing(K4)
        d = c.add_device(b, [(0, K4)], K4)
        m = c.map_shared(d, K4)
        assert c.touch_read(m.addr, 1).outcome == "SIGBUS"
        assert c.counters()["errors"] == 1


def test_write_only_mapping_is_readable_as_on_x86(core: MappingCore) -> None:
    """PROT_WRITE alone: GUP (process_vm_readv) refuses to read, a CPU load does not; touch_read
    must report what the load does, going through the handler all the same."""
    b = core.create_backing(2 * K4)
    d = core.add_device(b, [(0, 2 * K4)], K4)
    os.pwrite(b.fd, b"wo", K4 - 1)
    m = core.map_shared(d, 2 * K4, prot=dsys.PROT_WRITE)
    t = core.touch_read(m.addr + K4 - 1, 2)  # straddles both pages
    assert (t.outcome, t.data) == ("ok", b"wo")
    assert core.counters()["install_pte"] == 2
    assert core.touch_in_child(m.addr + K4).value == ord("o")
    core.kill_device(d)
    assert core.touch_read(m.addr, 1).outcome == "SIGBUS"
    m2 = core.map_shared(d, K4, prot=dsys.PROT_NONE)
    assert core.touch_read(m2.addr, 1).outcome == "SIGSEGV"


def test_two_cores_in_one_process() -> None:
    """Each core has its own handler; a fork is announced to both (each adopts and later reaps its
    context), and each answers only its own mappings."""
    fds, tasks = _fds(), _tasks()
    with MappingCore(workers=1) as a, MappingCore(workers=1) as b:
        ba, bb = a.create_backing(M2), b.create_backing(M2)
        da, db = a.add_device(ba, [(0, M2)], M2), b.add_device(bb, [(0, M2)], K4)
        ma, mb = a.map_shared(da, M2), b.map_shared(db, M2)
        assert a.touch_write(ma.addr, b"A").outcome == "ok" and b.touch_write(mb.addr, b"B").outcome == "ok"
        assert a.touch_in_child(ma.addr).value == ord("A")
        assert b.touch_in_child(mb.addr).value == ord("B")
        b.kill_device(db)
        assert a.touch_in_child(ma.addr).value == ord("A")
        assert b.touch_in_child(mb.addr).outcome == "SIGBUS"
        assert (a.counters()["install_pmd"], b.counters()["install_pte"]) == (3, 2)  # children refault
        assert a.counters()["fork_events"] == b.counters()["fork_events"] == 4
    assert _fds() == fds and _tasks() == tasks
