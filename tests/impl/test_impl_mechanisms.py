"""The kernel mechanisms the mmap core is built on, proven directly on the running kernel.

Each test states one fact impl/README.md relies on, using raw ``devdax.impl.sys`` calls and no
MappingCore, so that a kernel that changes behaviour fails here with a precise name. The handler in
these tests is a thread of this process: that is safe only because every touch here goes through
process_vm_readv/writev, which ctypes calls with the GIL released (a memoryview touch would deadlock).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from devdax.impl import srcu
from devdax.impl import sys as dsys

pytestmark = pytest.mark.timeout(30)

PG = 4096
L = 4 << 20


def pvr(addr: int, n: int = 8) -> bytes | int:
    """bytes read, or the errno."""
    buf = ctypes.create_string_buffer(n)
    try:
        k = dsys.process_vm_readv(os.getpid(), ctypes.addressof(buf), addr, n)
    except OSError as e:
        return e.errno or 0
    return buf.raw[:k]


def pvw(addr: int, data: bytes) -> int:
    buf = ctypes.create_string_buffer(data, len(data))
    try:
        return dsys.process_vm_writev(os.getpid(), ctypes.addressof(buf), addr, len(data))
    except OSError as e:
        return -(e.errno or 0)


@dataclass
class Rig:
    """memfd (fallocated) + a MAP_SHARED mapping registered MINOR + a handler thread."""

    fd: int
    uffd: int
    addr: int
    decide: Callable[[int, int], str] = lambda addr, flags: "continue"
    faults: list[tuple[int, int]] = field(default_factory=list)
    delay: float = 0.0
    stop: bool = False

    def serve(self) -> None:
        p = select.poll()
        p.register(self.uffd, select.POLLIN)
        while not self.stop:
            if not p.poll(50):
                continue
            for m in dsys.read_msgs(self.uffd):
                if m.event != dsys.UFFD_EVENT_PAGEFAULT:
                    continue
                self.faults.append((int(m.arg1), int(m.arg0)))
                page = int(m.arg1) & ~(PG - 1)
                time.sleep(self.delay)
                what = self.decide(page, int(m.arg0))
                try:
                    if what == "continue":
                        dsys.uffd_continue(self.uffd, page, PG)
                    else:
                        dsys.uffd_poison(self.uffd, page, PG)
                except OSError:
                    dsys.uffd_wake(self.uffd, page, PG)


@pytest.fixture
def rig() -> Iterator[Rig]:
    fd = dsys.memfd_create("devdax-mech")
    dsys.ftruncate(fd, L)
    dsys.fallocate(fd, 0, 0, L)
    uffd = dsys.userfaultfd()
    dsys.uffd_api(uffd, dsys.UFFD_FEATURE_MINOR_SHMEM | dsys.UFFD_FEATURE_POISON)
    addr = dsys.mmap(0, L, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED, fd, 0)
    ioctls = dsys.uffd_register(uffd, addr, L, dsys.UFFDIO_REGISTER_MODE_MINOR)
    assert ioctls & (1 << 0x07) and ioctls & (1 << 0x08)  # CONTINUE and POISON offered
    os.pwrite(fd, b"backing!", 0)
    r = Rig(fd, uffd, addr)
    t = threading.Thread(target=r.serve, daemon=True)
    t.start()
    try:
        yield r
    finally:
        r.stop = True
        t.join(5)
        dsys.munmap(addr, L)
        os.close(uffd)
        os.close(fd)


def test_minor_fault_on_fallocated_memfd_and_continue(rig: Rig) -> None:
    assert pvr(rig.addr) == b"backing!"
    assert len(rig.faults) == 1
    addr, flags = rig.faults[0]
    assert addr == rig.addr and flags & dsys.UFFD_PAGEFAULT_FLAG_MINOR
    assert pvr(rig.addr + 8) == b"\0" * 8 and len(rig.faults) == 1  # installed: no second fault
    assert pvw(rig.addr + PG, b"w") == 1 and rig.faults[1][1] & dsys.UFFD_PAGEFAULT_FLAG_WRITE


def test_process_vm_readv_blocks_until_the_handler_resolves(rig: Rig) -> None:
    rig.delay = 0.2
    t0 = time.monotonic()
    assert pvr(rig.addr) == b"backing!"
    assert time.monotonic() - t0 >= 0.2


def test_poison_gives_efault_to_process_vm_rw(rig: Rig) -> None:
    rig.decide = lambda addr, flags: "poison"
    assert pvr(rig.addr + 3 * PG) == errno.EFAULT
    assert pvw(rig.addr + 3 * PG, b"x") == -errno.EFAULT
    assert len(rig.faults) == 1  # the marker answers later touches itself


def test_madvise_dontneed_zaps_entries_and_poison(rig: Rig) -> None:
    """DONTNEED on the shared mapping: next touch faults into the handler again, poison included."""
    assert pvr(rig.addr) == b"backing!"
    rig.decide = lambda addr, flags: "poison"
    assert pvr(rig.addr + PG) == errno.EFAULT
    dsys.madvise(rig.addr, L, dsys.MADV_DONTNEED)
    rig.decide = lambda addr, flags: "continue"
    n = len(rig.faults)
    assert pvr(rig.addr) == b"backing!" and pvr(rig.addr + PG) == b"\0" * 8
    assert len(rig.faults) == n + 2


def test_continue_over_a_half_populated_range_stops_at_the_present_page(rig: Rig) -> None:
    """Why the handler walks a unit: CONTINUE fails EEXIST at a present page, partial is EAGAIN."""
    dsys.uffd_continue(rig.uffd, rig.addr + 2 * PG, PG)
    with pytest.raises(OSError) as e:
        dsys.uffd_continue(rig.uffd, rig.addr + 2 * PG, 2 * PG)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        dsys.uffd_continue(rig.uffd, rig.addr, 4 * PG)
    assert e.value.errno == errno.EAGAIN and e.value.mapped == 2 * PG  # type: ignore[attr-defined]


def test_unallocated_shmem_page_raises_no_minor_fault(rig: Rig) -> None:
    """Minor mode only sees pages already in the page cache: a punched hole is filled silently."""
    dsys.fallocate(rig.fd, dsys.FALLOC_FL_PUNCH_HOLE | dsys.FALLOC_FL_KEEP_SIZE, 5 * PG, PG)
    assert pvr(rig.addr + 5 * PG) == b"\0" * 8
    assert rig.faults == []


def test_poison_marker_is_sigbus_for_a_plain_load() -> None:
    """UFFDIO_POISON then a real load in a (self-contained) child: killed by SIGBUS."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            import faulthandler

            faulthandler.disable()
            fd = dsys.memfd_create("devdax-mech-child")
            dsys.ftruncate(fd, PG)
            dsys.fallocate(fd, 0, 0, PG)
            u = dsys.userfaultfd()
            dsys.uffd_api(u, dsys.UFFD_FEATURE_MINOR_SHMEM | dsys.UFFD_FEATURE_POISON)
            a = dsys.mmap(0, PG, dsys.PROT_READ, dsys.MAP_SHARED, fd, 0)
            dsys.uffd_register(u, a, PG, dsys.UFFDIO_REGISTER_MODE_MINOR)
            dsys.uffd_poison(u, a, PG)
            ctypes.c_uint8.from_address(a).value  # noqa: B018
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGBUS


def test_empty_memfd_mapping_is_efault() -> None:
    fd = dsys.memfd_create("devdax-mech-hole")
    a = dsys.mmap(0, PG, dsys.PROT_READ, dsys.MAP_SHARED, fd, 0)
    try:
        assert pvr(a) == errno.EFAULT
    finally:
        dsys.munmap(a, PG)
        os.close(fd)


def test_membarrier_global_expedited_is_available() -> None:
    q = dsys.membarrier(dsys.MEMBARRIER_CMD_QUERY)
    assert q & dsys.MEMBARRIER_CMD_GLOBAL_EXPEDITED
    srcu.register_reader_process()
    srcu.memory_barrier()


def test_mremap_and_mprotect_bindings() -> None:
    a = dsys.mmap(0, 2 * PG, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS)
    dsys.mprotect(a, PG, dsys.PROT_READ)
    with pytest.raises(OSError) as e:
        dsys.mremap(a, 2 * PG, 4 * PG, dsys.MREMAP_MAYMOVE)  # spans two vmas after the split
    assert e.value.errno == errno.EFAULT
    dsys.mprotect(a, PG, dsys.PROT_READ | dsys.PROT_WRITE)  # merged again
    b = dsys.mremap(a, 2 * PG, 4 * PG, dsys.MREMAP_MAYMOVE)
    dsys.munmap(b, 4 * PG)
    with pytest.raises(OSError) as e:
        dsys.munmap(a + 1, PG)
    assert e.value.errno == errno.EINVAL


def test_user_mode_only_uffd_does_not_see_kernel_mode_faults() -> None:
    """UFFD_USER_MODE_ONLY (the unprivileged variant): GUP faults get EFAULT at once, no message."""
    fd = dsys.memfd_create("devdax-mech-umo")
    dsys.ftruncate(fd, PG)
    dsys.fallocate(fd, 0, 0, PG)
    u = dsys.userfaultfd(dsys.O_CLOEXEC | dsys.O_NONBLOCK | dsys.UFFD_USER_MODE_ONLY)
    a = dsys.mmap(0, PG, dsys.PROT_READ, dsys.MAP_SHARED, fd, 0)
    try:
        dsys.uffd_api(u, dsys.UFFD_FEATURE_MINOR_SHMEM)
        dsys.uffd_register(u, a, PG, dsys.UFFDIO_REGISTER_MODE_MINOR)
        assert pvr(a) == errno.EFAULT
        assert dsys.read_msgs(u) == []
    finally:
        dsys.munmap(a, PG)
        os.close(u)
        os.close(fd)
