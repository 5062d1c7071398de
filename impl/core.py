"""MappingCore: real shared mappings of emulated device memory whose faults go through a handler.

This is the layer below the device emulation. It knows backings (a memfd, or a file on tmpfs for
persistence), device slots (alive flag, align, ranges of the backing), and vmas; it knows nothing of
kobjects, cdevs, minors or open files -- the device layer above owns those and calls in here.

How a fault happens (see README.md for what was verified on the running kernel):

* ``map_shared`` places the vma like ``dax_get_unmapped_area`` (reserve len+align PROT_NONE, pick the
  address congruent to the file offset modulo align, MAP_FIXED the pieces, release the slack). A
  device made of several ranges becomes several MAP_FIXED pieces at different backing offsets, one per
  run of units that ``pgoff_to_phys`` maps contiguously; units past the device end map an empty memfd,
  so touching them SIGBUSes without reaching the handler (the kernel reaches its handler and SIGBUSes
  there; the outcome is the same, only the handler's counters miss it).
* The vma is registered with a userfaultfd in MINOR mode. The backing pages are already in the page
  cache (fallocate), so the first touch of each unit raises a minor fault that the handler process
  resolves with UFFDIO_CONTINUE of exactly one unit or UFFDIO_POISON (SIGBUS for the toucher).
* ``kill_device`` is the spec's teardown order: clear alive, SRCU grace period, zap (MADV_DONTNEED) every
  vma of the device; the next touch faults into the handler, which sees alive == 0 and poisons.

Huge pages: a memfd backing whose first device has a 2M or 1G align becomes a hugetlbfs memfd of
the largest huge page size the align allows and the pool can hold (``_settle``; ``make hugepages``
reserves them). Its units are then real PMD/PUD entries (one UFFDIO_CONTINUE maps one huge page, and
smaps says KernelPageSize 2048 kB as for a device-dax vma, whose ->pagesize is the device align).
Where the pool cannot hold it the backing stays shmem with 4K PTEs, ``Backing.why`` says why, and
one warning line per cause goes to the ``devdax.impl`` logger. Either way a vma's pieces map each
unit at ``round_down(phys, align)``: the kernel's huge entry masks the pfn (x86 ``pfn_pmd`` /
``pfn_pud``), so a vma whose file offset is not a multiple of the align (F3) shows the bytes of the
aligned block, and hugetlbfs could not map anything else.

Backings that userfaultfd minor mode does not support (anything but shmem/hugetlbfs) get the
*prefault* mode, reported in ``Mapping.mode``: the pieces are populated at mmap time, no fault ever
reaches the handler, a zap of a live device repopulates, and a zap of a dead device replaces the
pieces with the empty memfd so that touches SIGBUS.

GIL safety: nothing here waits for the handler while holding a lock the handler needs, and the
handler needs nothing from this process to resolve a fault; a thread blocked in a fault on a
memoryview (holding this process's GIL) is resolved regardless. x86_64 only (see sys.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import faulthandler
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from devdax.spec import geometry

from . import srcu
from . import sys as dsys
from .table import (
    MAX_DEVICES,
    MAX_RANGES,
    MAX_VMAS,
    TABLE_SIZE,
    VMA_MAYSHARE,
    VMA_SHARED,
    VMA_WRITE,
    SharedTable,
    VmaDesc,
)

PAGE = dsys.PAGE_SIZE
ALIGNS = (geometry.PAGE_SIZE, geometry.PMD_SIZE, geometry.PUD_SIZE)
UFFD_FEATURES = dsys.UFFD_FEATURE_MINOR_SHMEM | dsys.UFFD_FEATURE_POISON | dsys.UFFD_FEATURE_THREAD_ID
HUGE_PAGES = (geometry.PUD_SIZE, geometry.PMD_SIZE)  # hugetlb sizes a backing may take, largest first

log = logging.getLogger("devdax.impl")
_REPORTED: set[tuple[int, str]] = set()  # (align, cause) already warned about in this process


def _report(align: int, cause: str, msg: str) -> None:
    """One warning line per cause and align per process: a suite of scenarios on a machine without
    huge pages says so once, not once a region."""
    if (align, cause) not in _REPORTED:
        _REPORTED.add((align, cause))
        log.warning("devdax impl: %s", msg)


def _name(size: int) -> str:
    return f"{size >> 20}M" if size < geometry.PUD_SIZE else f"{size >> 30}G"


def _einval(msg: str) -> OSError:
    return OSError(errno.EINVAL, msg)


@dataclass(eq=False)
class Backing:
    """The memory of a region: an fd whose offsets are the emulated physical addresses.

    ``page`` is the page size of that memory: 4K (shmem, tmpfs) or a hugetlb size, chosen when the
    first device is added (module doc, MappingCore._settle); ``why`` says why a device's align got
    smaller pages ("" when it did not). ``raw_fd`` is the core's own handle; reading ``fd`` from
    outside settles the pages as they are, since the reader may write through it (hugetlbfs has no
    write(2): use MappingCore.write_backing)."""

    raw_fd: int
    size: int
    path: str | None  # None: anonymous memfd (dies with the last fd); else a persistent file
    closed: bool = False
    page: int = PAGE
    why: str = ""
    settled: bool = False

    @property
    def fd(self) -> int:
        self.settled = True
        return self.raw_fd


@dataclass(frozen=True, slots=True)
class Piece:
    """One MAP_FIXED piece of a vma: ``length`` bytes at ``offset`` in the vma mapping backing
    offset ``phys`` (None: a hole past the device end, mapped from the empty memfd)."""

    offset: int
    length: int
    phys: int | None


@dataclass(eq=False)
class Mapping:
    """One vma: [addr, addr+length) of device ``dev`` starting at device page ``pgoff``."""

    addr: int
    length: int
    pgoff: int
    dev: int
    align: int
    prot: int
    vma_idx: int
    pieces: tuple[Piece, ...]
    mode: str  # "uffd" | "prefault"
    revoked: bool = False  # prefault mode only: pieces replaced by the empty memfd (device dead)
    closed: bool = False

    @property
    def end(self) -> int:
        return self.addr + self.length


@dataclass
class _Device:
    backing: Backing
    align: int
    ranges: tuple[geometry.Range, ...]
    maps: list[Mapping] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Touch:
    """What an access did: ``outcome`` is "ok" or "SIGBUS" (EFAULT from process_vm_readv/writev)."""

    outcome: str
    data: bytes
    done: int


@dataclass(frozen=True, slots=True)
class ChildTouch:
    """A plain load/store in a forked child: "ok" (``value`` read), a signal name, or "timeout"."""

    outcome: str
    value: int | None


class _MunmapWait:
    """The backoff of MappingCore._mm_write: one exponential schedule and one deadline shared by both
    of its waits, so that together they stay within the core's timeout."""

    def __init__(self, lo: int, hi: int, timeout: float, cap: float) -> None:
        self.lo, self.hi = lo, hi
        self.deadline = time.monotonic() + timeout
        self.delay = 1e-6
        self.cap = cap

    def pause(self, busy: list[int], which: str) -> None:
        if time.monotonic() > self.deadline:
            raise OSError(
                errno.ETIMEDOUT,
                f"munmap: faults of workers {busy} {which} [{self.lo:#x}, {self.hi:#x}) did not finish",
            )
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)


class MappingCore:
    """Backings, device slots and vmas over one userfaultfd serviced by one handler process.

    Every public method either completes or raises OSError(errno)/ValueError, and ``close`` (also via
    ``with``) returns every fd, mapping, thread and the handler process.
    """

    def __init__(
        self,
        workers: int = 2,
        policy: str | None = None,
        *,
        event_fork: bool = True,
        timeout: float = 10.0,
        huge: bool = True,
    ) -> None:
        """``huge``: 2M and 1G devices may get hugetlbfs memory (module doc); False keeps every
        backing at 4K pages, as on a machine without huge pages."""
        self._lock = threading.RLock()
        self._ctl_lock = threading.Lock()
        self.timeout = timeout
        self._devices: dict[int, _Device] = {}
        self._maps: set[Mapping] = set()
        self._backings: list[Backing] = []
        self.closed = False
        self._table_fd = dsys.memfd_create("devdax-table")
        self._hole_fd = -1
        self._uffd = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._table_addr = 0
        self.broken = False  # the handler process died: every vma was revoked
        self._stopping = False
        self._pidfd = self._wake_r = self._wake_w = -1
        self._watcher: threading.Thread | None = None
        try:
            dsys.ftruncate(self._table_fd, TABLE_SIZE)
            self._table_addr = dsys.mmap(
                0, TABLE_SIZE, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED, self._table_fd, 0
            )
            self.table = SharedTable(self._table_addr, init=True)
            self._hole_fd = dsys.memfd_create("devdax-hole")
            self._uffd = dsys.userfaultfd(dsys.O_CLOEXEC | dsys.O_NONBLOCK)
            # the features we asked for (UFFDIO_API reports every feature the kernel supports)
            self.features = UFFD_FEATURES | (dsys.UFFD_FEATURE_EVENT_FORK if event_fork else 0)
            if huge and dsys.uffd_features() & dsys.UFFD_FEATURE_MINOR_HUGETLBFS:
                self.features |= dsys.UFFD_FEATURE_MINOR_HUGETLBFS
            self.huge = huge
            dsys.uffd_api(self._uffd, self.features)
            self._start_handler(workers, policy)
        except BaseException:
            self._teardown_resources()
            raise

    # --- handler process --------------------------------------------------------------------------
    def _start_handler(self, workers: int, policy: str | None) -> None:
        """Spawn the handler with exec (never a bare fork: a fork of this process while vmas are
        registered with EVENT_FORK would block until someone reads the event, i.e. the handler)."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = [
                sys.executable,
                "-m",
                "devdax.impl.handler",
                "--uffd",
                str(self._uffd),
                "--table",
                str(self._table_fd),
                "--ctl",
                str(b.fileno()),
                "--workers",
                str(workers),
            ]
            if policy:
                argv += ["--policy", policy]
            self._proc = subprocess.Popen(
                argv, pass_fds=(self._uffd, self._table_fd, b.fileno()), stdin=subprocess.DEVNULL
            )
        finally:
            b.close()
        self._ctl = a
        a.settimeout(self.timeout)
        try:
            msg = a.recv(64)
        except TimeoutError as e:
            raise OSError(errno.ETIMEDOUT, "fault handler did not start") from e
        if msg != b"READY":
            raise OSError(errno.EIO, f"fault handler failed to start ({msg!r})")
        assert self._proc is not None
        self._pidfd = os.pidfd_open(self._proc.pid)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._watcher = threading.Thread(target=self._watch, name="devdax-handler-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """Wait for the handler to exit; if it was not asked to, fail safe (see _handler_lost)."""
        ready, _, _ = select.select([self._pidfd, self._wake_r], [], [])
        if self._pidfd in ready and not self._stopping:
            self._handler_lost()

    def _handler_lost(self) -> None:
        """The handler died: nobody can resolve faults any more, so make the device memory unreachable.

        Every uffd vma gets the empty memfd mapped over it (any access: SIGBUS / EFAULT), then our
        userfaultfd is closed; that releases the context (the handler's copies died with it), which
        wakes every toucher blocked in a fault, and its retry hits the empty mapping. The SRCU slots
        of the dead readers are cleared so that a later kill_device does not wait for them forever.
        """
        got = self._lock.acquire(timeout=self.timeout)
        try:
            self.broken = True
            for m in list(self._maps):
                if m.mode == "uffd":
                    with contextlib.suppress(OSError):
                        dsys.mmap(
                            m.addr, m.length, m.prot, dsys.MAP_SHARED | dsys.MAP_FIXED, self._hole_fd, 0
                        )
            if self._uffd >= 0:
                os.close(self._uffd)
                self._uffd = -1
            self.table.srcu.reset_readers()
            for w in self.table.t.workers:  # nor their mmap_lock read sides (_mm_write)
                w.mm_addr = 0
        finally:
            if got:
                self._lock.release()

    @property
    def handler_pid(self) -> int:
        return self._proc.pid if self._proc else 0

    def _request(self, req: bytes) -> bytes:
        """One synchronous request to the handler's control thread."""
        with self._ctl_lock:
            if self._ctl is None:
                raise ValueError("MappingCore is closed")
            if self.broken:
                raise OSError(errno.EPIPE, "the fault handler process died")
            try:
                self._ctl.send(req)
                rep = self._ctl.recv(64)
            except TimeoutError as e:
                raise OSError(errno.ETIMEDOUT, f"fault handler did not answer {req!r}") from e
        if not rep.startswith(b"OK"):
            raise OSError(errno.EIO, f"fault handler: {req!r} -> {rep!r}")
        return rep

    # --- backings ---------------------------------------------------------------------------------
    def create_backing(self, size: int, path: str | None = None) -> Backing:
        """A memfd (default) or a file at ``path`` (created if needed, kept afterwards), fully allocated.

        Allocation matters: UFFDIO_CONTINUE only maps pages already in the page cache, and a minor
        fault is only raised for such pages (a hole would be filled silently by shmem).
        """
        self._check_open()
        if size <= 0 or size % PAGE:
            raise _einval(f"backing size {size} is not a positive multiple of {PAGE}")
        if path is None:
            fd = dsys.memfd_create("devdax-region")
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                dsys.ftruncate(fd, size)
            dsys.fallocate(fd, 0, 0, size)
        except BaseException:
            os.close(fd)
            raise
        b = Backing(fd, size, path)
        with self._lock:
            self._backings.append(b)
        return b

    def close_backing(self, b: Backing) -> None:
        with self._lock:
            if b.closed:
                raise ValueError("backing already closed")
            if any(d.backing is b for d in self._devices.values()):
                raise OSError(errno.EBUSY, "backing still has devices")
            b.closed = True
            os.close(b.raw_fd)
            self._backings.remove(b)

    def _settle(self, b: Backing, align: int) -> None:
        """The first device of a memfd backing chooses its pages: the largest hugetlb size not above
        its align whose pool can hold the whole backing, else 4K (shmem), reported once.

        The backing was allocated as shmem at creation (so that errors stay where they were); no
        device has mapped it and nobody has read its fd, so it holds zeros and can be replaced."""
        if b.settled:
            return
        b.settled = True
        if align < geometry.PMD_SIZE:
            return
        if b.path is not None:
            b.why = "a file backing has 4K pages (tmpfs)"
            return
        causes: list[str] = []
        for page in HUGE_PAGES:
            if page > align:
                continue
            fd, cause = self._hugetlb(b.size, page)
            if fd >= 0:
                os.close(b.raw_fd)
                b.raw_fd, b.page = fd, page
                if page < align:  # a 1G device on 2M pages: its entries are 2M, not 1G
                    b.why = f"{'; '.join(causes)}; 2M pages used"
                    _report(align, "2M", f"a 1G device uses 2M pages: {b.why} (make hugepages)")
                return
            causes.append(cause)
        b.why = "; ".join(causes)
        hint = " (make hugepages reserves them)" if "free" in b.why else ""
        _report(align, "4K", f"a {_name(align)} device uses 4K pages: {b.why}{hint}")

    def _hugetlb(self, size: int, page: int) -> tuple[int, str]:
        """A fully allocated hugetlbfs memfd of ``size`` bytes in ``page`` pages, or (-1, why not)."""
        name = _name(page)
        if not self.huge:
            return -1, "huge pages not asked for (MappingCore(huge=False))"
        if not self.features & dsys.UFFD_FEATURE_MINOR_HUGETLBFS:
            return -1, "userfaultfd has no minor faults on hugetlbfs here"
        need = -(-size // page)
        free = dsys.hugepages_free(page)
        if size % page or free < need:
            return -1, f"{need} free {name} hugepages needed, {free} free"
        try:
            fd = dsys.memfd_hugetlb("devdax-region", page)
        except OSError as e:
            return -1, f"memfd_create(MFD_HUGETLB {name}): {e.strerror}"
        try:
            dsys.ftruncate(fd, size)
            dsys.fallocate(fd, 0, 0, size)  # the pages must be in the page cache (minor faults)
        except OSError as e:
            os.close(fd)
            return -1, f"{name} hugepages taken meanwhile ({e.strerror})"
        return fd, ""

    def write_backing(self, b: Backing, offset: int, data: bytes) -> None:
        """pwrite into a backing, also a hugetlbfs one (which has no write(2)): through a mapping of
        the pages that hold the range, never registered with the handler."""
        if b.closed:
            raise ValueError("backing is closed")
        if offset < 0 or offset + len(data) > b.size:
            raise _einval(f"write of {len(data)} bytes at {offset:#x} outside the backing")
        if b.page == PAGE:
            os.pwrite(b.raw_fd, data, offset)
            return
        lo = offset - offset % b.page
        n = -(-(offset + len(data) - lo) // b.page) * b.page
        addr = dsys.mmap(0, n, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED, b.raw_fd, lo)
        try:
            ctypes.memmove(addr + offset - lo, data, len(data))
        finally:
            dsys.munmap(addr, n)

    # --- devices ----------------------------------------------------------------------------------
    def add_device(
        self,
        backing: Backing,
        spans: Sequence[tuple[int, int]],
        align: int,
        alive: bool = True,
        rules: int = 0,
    ) -> int:
        """A device slot over ``spans`` = [(backing offset, size)], laid out back to back in pgoff.
        ``rules``: table.DEV_* bits, the version of the fault handler the device's driver has."""
        self._check_open()
        if align not in ALIGNS:
            raise _einval(f"align {align:#x} is not 4K, 2M or 1G")
        if backing.closed:
            raise ValueError("backing is closed")
        if not 1 <= len(spans) <= MAX_RANGES:
            raise _einval(f"a device has 1..{MAX_RANGES} ranges")
        for start, size in spans:
            if size <= 0 or start % align or size % align or start < 0 or start + size > backing.size:
                raise _einval(f"range ({start:#x}, {size:#x}) misaligned or outside the backing")
        ranges = geometry.make_ranges(spans)
        with self._lock:
            free = [i for i in range(MAX_DEVICES) if i not in self._devices]
            if not free:
                raise OSError(errno.ENOSPC, "no free device slot")
            self._settle(backing, align)
            if align < backing.page:
                raise _einval(f"align {align:#x} is smaller than the backing's {backing.page:#x} pages")
            i = free[0]
            d = self.table.t.devices[i]
            d.page = backing.page
            d.align = align
            d.nranges = len(ranges)
            for k, r in enumerate(ranges):
                d.ranges[k].start, d.ranges[k].end, d.ranges[k].pgoff = r.start, r.end, r.pgoff
            d.rules = rules
            d.gen += 1
            d.alive = int(alive)
            d.used = 1
            self._devices[i] = _Device(backing, align, ranges)
            return i

    def remove_device(self, dev: int) -> None:
        with self._lock:
            d = self._dev(dev)
            if d.maps:
                raise OSError(errno.EBUSY, f"device {dev} still has {len(d.maps)} mappings")
            t = self.table.t.devices[dev]
            t.alive = 0
            t.used = 0
            del self._devices[dev]

    def set_alive(self, dev: int, alive: bool) -> None:
        """A plain store; ordering against faults is the job of ``synchronize`` (see kill_device)."""
        self._dev(dev)
        self.table.t.devices[dev].alive = int(alive)

    def alive(self, dev: int) -> bool:
        self._dev(dev)
        return bool(self.table.t.devices[dev].alive)

    def synchronize(self, timeout: float | None = None) -> None:
        """The SRCU grace period: every handler section that began before this call has ended."""
        self.table.srcu.synchronize(self.timeout if timeout is None else timeout)

    def kill_device(self, dev: int, timeout: float | None = None) -> None:
        """kill_dev_dax: alive = false; synchronize; unmap_mapping_range (zap every vma of the device).

        After it returns no entry of the device is installed and none can be installed again: any
        fault that saw alive == true has finished (grace period) and its entry was then zapped.
        """
        with self._lock:
            self.set_alive(dev, False)
            self.synchronize(timeout)
            for m in list(self._dev(dev).maps):
                self._zap(m)

    def revive_device(self, dev: int) -> None:
        """Modern rebind: alive again, and old vmas fault successfully again (poison markers zapped).

        A fault that read alive == false just before the store may still be about to poison its
        unit; the grace period lets it finish first, so the zap clears its marker too (without it
        a touch racing the re-bind left a marker that made the live device SIGBUS for good: found
        by tests/refinement/test_trace_validation.py)."""
        with self._lock:
            self.set_alive(dev, True)
            self.synchronize()
            for m in list(self._dev(dev).maps):
                self._zap(m)

    def _dev(self, dev: int) -> _Device:
        self._check_open()
        try:
            return self._devices[dev]
        except KeyError:
            raise ValueError(f"no device {dev}") from None

    # --- mappings ---------------------------------------------------------------------------------
    @staticmethod
    def pieces(ranges: Sequence[geometry.Range], pgoff: int, length: int, align: int) -> tuple[Piece, ...]:
        """Split a vma into runs of units that pgoff_to_phys maps contiguously (None: past the end).

        A unit maps iff it lies whole inside one range (pgoff_to_phys), so each range gives one run
        and the rest are holes: the work is per range, not per unit, and a length far past the
        device costs no more than one that ends with it (issue 14 class 2). A run maps from the
        start of the unit-sized block that holds its exact start: a huge entry maps
        round_down(phys, size) (x86 pfn_pmd/pfn_pud mask the pfn; vmf_insert_pfn_pmd in
        mm/huge_memory.c), which is F3's wrong bytes when pgoff is not a multiple of the align."""
        unit = max(align, PAGE)
        upp = unit // PAGE  # pages per unit
        units = -(-length // unit)
        runs: list[Piece] = []
        for r in ranges:
            first = max(0, -(-(r.pgoff - pgoff) // upp))  # the first unit starting inside r
            end = min(units, (r.pgoff + r.pages - upp - pgoff) // upp + 1)  # past the last ending in r
            if end > first:
                phys = ((pgoff + first * upp - r.pgoff) << geometry.PAGE_SHIFT) + r.start
                phys -= phys % unit  # the entry maps round_down(phys, size): pfn_pmd/pfn_pud mask (F3)
                runs.append(Piece(first * unit, (end - first) * unit, phys))
        out: list[Piece] = []
        at = 0
        for p in sorted(runs, key=lambda p: p.offset):
            if p.offset > at:
                out.append(Piece(at, p.offset - at, None))
            last = out[-1] if out else None
            if (
                last is not None
                and last.phys is not None
                and last.offset + last.length == p.offset
                and last.phys + last.length == p.phys  # physically contiguous ranges: one run
            ):
                out[-1] = Piece(last.offset, last.length + p.length, last.phys)
                at = p.offset + p.length
                continue
            out.append(p)
            at = p.offset + p.length
        if at < units * unit:
            out.append(Piece(at, units * unit - at, None))
        return tuple(out)

    def map_shared(
        self,
        dev: int,
        length: int,
        pgoff: int = 0,
        prot: int = dsys.PROT_READ | dsys.PROT_WRITE,
        file_writable: bool = True,
    ) -> Mapping:
        """mmap(MAP_SHARED) of a device: an address aligned to the device's align, faults via the handler.

        Raises OSError(EINVAL) when the resulting vma would be misaligned (check_vma's "unaligned vma";
        with get_unmapped_area semantics that happens exactly when the offset is misaligned).
        """
        with self._lock:
            d = self._dev(dev)
            if self.broken:
                raise OSError(errno.EIO, "the fault handler process died; no new mappings")
            align = d.align
            if length <= 0 or length % PAGE or pgoff < 0:
                raise _einval(f"length {length:#x} / pgoff {pgoff} invalid")
            idx = self._free_vma_slot()
            addr, pieces = self._place(d, length, pgoff, prot)
            flags = (
                VMA_MAYSHARE
                | (VMA_SHARED if file_writable else 0)
                | (VMA_WRITE if prot & dsys.PROT_WRITE else 0)
            )
            v = self._record_vma(idx, addr, length, pgoff, dev, align, flags)
            m = Mapping(addr, length, pgoff, dev, align, prot, idx, pieces, "uffd")
            self._register_vma(m, v, self._zap)  # zap: populate if alive, else the empty memfd
            d.maps.append(m)
            self._maps.add(m)
            return m

    def _free_vma_slot(self) -> int:
        """The caller holds self._lock, so the slot stays free until it writes the descriptor."""
        idx = next((i for i in range(MAX_VMAS) if not self.table.t.vmas[i].used), None)
        if idx is None:
            raise OSError(errno.ENOMEM, "no free vma slot")
        return idx

    def _place(self, d: _Device, length: int, pgoff: int, prot: int) -> tuple[int, tuple[Piece, ...]]:
        """dax_get_unmapped_area: a PROT_NONE reservation of length + align always holds an address
        congruent to the offset, the pieces go MAP_FIXED over it and the slack is given back. On a
        failure the whole reservation goes, so nothing is left mapped."""
        align = d.align
        res_len = length + align
        res = dsys.mmap(
            0, res_len, dsys.PROT_NONE, dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS | dsys.MAP_NORESERVE
        )
        try:
            addr = geometry.dax_get_unmapped_area(0, length, pgoff, align, lambda _n: res)
            if addr % align or (addr + length) % align:
                raise _einval("unaligned vma (check_vma): file offset not a multiple of align")
            pieces = self.pieces(d.ranges, pgoff, length, align)
            self._map_pieces(d, addr, pieces, prot)
        except BaseException:
            dsys.munmap(res, res_len)
            raise
        if addr > res:  # release the slack
            dsys.munmap(res, addr - res)
        if res + res_len > addr + length:
            dsys.munmap(addr + length, res + res_len - addr - length)
        return addr, pieces

    def _map_pieces(self, d: _Device, addr: int, pieces: Sequence[Piece], prot: int) -> None:
        """Holes past the device end map the empty memfd, so touching them SIGBUSes (module doc).
        The caller owns [addr, addr + length) and unmaps it if this fails part way."""
        for p in pieces:
            fd = d.backing.raw_fd if p.phys is not None else self._hole_fd
            dsys.mmap(addr + p.offset, p.length, prot, dsys.MAP_SHARED | dsys.MAP_FIXED, fd, p.phys or 0)

    def _record_vma(
        self, idx: int, addr: int, length: int, pgoff: int, dev: int, align: int, flags: int
    ) -> VmaDesc:
        """The descriptor the handler's find_vma reads; ``used`` is stored last, so a fault never
        sees a used slot with half-written bounds."""
        v: VmaDesc = self.table.t.vmas[idx]
        v.start, v.end, v.pgoff, v.dev, v.align = addr, addr + length, pgoff, dev, align
        v.flags = flags
        v.used = 1
        return v

    def _register_vma(
        self, m: Mapping, v: VmaDesc, prefault: Callable[[Mapping], None], forget_when_broken: bool = True
    ) -> None:
        """The handler indexes the descriptor before the first minor fault can reach it; a backing
        without minor faults (not shmem) is ``prefault``ed instead. On any failure the vma is taken
        down again (slot, memory, then the handler's index), so the caller is left with nothing to
        undo. map_at does not ask a dead handler to forget (``forget_when_broken``), so that the
        error that stopped the mapping is the one raised."""
        try:
            self._request(b"ADD")
            try:
                dsys.uffd_register(self._uffd, m.addr, m.length, dsys.UFFDIO_REGISTER_MODE_MINOR)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                m.mode = "prefault"  # not shmem: no minor faults on this backing
                prefault(m)
        except BaseException:
            v.used = 0
            dsys.munmap(m.addr, m.length)
            if self._ctl is not None and (forget_when_broken or not self.broken):
                self._request(b"DEL")
            raise

    def _populate(self, m: Mapping) -> None:
        adv = dsys.MADV_POPULATE_WRITE if m.prot & dsys.PROT_WRITE else dsys.MADV_POPULATE_READ
        for p in m.pieces:
            if p.phys is not None:
                dsys.madvise(m.addr + p.offset, p.length, adv)

    def _zap(self, m: Mapping) -> None:
        if m.mode == "uffd":
            dsys.madvise(m.addr, m.length, dsys.MADV_DONTNEED)
            return
        if self.table.t.devices[m.dev].alive:
            if m.revoked:  # rebind: the real pieces come back
                fd = self._devices[m.dev].backing.raw_fd
                for p in m.pieces:
                    dsys.mmap(
                        m.addr + p.offset,
                        p.length,
                        m.prot,
                        dsys.MAP_SHARED | dsys.MAP_FIXED,
                        fd if p.phys is not None else self._hole_fd,
                        p.phys or 0,
                    )
                m.revoked = False
            else:
                dsys.madvise(m.addr, m.length, dsys.MADV_DONTNEED)
            self._populate(m)
        else:  # dead: the next access must SIGBUS
            dsys.mmap(m.addr, m.length, m.prot, dsys.MAP_SHARED | dsys.MAP_FIXED, self._hole_fd, 0)
            m.revoked = True

    def zap(self, m: Mapping) -> None:
        """unmap_mapping_range for one vma: drop every installed entry (and poison marker)."""
        with self._lock:
            self._live(m)
            self._zap(m)

    def zap_range(self, m: Mapping, lo: int, hi: int) -> None:
        """MADV_DONTNEED over [lo, hi) of one vma (zap_page_range_single): an entry the range
        touches goes whole -- zap_pmd_range/zap_pud_range clear a huge entry of a file vma that the
        range covers in part (__split_huge_pmd on a non-anonymous vma only clears it) -- so the
        range widens to the vma's units. hugetlbfs refuses an unaligned start (EINVAL) anyway."""
        with self._lock:
            self._live(m)
            unit = max(m.align, PAGE)
            lo, hi = max(m.addr, lo - lo % unit), min(m.end, -(-hi // unit) * unit)
            if lo < hi:
                dsys.madvise(lo, hi - lo, dsys.MADV_DONTNEED)

    def page_size(self, m: Mapping) -> int | None:
        """What smaps says KernelPageSize is for the vma (None: not mapped): the device align when
        its memory is hugetlbfs pages of that size, as the kernel's dev_dax_pagesize answers for a
        device-dax vma (vma_kernel_pagesize -> vm_ops->pagesize), 4K where the backing fell back."""
        with self._lock:
            self._live(m)
            return dsys.kernel_page_size(m.addr)

    def _mm_write(self, lo: int, hi: int, op: Callable[[], None]) -> None:
        """Run ``op`` (the munmap of [lo, hi)) as the writer of the emulated mmap_lock: no handler
        fault on the range is between its vma lookup and its install when op runs, and none that
        looked the vma up before op is still running when this returns.

        The kernel: __vm_munmap takes mmap_write_lock and do_vmi_munmap detaches the vmas
        (vma_start_write waits for per-vma read locks too); a fault holds the read side from
        lock_vma_under_rcu / lock_mm_and_find_vma until handle_mm_fault returns, so munmap is
        entirely before a fault (the fault finds no vma: SIGSEGV) or entirely after it (its entry
        goes with the vma). Here a fault's read side is its worker's ``mm_addr`` slot (handler.py
        Handler._service), and the handler never waits for us (a thread of ours may be blocked in
        that fault holding the GIL): the writer waits, the readers do not.

        1. Wait until no worker holds the read side for an address in the range, then run ``op``:
           under the trace log's lock when tracing, where workers set their slot too, so then
           exactly no fault of the range is in flight at op (its logged point); otherwise a fault
           may still start between the check and op, and its install fails (ENOENT: the vma is
           gone; its toucher refaults into SIGSEGV).
        2. membarrier, then wait until no worker holds the read side in the range. A worker that
           set its slot after the barrier finds op's retired descriptor (handler.find_vma); one
           before it is waited for. Only then may another vma be placed there (the caller holds
           self._lock): a late UFFDIO_CONTINUE could otherwise land in the new vma with a decision
           made for the old one (seen: a 2M unit of a 2M device installed into a 4K device's vma).

        Both waits are bounded by the core's timeout: OSError(ETIMEDOUT) from the first (nothing
        changed) or the second (op done). A dead handler holds nothing (its slots are cleared).
        """
        tr = self.table.trace if self.table.trace.on else None
        wait = _MunmapWait(lo, hi, self.timeout, 5e-5 if tr is not None and tr.scheduled else 1e-3)
        while True:
            with tr.section() if tr is not None else contextlib.nullcontext():
                busy = [] if self.broken else self.table.mm_busy(lo, hi)
                if not busy:
                    op()
                    break
            wait.pause(busy, "on")
        if self.broken:
            return
        srcu.memory_barrier()
        while busy := self.table.mm_busy(lo, hi):
            if self.broken:
                return
            wait.pause(busy, "that looked up")

    def unmap(self, m: Mapping, point: Callable[[], None] | None = None) -> None:
        """munmap: the entries go with the vma, then the descriptor is retired in the handler.

        Waits for handler faults in flight on the vma (_mm_write: the kernel's mmap_lock).
        ``point``: called at the munmap's linearization point (the caller's event log), inside the
        trace log's lock when tracing, right after the munmap itself (a toucher may see the vma gone
        before the point's number is taken: Runner.utoucher in tests/refinement/runner.py ends such
        a toucher's window after the event in progress). ``m.closed`` says whether the munmap
        happened, also when the wait after it timed out (OSError ETIMEDOUT)."""
        with self._lock:
            self._live(m)

            def op() -> None:
                dsys.munmap(m.addr, m.length)
                m.closed = True
                self.table.t.vmas[m.vma_idx].used = 0
                self._devices[m.dev].maps.remove(m)
                self._maps.discard(m)
                if point is not None:
                    point()

            try:
                self._mm_write(m.addr, m.end, op)
            finally:
                if m.closed:
                    self.table.free_pgtables(m.addr, m.end)  # no fault of the range is in flight
                if m.closed and not self.broken:
                    self._request(b"DEL")

    def munmap_range(self, m: Mapping, offset: int, length: int) -> tuple[Mapping, ...]:
        """Partial munmap of [m.addr+offset, +length): returns the surviving pieces as new Mappings.

        ``m`` is retired. Both ends must be multiples of the device's align -- the modern driver's
        ``.may_split`` refuses anything else with EINVAL (before 4.15 the kernel split anyway and hit
        a VM_BUG_ON in __split_huge_pud; M8). A fault racing the split sees either the old descriptor
        or the new ones, which agree on every surviving address, so no lock against the handler is
        needed.
        """
        with self._lock:
            self._live(m)
            self._may_split(m, offset, length)
            if length == m.length:
                self.unmap(m)
                return ()
            cut_end = offset + length
            right_idx = self._free_vma_slot() if cut_end < m.length else None
            d = self._devices[m.dev]
            out: list[Mapping] = []

            def op() -> None:
                dsys.munmap(m.addr + offset, length)
                if offset > 0:
                    out.append(self._derive(m, 0, offset, m.vma_idx))
                if right_idx is not None:
                    out.append(self._derive(m, cut_end, m.length - cut_end, right_idx))
                if offset == 0:
                    self.table.t.vmas[m.vma_idx].used = 0
                else:
                    self.table.t.vmas[m.vma_idx].end = m.addr + offset
                m.closed = True
                d.maps.remove(m)
                self._maps.discard(m)
                d.maps.extend(out)
                self._maps.update(out)

            try:
                self._mm_write(m.addr + offset, m.addr + cut_end, op)
            finally:
                if m.closed:
                    self.table.free_pgtables(m.addr + offset, m.addr + cut_end)
                if m.closed and not self.broken:
                    self._request(b"ADD")
            return tuple(out)

    @staticmethod
    def _may_split(m: Mapping, offset: int, length: int) -> None:
        """dev_dax_may_split: a cut inside a unit would split a huge entry (before 4.15 the kernel
        did, and hit VM_BUG_ON; M8), so the modern driver refuses it with EINVAL, as it does a
        range outside the vma."""
        if length <= 0 or offset < 0 or offset + length > m.length or offset % m.align or length % m.align:
            raise _einval(f"split at ({offset:#x}, {length:#x}) not aligned to {m.align:#x} (may_split)")

    def _derive(self, m: Mapping, off: int, length: int, idx: int) -> Mapping:
        """A Mapping for [m.addr+off, +length) with its own descriptor in slot ``idx``."""
        pgoff = m.pgoff + off // PAGE
        n = Mapping(
            m.addr + off,
            length,
            pgoff,
            m.dev,
            m.align,
            m.prot,
            idx,
            self.pieces(self._devices[m.dev].ranges, pgoff, length, m.align),
            m.mode,
            m.revoked,
        )
        if idx != m.vma_idx:
            v, o = self.table.t.vmas[idx], self.table.t.vmas[m.vma_idx]
            v.start, v.end, v.pgoff, v.dev, v.align, v.flags = n.addr, n.end, pgoff, m.dev, m.align, o.flags
            v.used = 1
        return n

    def mappings(self, dev: int | None = None) -> list[Mapping]:
        with self._lock:
            return [m for m in self._maps if dev is None or m.dev == dev]

    def _live(self, m: Mapping) -> None:
        self._check_open()
        if m.closed or m not in self._maps:
            raise ValueError("mapping already unmapped")

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("MappingCore is closed")

    # --- observation ------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return self.table.counters()

    def device_counts(self, dev: int) -> tuple[int, int]:
        """(installed units, SIGBUS faults) of one device."""
        return self.table.device_counts(dev)

    # --- touching memory without risking a signal -------------------------------------------------
    @staticmethod
    def _perms(addr: int) -> str | None:
        """The rwxp string of the vma holding addr (None: no vma)."""
        with open("/proc/self/maps") as f:
            for ln in f:
                rng, perms = ln.split(maxsplit=2)[:2]
                lo, hi = (int(x, 16) for x in rng.split("-"))
                if lo <= addr < hi:
                    return perms
        return None

    @classmethod
    def fault_signal(cls, addr: int, write: bool) -> str:
        """Which signal a real access would get where process_vm_rw said EFAULT.

        EFAULT merges two kernel outcomes: no vma / wrong protection (SIGSEGV) and a fault that ended
        in VM_FAULT_SIGBUS or a poison marker (SIGBUS). /proc/self/maps tells them apart. On x86 any
        of PROT_READ/WRITE/EXEC makes a page loadable (vma_is_accessible), so only a vma with none of
        them refuses a load.
        """
        perms = cls._perms(addr)
        if perms is None:
            return "SIGSEGV"
        ok = perms[1] == "w" if write else perms[:3] != "---"
        return "SIGBUS" if ok else "SIGSEGV"

    @classmethod
    def touch_read(cls, addr: int, n: int) -> Touch:
        """Read through the fault path with process_vm_readv on ourselves: a signal becomes EFAULT.

        ``outcome`` is "ok", or the signal a plain load would have raised at the first failing byte.
        GUP refuses to read a vma without VM_READ, but an x86 load from a PROT_WRITE-only mapping
        succeeds; for such a vma each page is faulted in for write (MADV_POPULATE_WRITE, through the
        handler, data untouched) and then read through /proc/self/mem (FOLL_FORCE).
        """
        buf = ctypes.create_string_buffer(max(n, 1))
        try:
            k = dsys.process_vm_readv(os.getpid(), ctypes.addressof(buf), addr, n)
        except OSError as e:
            if e.errno != errno.EFAULT:
                raise
            k = 0
        if k == n:
            return Touch("ok", buf.raw[:k], k)
        data = buf.raw[:k]
        while k < n:
            at = addr + k
            perms = cls._perms(at)
            if perms is None or perms[:3] == "---":
                return Touch("SIGSEGV", data, k)
            if perms[0] == "r" or perms[1] != "w":
                return Touch("SIGBUS", data, k)  # readable for GUP, so the fault itself failed
            page = at & ~(PAGE - 1)
            chunk = min(n - k, page + PAGE - at)
            try:
                dsys.madvise(page, PAGE, dsys.MADV_POPULATE_WRITE)
                fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    got = os.pread(fd, chunk, at)
                finally:
                    os.close(fd)
            except OSError:
                return Touch("SIGBUS", data, k)
            data += got
            k += len(got)
            if len(got) < chunk:
                return Touch("SIGBUS", data, k)
        return Touch("ok", data, k)

    @classmethod
    def touch_write(cls, addr: int, data: bytes) -> Touch:
        """Write counterpart of :meth:`touch_read` (process_vm_writev)."""
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        try:
            k = dsys.process_vm_writev(os.getpid(), ctypes.addressof(buf), addr, len(data))
        except OSError as e:
            if e.errno != errno.EFAULT:
                raise
            return Touch(cls.fault_signal(addr, True), b"", 0)
        if k < len(data):
            return Touch(cls.fault_signal(addr + k, True), b"", k)
        return Touch("ok", b"", k)

    def touch_in_child(
        self, addr: int, write: bool = False, value: int = 0, timeout: float | None = None
    ) -> ChildTouch:
        """A plain one-byte load (or store of ``value``) in a forked child; reports how it ended.

        With EVENT_FORK the child's copy of every registered vma faults into the same handler, so
        the child sees exactly what a second process sharing the mapping would: data while alive,
        SIGBUS after kill. The fork itself waits for the handler to adopt the child's context.
        """
        self._check_open()
        if not self.features & dsys.UFFD_FEATURE_EVENT_FORK:
            raise ValueError(
                "touch_in_child needs MappingCore(event_fork=True): without it the child's "
                "mapping bypasses the handler"
            )
        r, w = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                self._child_access(addr, write, value, w)
            os.close(w)
            w = -1
            status = self._wait_child(pid, r, self.timeout if timeout is None else timeout)
            if status is None:
                return ChildTouch("timeout", None)
            data = os.read(r, 1)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        if self._ctl is not None:
            self._request(b"REAP")
        if os.WIFSIGNALED(status):
            return ChildTouch(signal.Signals(os.WTERMSIG(status)).name, None)
        return ChildTouch("ok" if data else f"exit {os.WEXITSTATUS(status)}", data[0] if data else None)

    @staticmethod
    def _child_access(addr: int, write: bool, value: int, w: int) -> NoReturn:  # pragma: no cover - child
        """The forked child's access. Signal handlers inherited from the parent (faulthandler's) are
        dropped, so that a SIGBUS kills the child by its default action and the wait status names
        it; and the child never returns into the parent's code: it always leaves by _exit, having
        written the value read to ``w`` if the access succeeded."""
        try:
            faulthandler.disable()
            signal.signal(signal.SIGBUS, signal.SIG_DFL)
            cell = ctypes.c_uint8.from_address(addr)
            if write:
                cell.value = value & 0xFF
            v = cell.value
            os.write(w, bytes([v]))
        finally:
            os._exit(0)

    @staticmethod
    def _wait_child(pid: int, r: int, timeout: float) -> int | None:
        """The child's wait status, or None if it was still blocked at the deadline (a fault nobody
        resolves): it is killed and reaped then, so no child outlives the call."""
        deadline = time.monotonic() + timeout
        while True:
            wpid, status = os.waitpid(pid, os.WNOHANG)
            if wpid:
                return status
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            select.select([r], [], [], 0.002)

    # --- shutdown ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap everything, stop the handler, close every fd. Idempotent."""
        with self._lock:
            if self.closed:
                return
            for m in list(self._maps):
                self.unmap(m)
            self.closed = True
            self._teardown_resources()

    def _teardown_resources(self) -> None:
        self._stopping = True
        if self._ctl is not None:
            try:
                with self._ctl_lock:
                    self._ctl.send(b"STOP")
                    self._ctl.recv(64)
            except OSError:
                pass
        if self._proc is not None:
            try:
                self._proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._watcher is not None:
            os.write(self._wake_w, b"x")
            self._watcher.join()
            self._watcher = None
        for fd in (self._pidfd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._pidfd = self._wake_r = self._wake_w = -1
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        for b in self._backings:
            if not b.closed:
                b.closed = True
                os.close(b.raw_fd)
        self._backings.clear()
        self._devices.clear()
        for fd in (self._uffd, self._hole_fd):
            if fd >= 0:
                os.close(fd)
        self._uffd = self._hole_fd = -1
        if self._table_addr:
            dsys.munmap(self._table_addr, TABLE_SIZE)
            self._table_addr = 0
        if self._table_fd >= 0:
            os.close(self._table_fd)
            self._table_fd = -1

    def __enter__(self) -> MappingCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
