"""The shared-memory SRCU: grace periods wait for old readers only, across processes.

Why these tests: the teardown argument (docs/semantics.md#teardown) needs exactly "synchronize
returns only after every section that began before it ended" and nothing stronger; a lock that also
waited for new readers could starve teardown, one that waited for less would let a fault install an
entry after the zap.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from devdax.impl import srcu
from devdax.impl import sys as dsys

pytestmark = pytest.mark.timeout(30)

NSLOTS = 4


@pytest.fixture
def shm() -> Iterator[tuple[int, int]]:
    """A memfd-backed shared area: (fd, addr) big enough for the srcu header, slots and test flags."""
    fd = dsys.memfd_create("srcu-test")
    size = 1 << 16
    dsys.ftruncate(fd, size)
    addr = dsys.mmap(0, size, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED, fd, 0)
    srcu.register_reader_process()
    try:
        yield fd, addr
    finally:
        dsys.munmap(addr, size)
        os.close(fd)


def _flags(addr: int) -> ctypes.Array[ctypes.c_uint64]:
    """Test words after the srcu area: [0]=alive, [1]=stop, [8+i]=reader i saw alive, not yet inserted."""
    return (ctypes.c_uint64 * 64).from_address(addr + 4096)


def test_reader_in_section_blocks_synchronize(shm: tuple[int, int]) -> None:
    _, addr = shm
    d = srcu.Srcu(addr, NSLOTS, init=True)
    d.synchronize(timeout=1)  # no readers: completes
    d.read_lock(0)
    d.read_lock(0)  # nested
    with pytest.raises(TimeoutError):
        d.synchronize(timeout=0.2)
    d.read_unlock(0)
    with pytest.raises(TimeoutError):
        d.synchronize(timeout=0.1)  # still nested once
    d.read_unlock(0)
    d.synchronize(timeout=1)
    with pytest.raises(RuntimeError):
        d.read_unlock(0)


def test_reader_entering_after_grace_period_start_does_not_delay_it(shm: tuple[int, int]) -> None:
    _, addr = shm
    d = srcu.Srcu(addr, NSLOTS, init=True)
    gp0 = srcu.SrcuShared.from_address(addr).gp_ctr
    d.read_lock(0)  # an old reader
    done = threading.Event()

    def writer() -> None:
        d.synchronize(timeout=5)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 5
    while srcu.SrcuShared.from_address(addr).gp_ctr == gp0:  # wait for the phase flip
        assert time.monotonic() < deadline
        time.sleep(0.001)
    d.read_lock(1)  # a new reader, enters after the flip and never leaves (yet)
    assert not done.wait(0.1)  # still waiting for reader 0
    d.read_unlock(0)
    assert done.wait(5), "grace period waited for a reader that started after it"
    t.join()
    d.read_unlock(1)


def test_synchronize_orders_alive_flag_deterministic(shm: tuple[int, int]) -> None:
    """The teeth: a reader that saw alive and has not inserted yet is visible without synchronize."""
    _, addr = shm
    d = srcu.Srcu(addr, NSLOTS, init=True)
    f = _flags(addr)
    f[0] = 1
    saw = threading.Event()
    go = threading.Event()

    def reader() -> None:
        d.read_lock(2)
        if f[0]:
            f[8] = 1  # saw alive, entry not yet installed
            saw.set()
            go.wait(5)
            f[8] = 0  # "insert"
        d.read_unlock(2)

    t = threading.Thread(target=reader)
    t.start()
    assert saw.wait(5)
    f[0] = 0
    assert f[8] == 1  # without a grace period the zap would race this reader
    threading.Timer(0.1, go.set).start()
    d.synchronize(timeout=5)
    assert f[8] == 0  # after it, the reader has finished
    t.join()


READER = textwrap.dedent(
    """
    import ctypes, os, random, sys
    from devdax.impl import srcu, sys as dsys
    fd, slot0, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    addr = dsys.mmap(0, 1 << 16, 3, dsys.MAP_SHARED, fd, 0)
    srcu.register_reader_process()
    d = srcu.Srcu(addr, n)
    f = (ctypes.c_uint64 * 64).from_address(addr + 4096)
    import threading
    def run(slot):
        while not f[1]:
            d.read_lock(slot)
            if f[0]:
                f[8 + slot] = 1
                for _ in range(random.randrange(50)):
                    pass
                f[8 + slot] = 0
                f[16 + slot] += 1
            d.read_unlock(slot)
    ts = [threading.Thread(target=run, args=(s,)) for s in range(slot0, n)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    """
)


def test_property_no_reader_that_saw_alive_survives_synchronize(shm: tuple[int, int]) -> None:
    """Readers in another process and in this one; after each synchronize, none is mid-section with alive."""
    fd, addr = shm
    d = srcu.Srcu(addr, NSLOTS, init=True)
    f = _flags(addr)
    f[0] = 1
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    proc = subprocess.Popen([sys.executable, "-c", READER, str(fd), "2", str(NSLOTS)], pass_fds=(fd,))
    local_stop = threading.Event()

    def local(slot: int) -> None:
        while not local_stop.is_set():
            d.read_lock(slot)
            if f[0]:
                f[8 + slot] = 1
                f[8 + slot] = 0
                f[16 + slot] += 1
            d.read_unlock(slot)

    ts = [threading.Thread(target=local, args=(s,)) for s in (0, 1)]
    for t in ts:
        t.start()
    try:
        deadline = time.monotonic() + 10
        while f[18] == 0 or f[19] == 0:  # the subprocess readers are running
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        for _ in range(60):
            f[0] = 0
            d.synchronize(timeout=5)
            pending = [f[8 + s] for s in range(NSLOTS)]
            assert pending == [0] * NSLOTS, f"reader still before its insert after synchronize: {pending}"
            f[0] = 1
            time.sleep(0.002)
    finally:
        sys.setswitchinterval(old)
        local_stop.set()
        f[1] = 1
        for t in ts:
            t.join()
        proc.wait(10)
    assert d.grace_periods == 60
    assert proc.returncode == 0
