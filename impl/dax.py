"""Device-DAX as real objects over a real mmap core: regions, devices, open files, vmas.

What this is: the executable counterpart of the spec (spec/) with real reference counts, a real
global minor ida, real shared mappings and real faults (impl/core.py via impl/vmcore.py). Lifetime
state is re-implemented with objects; the semantics come from the spec: the admin programs are the
spec profile's step lists (spec/profiles.py create/remove/bind/unbind/create_failed), walked step by
step and dispatched by name to a method of the same name (spec/admin.py defines what each step does);
the pure rules (check_vma, get_unmapped_area, may_split, the fops outcomes) are the spec's functions.

Objects and who pins whom (kernel-semantics.md 1.3): an open DaxFile pins the cdev kobject
(chrdev_open -> cdev_get); each VmArea pins its file (vma->vm_file); the cdev kobject pins its parent
device kobject from cdev_add (2f0157f "char_dev: pin parent kobject"); the device pins its region
(kref_get in devm_create_dax_dev) and its pseudo-inode (dax_inode_get / alloc_dax); the minor goes
back to the global ida only in release (v4.10 dax_dev_release; modern: the inode free path). So a
minor can never be reused while a file or vma of the old instance exists (spec invariant minor_unique).

Aliveness is separate from lifetime: ``alive`` lives in the core's shared table (MappingCore.set_alive)
so the handler process sees the store; the teardown is clear alive, a real SRCU grace period
(MappingCore.synchronize), then unmap_mapping_range (zap every vma of the device), then cdev_del,
unregister, and release on the last put (spec/admin.py; kernel-semantics 4).

Profiles: ``modern`` (default; bind/unbind cycles, alive only while device_dax is bound) and
``v4.10`` (alive from creation until provider removal). v4.7 is spec-only (its defects are findings).

Errors: syscall-like calls raise OSError(errno) exactly where the spec's outcome is an errno; bad
arguments (wrong type, negative size, unknown name) raise ValueError naming the field; what the
kernel itself would oops or WARN on raises KernelBug (e.g. M21: mmap through a file opened while the
modern device was not alive dereferences a NULL private_data).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Final, cast

import icontract

from devdax.spec import fops, geometry, mm
from devdax.spec.abi import LEGACY_MAP_MASK, MADV, MADV_NAMES, MAP, MAP_TYPE, MS, O_FLAGS, PROT, flags_of
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import Profile, get_profile

from . import contracts
from . import sys as dsys
from .core import Mapping
from .device import (
    D_NONE,
    D_RELEASED,
    DAX_MINOR_IDA,
    DaxRegion,
    DevDax,
    SharedBacking,
    dev_refs_exact,
    kobj_lookup,
    kobj_unmap_bus,
    region_refs_exact,
)
from .errors import KernelBug, StepFailed, check_int, os_error
from .event import Event
from .fault_policy import VMA_NOHUGE
from .ida import Ida
from .kobject import Kref
from .table import C
from .tracelog import TraceLog
from .vmcore import VmCore, claim

ON: Final = contracts.ENABLED
PAGE: Final = geometry.PAGE_SIZE
K4: Final = geometry.PAGE_SIZE
M2: Final = geometry.PMD_SIZE
G1: Final = geometry.PUD_SIZE
ALIGNS: Final = (K4, M2, G1)
IMPL_PROFILES: Final = ("v4.10", "modern")
DEFAULT_PROFILE: Final = "modern"

# ------------------------------------------------------------------------------ flag vocabularies --

# The uapi tables (PROT, MAP, MADV, MS, O_FLAGS) live in spec/abi.py, shared with the scenario
# backends; impl re-exports them under the names its callers already use.


def real_prot(prot: int) -> int:
    """The protection the real mapping gets. x86 page tables cannot express write-only or
    execute-only: any of them is also readable by a plain load, which is what the spec models
    (a vma is readable unless PROT_NONE). GUP (process_vm_readv) checks VM_READ instead, so the
    real vma gets PROT_READ whenever the user asked for any access."""
    return prot | dsys.PROT_READ if prot & (dsys.PROT_WRITE | dsys.PROT_EXEC) else prot


#: what the handler's counters of kernel reports become in dmesg (DaxBus.scan_handler)
HANDLER_REPORTS: Final = (
    (
        C.SLEEP_IN_ATOMIC,
        "BUG: sleeping function called from invalid context at mm/memory.c "
        "(dax_dev_huge_fault -> vm_insert_mixed -> pte_alloc inside rcu_read_lock)",
    ),
    (
        C.LOCK_HELD_RETURN,
        "WARNING: lock held when returning to user space! (dax_srcu, taken in dax_dev_huge_fault)",
    ),
)


# ----------------------------------------------------------------------------------------- file --


def _file_refs_exact(self: DaxFile) -> bool:
    f = self
    if f.f_count.released:
        return True
    return f.f_count.count == int(f.fd_open) + len(f.areas)


@icontract.invariant(_file_refs_exact, "f_count == fd + vmas", enabled=ON)
class DaxFile:
    """An open struct file of /dev/daxX.Y: f_count = the fd plus one per vma; private_data is the
    device dax_open stored (None: modern dax_get_private() of a dead device, M21)."""

    def __init__(self, bus: DaxBus, dev: DevDax, readable: bool, writable: bool, flags: int) -> None:
        self.bus = bus
        self.dev = dev
        self.readable = readable
        self.writable = writable
        self.flags = flags
        self.fd_open = True
        self.number = bus._next_file()
        self.name = f"file{self.number}"
        self.f_count = Kref(f"file{self.number}", self._last_fput)
        self.private_data: DevDax | None = dev
        self.areas: list[VmArea] = []
        self.pos = 0

    @property
    def closed(self) -> bool:
        return not self.fd_open

    def _last_fput(self) -> None:
        """__fput(): dax_release() does nothing; the VFS then drops what chrdev_open took."""
        self.bus._log("release", self.name)
        self.dev.files.discard(self)
        self.dev._cdev_put()

    def _get(self) -> None:
        self.f_count.get()

    def _put(self) -> None:
        self.f_count.put()

    def _need_fd(self) -> None:
        if not self.fd_open:
            raise os_error(errno.EBADF, f"{self.name} is closed")

    # --- fops ----------------------------------------------------------------------------------------
    @icontract.ensure(lambda self: not self.fd_open, enabled=ON)
    def close(self) -> None:
        """close(fd): the vmas made through it keep the file (and so the device) alive."""
        with self.bus._lock:
            self._need_fd()
            self.fd_open = False
            self.bus._log("close", self.name)
            self._put()

    def read(self, length: int) -> bytes:
        """read(2): dax_fops has no ->read (spec/fops.py)."""
        check_int("length", length)
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.read(self.readable)), f"read on {self.name}")

    def write(self, data: bytes | int) -> int:
        """write(2): dax_fops has no ->write."""
        if not isinstance(data, bytes | bytearray | int) or isinstance(data, bool):
            raise ValueError(f"data: expected bytes or a length, got {type(data).__name__}")
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.write(self.writable)), f"write on {self.name}")

    def fsync(self) -> None:
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.fsync()), f"fsync on {self.name}")

    def lseek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """noop_llseek: returns the current position and never fails."""
        check_int("offset", offset, lo=-(1 << 63), hi=(1 << 63) - 1)
        check_int("whence", whence, 0, 4)
        with self.bus._lock:
            self._need_fd()
            assert fops.lseek() == "ok"
            return self.pos

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        check_int("mode", mode)
        check_int("offset", offset)
        check_int("length", length)
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.fallocate(self.writable)), f"fallocate on {self.name}")

    def ioctl(self, request: int) -> int:
        check_int("request", request)
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.ioctl()), f"ioctl on {self.name}")

    # --- mmap ----------------------------------------------------------------------------------------
    @icontract.ensure(lambda result: all(a.mayshare for a in result.areas), "vmas are shared", enabled=ON)
    @icontract.ensure(
        lambda self, result: all(
            a.start % self.dev.align == 0 and a.end % self.dev.align == 0 for a in result.areas
        ),
        "vmas are aligned on creation",
        enabled=ON,
    )
    def mmap(self, length: int, prot: int, flags: int, offset: int = 0, fixed_addr: int | None = None) -> Vma:
        """mmap(2) in the spec's order (spec/vma.py do_mmap): map type; length/offset; EACCES;
        MAP_SHARED_VALIDATE flags; fixed address; dax_get_unmapped_area; dax_mmap -> check_vma."""
        check_int("length", length, 0, 1 << 47)
        check_int("prot", prot, 0, 0xF)
        check_int("flags", flags, 0, (1 << 32) - 1)
        check_int("offset", offset, 0, 1 << 62)
        if fixed_addr is not None:
            check_int("fixed_addr", fixed_addr, 0, (1 << 47) - 1)
        with self.bus._lock:
            self._need_fd()
            return self._mmap(length, prot, flags, offset, fixed_addr)

    def _mmap(self, length: int, prot: int, flags: int, offset: int, fixed_addr: int | None) -> Vma:
        bus = self.bus
        prof = self.dev.region.profile
        mtype = flags & MAP_TYPE
        if mtype == 0 or flags & MAP["MAP_HUGETLB"]:
            raise os_error(errno.EINVAL, "one of MAP_SHARED/MAP_PRIVATE/MAP_SHARED_VALIDATE; no MAP_HUGETLB")
        if length == 0 or offset % PAGE:
            raise os_error(errno.EINVAL, f"length {length:#x} / offset {offset:#x}")
        length = geometry.round_up(length, PAGE)
        shared = mtype != MAP["MAP_PRIVATE"]
        write = bool(prot & PROT["PROT_WRITE"])
        if not self.readable or (shared and write and not self.writable):
            raise os_error(errno.EACCES, "do_mmap: FMODE_READ, or PROT_WRITE|MAP_SHARED needs FMODE_WRITE")
        if mtype == MAP["MAP_SHARED_VALIDATE"]:
            supported = LEGACY_MAP_MASK | (MAP["MAP_SYNC"] if prof.map_sync else 0)
            if flags & MAP["MAP_SYNC"] and not prof.map_sync:
                raise os_error(errno.EOPNOTSUPP, "MAP_SYNC not in mmap_supported_flags")
            if flags & ~supported & ~MAP["MAP_FIXED_NOREPLACE"]:
                raise os_error(errno.EOPNOTSUPP, f"flags {flags & ~supported:#x} not supported")
        fixed = bool(flags & (MAP["MAP_FIXED"] | MAP["MAP_FIXED_NOREPLACE"]))
        hint = fixed_addr or 0
        if fixed and fixed_addr is None:
            raise ValueError("fixed_addr: MAP_FIXED needs an address")
        if hint % PAGE:
            raise os_error(errno.EINVAL, f"address {hint:#x} not page aligned")
        dev = self.private_data
        align = self.dev.align
        place = _Placement(
            bus, length, offset // PAGE, align, hint, fixed, bool(flags & MAP["MAP_FIXED_NOREPLACE"])
        )
        try:
            start = place.start()
            if dev is None:
                raise KernelBug(f"null deref: dax_mmap -> check_vma(NULL) on {self.name} of {self.dev.name}")
            noreserve = bool(flags & MAP["MAP_NORESERVE"])
            vflags = geometry.VmaFlags.from_mmap(shared, write, self.writable, noreserve)
            rc = geometry.check_vma(dev.alive, vflags, start, start + length, align, prof.private_test)
            if rc:
                raise os_error(-rc, f"check_vma on {dev.name} at {start:#x}+{length:#x}")
            place.commit()
            m = bus.core.map_at(dev.slot, start, length, offset // PAGE, real_prot(prot & 7), self.writable)
        except BaseException:
            place.abort()
            raise
        area = VmArea(
            self,
            m,
            read=prot != 0,
            write=write,
            exec_=bool(prot & PROT["PROT_EXEC"]),
            shared=vflags.shared,
            mayshare=vflags.mayshare,
        )
        self._get()  # get_file(): the vma pins the file
        self.areas.append(area)
        v = Vma(self, start, [area])
        bus._areas.add(area)
        bus._log("mmap", self.name, f"{start:#x}+{length:#x} pgoff {offset // PAGE}")
        if flags & MAP["MAP_POPULATE"]:
            v._populate(start, start + length, write=False, strict=False)
        return v


class _Placement:
    """get_unmapped_area for one mmap: a hint is used if free, MAP_FIXED takes its address (after
    unmapping our own vmas there; memory this emulation does not own is refused with EEXIST, since
    clobbering the interpreter's heap is no emulation), NULL goes through dax_get_unmapped_area."""

    def __init__(
        self, bus: DaxBus, length: int, pgoff: int, align: int, hint: int, fixed: bool, noreplace: bool
    ) -> None:
        self.bus, self.length, self.pgoff, self.align = bus, length, pgoff, align
        self.hint, self.fixed, self.noreplace = hint, fixed, noreplace
        self.res: list[tuple[int, int]] = []  # reservations to release on abort / after commit
        self.addr = 0
        self.evict: list[VmArea] = []

    def _mm_alloc(self, n: int) -> int:
        """mm->get_unmapped_area: a page-aligned address with no further alignment promised. The
        spec's allocator answers one page past a 1G boundary (spec/config.py MM_WINDOW), so that a
        result is never aligned by luck; this one does the same, deterministically (a plain mmap
        would often be 2M-aligned: anonymous THP alignment), in a PROT_NONE reservation."""
        span = n + G1 + PAGE
        a = dsys.mmap(0, span, dsys.PROT_NONE, dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS | dsys.MAP_NORESERVE)
        self.res.append((a, span))
        return ((a + G1 - 1) & ~(G1 - 1)) + PAGE

    def start(self) -> int:
        if self.fixed:
            self.addr = self.hint
            if claim(self.hint, self.length):
                self.res.append((self.hint, self.length))
                return self.addr
            if self.noreplace:
                raise os_error(errno.EEXIST, f"MAP_FIXED_NOREPLACE: {self.hint:#x} is in use")
            mine = [a for a in self.bus._areas if a.start < self.hint + self.length and self.hint < a.end]
            covered = sum(min(a.end, self.hint + self.length) - max(a.start, self.hint) for a in mine)
            if covered != self.length:
                raise os_error(
                    errno.EEXIST, f"MAP_FIXED over memory this emulation does not own: {self.hint:#x}"
                )
            self.evict = mine
            return self.addr
        if self.hint and claim(self.hint, self.length):
            self.res.append((self.hint, self.length))
            self.addr = self.hint
            return self.addr
        self.addr = geometry.dax_get_unmapped_area(0, self.length, self.pgoff, self.align, self._mm_alloc)
        return self.addr

    def commit(self) -> None:
        """check_vma passed: unmap what MAP_FIXED replaces, release the slack of the reservation."""
        lo, hi = self.addr, self.addr + self.length
        for area in self.evict:
            area.handle._unmap_range(max(lo, area.start), min(hi, area.end), check=False)
        if self.evict:
            self.res.append((lo, self.length) if claim(lo, self.length) else (0, 0))
        for a, n in self.res:
            if n and a < lo:
                dsys.munmap(a, min(n, lo - a))
            if n and a + n > hi:
                s = max(a, hi)
                dsys.munmap(s, a + n - s)
        self.res = []

    def abort(self) -> None:
        for a, n in self.res:
            if n:
                dsys.munmap(a, n)
        self.res = []


# ------------------------------------------------------------------------------------------ vma --


class VmArea:
    """One kernel vma: a core Mapping plus the vm flags the mm and the driver read."""

    def __init__(
        self,
        file: DaxFile,
        m: Mapping,
        *,
        read: bool,
        write: bool,
        exec_: bool,
        shared: bool,
        mayshare: bool,
        dontcopy: bool = False,
        nohuge: bool = False,
    ) -> None:
        self.file = file
        self.m = m
        self.read, self.write, self.exec_ = read, write, exec_
        self.shared, self.mayshare = shared, mayshare
        self.dontcopy, self.nohuge = dontcopy, nohuge
        self.handle: Vma = cast("Vma", None)

    @property
    def start(self) -> int:
        return self.m.addr

    @property
    def end(self) -> int:
        return self.m.end

    @property
    def pgoff(self) -> int:
        return self.m.pgoff

    def copy(self, m: Mapping) -> VmArea:
        a = VmArea(
            self.file,
            m,
            read=self.read,
            write=self.write,
            exec_=self.exec_,
            shared=self.shared,
            mayshare=self.mayshare,
            dontcopy=self.dontcopy,
            nohuge=self.nohuge,
        )
        a.handle = self.handle
        return a

    def prot(self) -> int:
        return (1 if self.read else 0) | (2 if self.write else 0) | (4 if self.exec_ else 0)

    def __repr__(self) -> str:
        return f"VmArea({self.start:#x}-{self.end:#x} pgoff {self.pgoff} {self.file.name})"


def _handle_ok(self: Vma) -> bool:
    v = self
    return all(a.handle is v and a.file.f_count.count > 0 for a in v.areas)


@icontract.invariant(_handle_ok, "every vma of a handle pins a live file", enabled=ON)
class Vma:
    """What mmap(2) returned: the range at ``base`` and the kernel vmas it consists of now (one,
    until munmap/mprotect/madvise/mremap cut it). Range calls take offsets relative to ``base``."""

    def __init__(self, file: DaxFile, base: int, areas: list[VmArea]) -> None:
        self.file = file
        self.bus = file.bus
        self.base = base
        self.areas = areas
        for a in areas:
            a.handle = self
        self.length = sum(a.end - a.start for a in areas)

    @property
    def addr(self) -> int:
        return self.base

    @property
    def unmapped(self) -> bool:
        return not self.areas

    def _ctx(self, align: int) -> Ctx:
        return cast(Ctx, SimpleNamespace(prof=self.file.dev.region.profile, align=align))

    def _area_at(self, addr: int) -> VmArea | None:
        for a in self.areas:
            if a.start <= addr < a.end:
                return a
        return None

    def _hit(self, lo: int, hi: int) -> list[VmArea]:
        return sorted((a for a in self.areas if a.start < hi and lo < a.end), key=lambda a: a.start)

    @staticmethod
    def _covered(lo: int, hi: int, areas: list[VmArea]) -> bool:
        at = lo
        for a in sorted(areas, key=lambda a: a.start):
            if a.start > at:
                return False
            at = max(at, a.end)
        return at >= hi

    def _may_split_all(self, lo: int, hi: int, areas: list[VmArea]) -> bool:
        for a in areas:
            for cut in (lo, hi):
                if a.start < cut < a.end and not mm.may_split(self._ctx(a.file.dev.align), cut):
                    return False
        return True

    def _range(self, offset: int, length: int) -> tuple[int, int]:
        check_int("offset", offset, -(1 << 47), 1 << 47)
        check_int("length", length, 0, 1 << 47)
        lo = self.base + offset
        return lo, lo + geometry.round_up(length, PAGE)

    def _split_at(self, a: VmArea, cut: int) -> VmArea:
        """__split_vma: the tail becomes its own vma and takes a file reference (spec mm.change)."""
        t = a.copy(self.bus.core.split(a.m, cut))
        a.file._get()
        a.file.areas.append(t)
        self.areas.append(t)
        self.bus._areas.add(t)
        return t

    def _carve(self, a: VmArea, lo: int, hi: int) -> VmArea:
        """Split a so that [max(lo, start), min(hi, end)) is one vma; returns that middle vma."""
        if a.start < lo < a.end:
            a = self._split_at(a, lo)
        if a.start < hi < a.end:
            self._split_at(a, hi)
        return a

    def _drop(self, a: VmArea) -> None:
        """munmap of one whole vma: entries go with it, then vm_ops->close / fput.

        The core waits for handler faults in flight on the vma first (the kernel's munmap holds
        mmap_lock for write, a fault holds it for read: MappingCore._mm_write), and the munmap
        event is logged at the core's linearization point. The vma's file reference goes only
        after that, so a fault never runs on a vma whose file (and device) may be released; the
        last munmap of a closed file is also how its last reference goes (__fput)."""
        start, length = a.start, a.end - a.start
        try:
            self.bus.core.unmap(
                a.m, point=lambda: self.bus._log("munmap", a.file.name, f"{start:#x}+{length:#x}")
            )
        finally:
            if a.m.closed:
                self.areas.remove(a)
                self.bus._areas.discard(a)
                a.file.areas.remove(a)
                a.file._put()

    def _unmap_range(self, lo: int, hi: int, check: bool = True) -> None:
        areas = self._hit(lo, hi)
        if check and not self._may_split_all(lo, hi, areas):
            raise os_error(errno.EINVAL, "dev_dax_may_split: misaligned cut")
        for a in areas:
            self._drop(self._carve(a, lo, hi))

    # --- range calls -------------------------------------------------------------------------------
    @icontract.ensure(
        lambda self, offset, length: (
            not self._hit(
                self.base + offset, self.base + offset + (self.length if length is None else length)
            )
        ),
        "nothing of this handle is mapped in the range any more",
        enabled=ON,
    )
    def munmap(self, offset: int = 0, length: int | None = None) -> None:
        """munmap(base+offset, length): the whole handle by default; EINVAL for a misaligned cut."""
        with self.bus._lock:
            length = self.length if length is None else length
            lo, hi = self._range(offset, length)
            if length == 0 or mm.check_range(lo, length):
                raise os_error(errno.EINVAL, f"munmap({lo:#x}, {length:#x})")
            self._unmap_range(lo, hi)

    def mprotect(self, offset: int, length: int, prot: int) -> None:
        check_int("prot", prot, 0, 7)
        with self.bus._lock:
            lo, hi = self._range(offset, length)
            if mm.check_range(lo, length):
                raise os_error(errno.EINVAL, f"mprotect({lo:#x})")
            areas = self._hit(lo, hi)
            if not self._covered(lo, hi, areas):
                raise os_error(errno.ENOMEM, "mprotect: range not fully mapped")
            write = bool(prot & 2)
            for a in areas:
                if write and a.mayshare and not a.file.writable:
                    raise os_error(
                        errno.EACCES, "mprotect: PROT_WRITE on a shared mapping of an O_RDONLY file"
                    )
            if not self._may_split_all(lo, hi, areas):
                raise os_error(errno.EINVAL, "dev_dax_may_split: misaligned cut")
            for a in areas if hi > lo else []:  # a zero length changes nothing (mm.change)
                mid = self._carve(a, lo, hi)
                self.bus.core.set_prot(mid.m, real_prot(prot))
                mid.read, mid.write, mid.exec_ = prot != 0, write, bool(prot & 4)

    def madvise(self, offset: int, length: int, advice: int) -> None:
        """madvise(2) by advice, as spec/mm.py madvise and the model backend decide."""
        check_int("advice", advice, 0, 1 << 16)
        name = MADV_NAMES.get(advice, "")
        with self.bus._lock:
            lo, hi = self._range(offset, length)
            if mm.check_range(lo, length):
                raise os_error(errno.EINVAL, f"madvise({lo:#x})")
            areas = self._hit(lo, hi)
            if name in ("MADV_POPULATE_READ", "MADV_POPULATE_WRITE"):
                if not self._covered(lo, hi, areas):
                    raise os_error(errno.ENOMEM, "madvise populate: range not fully mapped")
                self._populate(lo, hi, write=name.endswith("WRITE"), strict=True)
                return
            if not areas:
                raise os_error(errno.ENOMEM, "madvise: no vma in range")
            if name in ("MADV_DONTFORK", "MADV_DOFORK", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE"):
                if not self._may_split_all(lo, hi, areas):
                    raise os_error(errno.EINVAL, "dev_dax_may_split: misaligned cut")
                for a in areas if hi > lo else []:
                    mid = self._carve(a, lo, hi)
                    self._apply_flag(mid, name)
            else:
                for a in areas:
                    self._advise(a, max(lo, a.start), min(hi, a.end), name)
            if not self._covered(lo, hi, self._hit(lo, hi)):
                raise os_error(errno.ENOMEM, "madvise: part of the range is not mapped")

    def _apply_flag(self, a: VmArea, name: str) -> None:
        core = self.bus.core
        if name == "MADV_DONTFORK":
            dsys.madvise(a.start, a.end - a.start, dsys.MADV_DONTFORK)
            a.dontcopy = True
        elif name == "MADV_DOFORK":
            dsys.madvise(a.start, a.end - a.start, dsys.MADV_DOFORK)
            a.dontcopy = False
        elif name == "MADV_NOHUGEPAGE":
            core.set_flags(a.m, set_bits=VMA_NOHUGE)
            a.nohuge = True
        else:
            core.set_flags(a.m, clear_bits=VMA_NOHUGE)
            a.nohuge = False

    def _advise(self, a: VmArea, lo: int, hi: int, name: str) -> None:
        if name in ("MADV_DONTNEED", "MADV_DONTNEED_LOCKED"):
            dsys.madvise(lo, hi - lo, dsys.MADV_DONTNEED)  # zap_page_range_single; data stays
        elif name in (
            "MADV_COLD",
            "MADV_PAGEOUT",
            "MADV_KEEPONFORK",
            "MADV_NORMAL",
            "MADV_RANDOM",
            "MADV_SEQUENTIAL",
            "MADV_WILLNEED",
        ):
            pass
        elif name == "MADV_REMOVE":
            if not (a.mayshare and a.file.writable):
                raise os_error(errno.EACCES, "MADV_REMOVE needs a shared writable mapping")
            raise os_error(
                getattr(errno, fops.fallocate(True)), "MADV_REMOVE -> vfs_fallocate on a char device"
            )
        else:
            raise os_error(errno.EINVAL, f"madvise advice {name or '?'} not valid for a device-dax vma")

    def _populate(self, lo: int, hi: int, write: bool, strict: bool) -> None:
        """Fault every unit of [lo, hi) in through the handler (MAP_POPULATE ignores failures;
        MADV_POPULATE_*: a SIGBUS is EFAULT, faultin_page_range)."""
        core = self.bus.core
        areas = self._hit(lo, hi)
        if all(a.read and (a.write or not write) for a in areas):
            try:
                dsys.madvise(lo, hi - lo, dsys.MADV_POPULATE_WRITE if write else dsys.MADV_POPULATE_READ)
                self.bus.scan_handler()
                return
            except OSError:
                pass
        for a in areas:
            unit = max(a.file.dev.align, PAGE)
            at = max(lo, a.start)
            while at < min(hi, a.end):
                bad = not a.read or (write and not a.write)  # the access would SIGSEGV
                if (bad or core.touch_read(at, 1).outcome != "ok") and strict:
                    self.bus.scan_handler()
                    raise os_error(errno.EFAULT, f"populate: fault failed at {at:#x}")
                at = (at // unit + 1) * unit
        self.bus.scan_handler()

    def msync(self, offset: int, length: int, flags: int) -> None:
        check_int("flags", flags, 0, 0xFFFF)
        with self.bus._lock:
            names = frozenset(n for n, v in MS.items() if flags & v)
            bad = fops.msync_flags(names) or ("EINVAL" if flags & ~7 else None)
            lo, hi = self._range(offset, length)
            if bad or mm.check_range(lo, length):
                raise os_error(errno.EINVAL, f"msync flags {flags:#x} at {lo:#x}")
            areas = self._hit(lo, hi)
            for a in areas:
                out = fops.msync_vma(names, a.shared)
                if out != "ok":
                    raise os_error(getattr(errno, out), "msync(MS_SYNC) -> vfs_fsync_range -> no ->fsync")
            if not self._covered(lo, hi, areas):
                raise os_error(errno.ENOMEM, "msync: part of the range is not mapped")

    def mremap(self, offset: int, old_length: int, new_length: int, may_move: bool = False) -> int:
        """mremap(2): shrinking is a cut (may_split); growing asks no driver hook, so an unaligned
        new end is accepted and every later fault SIGBUSes (check_vma). Returns the new address."""
        check_int("new_length", new_length, 0, 1 << 47)
        with self.bus._lock:
            lo, old_end = self._range(offset, old_length)
            if mm.check_range(lo, old_length) or new_length == 0:
                raise os_error(errno.EINVAL, "mremap: bad address or zero length")
            new_end = lo + geometry.round_up(new_length, PAGE)
            a = self._area_at(lo)
            if a is None or old_end > a.end:
                raise os_error(errno.EFAULT, "mremap: the old range is not inside one vma")
            if new_end < old_end:
                self._unmap_range(new_end, old_end)
            elif new_end > old_end:
                if old_end != a.end:
                    code = errno.EFAULT if may_move else errno.ENOMEM
                    raise os_error(code, "mremap: cannot grow in the middle of a vma")
                if not self.bus.core.grow(a.m, a.m.length + (new_end - old_end)):
                    if not may_move:
                        raise os_error(errno.ENOMEM, "mremap: no room to grow in place")
                    self._move(a, lo, new_end - lo)
            self.length = max((x.end for x in self.areas), default=self.base) - self.base
            return self.base

    def _move(self, a: VmArea, lo: int, new_len: int) -> None:
        """MREMAP_MAYMOVE: the vma [lo, end) moves to a new address with its new length. Installed
        entries are not carried over (they refault through the handler: same data, same outcome)."""
        if lo != a.start:
            if not mm.may_split(self._ctx(a.file.dev.align), lo):
                raise os_error(errno.EINVAL, "dev_dax_may_split: misaligned cut")
            a = self._split_at(a, lo)
        core = self.bus.core
        from .vmcore import reserve

        addr = reserve(new_len, a.file.dev.align)
        try:
            m = core.map_at(
                a.m.dev, addr, new_len, a.pgoff, a.m.prot, a.file.writable, core.flags(a.m) & VMA_NOHUGE
            )
        except BaseException:
            dsys.munmap(addr, new_len)
            raise
        b = a.copy(m)
        if b.dontcopy:
            dsys.madvise(b.start, b.end - b.start, dsys.MADV_DONTFORK)
        a.file._get()
        a.file.areas.append(b)
        self.areas.append(b)
        self.bus._areas.add(b)
        self._drop(a)
        if lo == self.base:
            self.base = addr

    # --- accesses ----------------------------------------------------------------------------------
    def _access_check(self, offset: int, write: bool) -> tuple[int, str | None]:
        check_int("offset", offset, -(1 << 47), 1 << 47)
        addr = self.base + offset
        a = self._area_at(addr)
        if a is None:
            return addr, "SIGSEGV"  # no vma: SEGV_MAPERR
        if (write and not a.write) or not a.read:
            return addr, "SIGSEGV"  # SEGV_ACCERR
        return addr, None

    def touch(self, offset: int, write: bool = False, value: int | None = None) -> str:
        """One byte at base+offset: "ok", "SIGBUS" or "SIGSEGV". The access really happens (through
        the handler's fault path when the unit is not installed); a signal is reported, not taken."""
        if value is not None:
            check_int("value", value, 0, 255)
        with self.bus._lock:
            addr, bad = self._access_check(offset, write)
            if bad:
                return bad
            core = self.bus.core
            logging = self.bus.events is not None
            before = core.counters() if logging else {}
            if write:
                if value is None:
                    t = core.touch_read(addr, 1)
                    if t.outcome == "ok":
                        t = core.touch_write(addr, t.data)
                else:
                    t = core.touch_write(addr, bytes([value]))
            else:
                t = core.touch_read(addr, 1)
            if logging:
                self.bus._log_fault(self.file.dev, before, core.counters(), t.outcome)
            self.bus.scan_handler()
            return t.outcome

    def read_byte(self, offset: int) -> tuple[str, int | None]:
        """(outcome, the byte) of a load at base+offset."""
        with self.bus._lock:
            addr, bad = self._access_check(offset, False)
            if bad:
                return bad, None
            t = self.bus.core.touch_read(addr, 1)
            self.bus.scan_handler()
            return t.outcome, (t.data[0] if t.outcome == "ok" else None)

    def check(self, offset: int, value: int) -> str:
        """Load the byte at base+offset: "ok" if it equals value, "mismatch", or the signal."""
        check_int("value", value, 0, 255)
        outcome, got = self.read_byte(offset)
        if outcome != "ok":
            return outcome
        return "ok" if got == value else "mismatch"

    def fork_touch(self, offset: int, write: bool = False) -> str:
        """fork(); the child does one plain load (or a store of the byte it finds) and exits: its
        outcome. A VM_DONTCOPY vma is not in the child at all (SIGSEGV)."""
        with self.bus._lock:
            addr, bad = self._access_check(offset, write)
            a = self._area_at(addr)
            if a is None or a.dontcopy:
                return "SIGSEGV"
            if bad:
                return bad
            core = self.bus.core
            value = 0
            if write:
                t = core.touch_read(addr, 1)
                value = t.data[0] if t.outcome == "ok" else 0
            r = core.touch_in_child(addr, write=write, value=value)
            self.bus.scan_handler()
            if r.outcome == "ok":
                return "ok"
            if r.outcome in ("SIGBUS", "SIGSEGV"):
                return r.outcome
            raise os_error(errno.EIO, f"fork_touch: child ended {r.outcome}")

    def view(self, offset: int = 0, length: int | None = None) -> memoryview:
        """A memoryview over live mapped memory (plain Python access; faults go to the handler).
        A touch of a dead device through it raises SIGBUS in this process: use touch() to probe."""
        import ctypes

        with self.bus._lock:
            length = (self.length - offset) if length is None else length
            lo = self.base + offset
            if not self._covered(lo, lo + length, self._hit(lo, lo + length)):
                raise os_error(errno.EFAULT, "view: range not fully mapped")
            return memoryview((ctypes.c_char * length).from_address(lo)).cast("B")


# ------------------------------------------------------------------------------------------ bus --


def _owned(bus: DaxBus, obj: object, field: str) -> None:
    """A region or device of ``bus``, or a ValueError naming the argument: an object of another bus
    would be acted on under this bus's lock, against that bus's state (issue 14, class 6). A plain
    function, not a method: icontract checks the bus invariant around every method call, and this
    check runs before the caller takes the lock."""
    want = DaxRegion if field == "region" else DevDax
    if not isinstance(obj, want):
        raise ValueError(f"{field}: expected a {want.__name__}, got {type(obj).__name__}")
    region = obj if isinstance(obj, DaxRegion) else obj.region
    if region.bus is not bus:
        raise ValueError(f"{field}: {getattr(obj, 'name', obj)!s} belongs to another DaxBus")


def _bus_problem(self: DaxBus) -> str:
    """The spec's lifetime invariants over everything the bus holds (checked after each admin and
    file operation, not inside one: a step is atomic, its insides are not): refcount_exact_all for
    regions, devices and cdevs; a killed device is not alive; minors held are unique. Returns the
    first violation, or "" when there is none."""
    if self.closed or self.closing:
        return ""
    minors: set[int] = set()
    for r in self.regions:
        if not region_refs_exact(r):
            return f"refcount_exact_all: {r.name} kref {r.kref.count} is not its number of holders"
        for d in r.devices:
            if not dev_refs_exact(d):
                return (
                    f"refcount_exact_all: {d.name} device kobject {d.dev_kobj.count} / cdev "
                    f"{d.cdev.count} are not their numbers of holders"
                )
            if d.dead and d.alive:
                return f"{d.name} is killed but alive"
            if d.minor_held:
                if d.minor in minors:
                    return f"minor {d.minor} is held twice"
                minors.add(d.minor)
    return ""


def _bus_consistent(self: DaxBus) -> bool:
    return not _bus_problem(self)


OK_BUS = icontract.ensure(
    lambda self: _bus_consistent(self),
    "refcounts exact, killed dead, minors unique",
    error=lambda self: icontract.ViolationError(
        f"bus contract (refcounts exact, killed dead, minors unique)\n{_bus_problem(self)}"
    ),
    enabled=ON,
)


class DaxBus:
    """The driver instance of one process: the mmap core (handler process), regions, the minor ida,
    the open files and vmas, and the optional event log. Every admin call runs a spec program."""

    def __init__(
        self,
        *,
        workers: int = 2,
        timeout: float = 10.0,
        events: list[Event] | None = None,
        minor_ida: Ida | None = None,
        mm_first_fault: int | None = None,
    ) -> None:
        """``mm_first_fault``: None, the emulated mm asks the largest fault size whose block lies
        inside the vma (handler.mm_fault_size); a size (4K, 2M, 1G): it asks that size first for every
        fault, as the spec's Config.first_fault and the 4.x mm (tests that compare with the spec)."""
        if mm_first_fault is not None and mm_first_fault not in ALIGNS:
            raise ValueError(f"mm_first_fault: expected 4K, 2M or 1G, got {mm_first_fault!r}")
        # every argument is checked before the handler process, the userfaultfd and the memfd exist:
        # a bad one must not leave them behind (issue 14, class 5)
        check_int("workers", workers, 1, 64)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 1e6:
            raise ValueError(f"timeout: expected seconds in (0, 1e6), got {timeout!r}")
        if events is not None and not callable(getattr(events, "append", None)):
            raise ValueError(f"events: expected a list (with append) or None, got {events!r}")
        ida_ok = all(callable(getattr(minor_ida, m, None)) for m in ("alloc", "free"))
        if minor_ida is not None and not ida_ok:
            raise ValueError(f"minor_ida: expected an Ida (alloc, free) or None, got {minor_ida!r}")
        self.core = VmCore(workers, timeout=timeout)
        self.core.table.t.hdr.mm_first = mm_first_fault or 0
        self._reported = {c: 0 for c, _ in HANDLER_REPORTS}
        self.events = events
        self.minor_ida = minor_ida if minor_ida is not None else DAX_MINOR_IDA
        self._lock = threading.RLock()
        self._region_ids = Ida("dax_region_ids")
        self.regions: list[DaxRegion] = []
        self._backings: list[SharedBacking] = []
        self._areas: set[VmArea] = set()
        self._files = 0
        self.fail_device_add = False
        #: the admin task has a fatal signal pending: a killable lock in a step fails (M16 only)
        self.fatal_signal_pending = False
        self.dmesg: list[str] = []
        self.closing = False
        self.closed = False

    # --- bookkeeping -------------------------------------------------------------------------------
    def _log(self, kind: str, obj: str, detail: str = "") -> None:
        if self.events is None:
            return
        tr = self._tracer()
        if tr is None:
            self.events.append(Event(kind, obj, detail))
            return
        with tr.section():
            self.events.append(Event(kind, obj, detail, tr.take()))

    def _tracer(self) -> TraceLog | None:
        """The shared trace log when trace validation switched it on (impl/tracelog.py)."""
        core = self.core
        if core.closed:
            return None
        tr = core.table.trace
        return tr if tr.on else None

    def _linearize(self) -> contextlib.AbstractContextManager[None]:
        """A block that is one linearization point: done inside the trace log's critical section, so
        no handler point falls between the operation and its event (a no-op when not tracing)."""
        tr = self._tracer()
        return tr.section() if tr is not None else contextlib.nullcontext()

    def _warn(self, msg: str) -> None:
        """A kernel WARN the emulation survives (as the kernel does): kept like dmesg."""
        self.dmesg.append(msg)
        self._log("warn", "kernel", msg)

    def _log_fault(self, dev: DevDax, before: dict[str, int], after: dict[str, int], outcome: str) -> None:
        """The handler's linearization points for the faults one access caused, in the order it ran
        them under the read lock (reconstructed from its counters: they happen in another process)."""
        if self.events is None:
            return
        n = after["faults"] - before["faults"]
        installs = sum(after[k] - before[k] for k in ("install_pte", "install_pmd", "install_pud"))
        sigbus = after["sigbus"] - before["sigbus"]
        for i in range(n):
            self._log("fault_lock", dev.name)
            ok = i < installs
            self._log("alive_check", dev.name, "alive" if ok or sigbus == 0 else "sigbus")
            if ok:
                self._log("insert", dev.name)
            self._log("unlock", dev.name, "NOPAGE" if ok else "SIGBUS")
        _ = outcome

    def scan_handler(self) -> None:
        """Turn the handler's new kernel reports (its counters: an install inside a non-sleepable
        read section, a fault returning with a read lock held) into dmesg lines, as the kernel
        prints them when CONFIG_DEBUG_ATOMIC_SLEEP / lockdep are on. Called after every access."""
        if self.core.closed:
            return
        for c, msg in HANDLER_REPORTS:
            n = sum(int(w.counters[c]) for w in self.core.table.t.workers)
            if n > self._reported[c]:
                self._reported[c] = n
                self._warn(msg)

    def read_nesting(self) -> list[int]:
        """The read-side nesting of each handler worker (emulated CPU): what synchronize_srcu waits
        for; non-zero between faults only if a fault returned holding the lock (M20)."""
        if self.core.closed:
            return []
        t = self.core.table
        n = int(t.t.hdr.nworkers)
        # the handler wakes the toucher from inside the section (UFFDIO_CONTINUE wakes), so a fault
        # the caller saw complete may still be on its way out: wait for it to leave (bounded)
        deadline = time.monotonic() + 5.0
        while any(t.t.workers[i].busy for i in range(n)) and time.monotonic() < deadline:
            time.sleep(0.0001)
        return [t.srcu.nesting(i) for i in range(n)]

    def unreleased_devices(self) -> list[DevDax]:
        """Devices some reference still holds (files, vmas, or a leak the spec documents)."""
        return [d for r in self.regions for d in r.devices if d.phase not in (D_NONE, D_RELEASED)]

    def _next_file(self) -> int:
        self._files += 1
        return self._files

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("bus: closed")

    # --- admin programs ----------------------------------------------------------------------------
    @OK_BUS
    def create_region(
        self,
        size: int,
        align: int = M2,
        devices: Sequence[int | Sequence[tuple[int, int]]] | None = None,
        *,
        path: str | None = None,
        profile: str | Profile = DEFAULT_PROFILE,
        backing: SharedBacking | None = None,
    ) -> DaxRegion:
        """Provider probe: alloc_dax_region, the profile's create program per device, provider_put.

        ``profile``: a name in IMPL_PROFILES, or a spec Profile object derived from one of them
        (spec/variants.py Variant.profile(): the same driver with a reordered or missing step), so
        the refinement tests can show that a variant of the programs is caught.

        ``devices``: sizes carved back to back (default: one device spanning the region), or per
        device a list of (start, size) spans of the region (several ranges: modern multi-range).
        """
        check_int("size", size, PAGE, 1 << 46)
        check_int("align", align)
        if align not in ALIGNS:
            raise ValueError(f"align: expected 4K, 2M or 1G, got {align!r}")
        if size % align:
            raise ValueError(f"size: {size:#x} is not a multiple of align {align:#x}")
        if isinstance(profile, Profile):
            if profile.name.split("+")[0] not in IMPL_PROFILES:
                raise ValueError(f"profile: {profile.name!r} is not derived from {', '.join(IMPL_PROFILES)}")
            prof = profile
        else:
            if profile not in IMPL_PROFILES:
                raise ValueError(f"profile: expected one of {', '.join(IMPL_PROFILES)}, got {profile!r}")
            prof = get_profile(profile)
        spans = self._spans(size, align, devices)
        with self._lock:
            self._check_open()
            if backing is None:
                backing = SharedBacking(self.core, size, path)
                self._backings.append(backing)
                created = True
            else:
                if backing.size < size:
                    raise ValueError(f"backing: {backing.size:#x} bytes, region needs {size:#x}")
                created = False
            try:
                region = DaxRegion(self, self._region_ids.alloc(), backing, align, prof, spans)
            except BaseException:
                if created:
                    self.release_backing(backing)
                raise
            self.regions.append(region)
            self._run(region, self._program(region, "probe"))
            return region

    def release_backing(self, backing: SharedBacking) -> None:
        """Drop the provider's hold on memory this bus created: the memory of a removed region then
        goes with the region's release. Until then (or bus close) a v4.10 re-probe (enable) can lay a
        new region over the same memory, as a real provider re-probes the same namespace."""
        with self._lock:
            if backing in self._backings:
                self._backings.remove(backing)
                backing.kref.put()

    @staticmethod
    def _spans(
        size: int, align: int, devices: Sequence[int | Sequence[tuple[int, int]]] | None
    ) -> list[list[tuple[int, int]]]:
        if devices is None:
            devices = [size]
        if not isinstance(devices, Sequence) or isinstance(devices, str | bytes):
            raise ValueError(f"devices: expected a list of sizes or of span lists, got {devices!r}")
        out: list[list[tuple[int, int]]] = []
        at = 0
        for i, d in enumerate(devices):
            if isinstance(d, int) and not isinstance(d, bool):
                sp = [(at, d)]
                at += d
            elif isinstance(d, Sequence) and d and all(isinstance(x, Sequence) and len(x) == 2 for x in d):
                sp = [(check_int(f"devices[{i}].start", s), check_int(f"devices[{i}].size", n)) for s, n in d]
            else:
                raise ValueError(f"devices[{i}]: expected a size or a list of (start, size)")
            for s, n in sp:
                if n <= 0 or s % align or n % align or s + n > size:
                    raise ValueError(f"devices[{i}]: span ({s:#x}, {n:#x}) misaligned or outside the region")
            out.append(sp)
        # the kernel's resource tree (alloc_dev_dax_range -> __request_region) refuses a range that
        # overlaps one already claimed: two devices over the same memory cannot exist (class 7)
        reach, owner = 0, -1  # the furthest end claimed so far, and by which device
        for s, e, i in sorted((s, s + n, i) for i, sp in enumerate(out) for s, n in sp):
            if s < reach:
                raise ValueError(f"devices[{i}]: span at {s:#x} overlaps devices[{owner}] (up to {reach:#x})")
            reach, owner = e, i
        return out

    def _program(
        self, region: DaxRegion, name: str, dev: DevDax | None = None
    ) -> list[tuple[str, DaxRegion | DevDax, bool]]:
        """spec/admin.py program(): the step list of one admin program with its targets."""
        p = region.profile
        Target = DaxRegion | DevDax

        def parse(entries: Sequence[str], d: Target) -> list[tuple[str, Target, bool]]:
            return [(e.rstrip("!"), d, e.endswith("!")) for e in entries]

        if name == "probe":
            body = [s for d in region.devices for s in parse(p.create, d)]
            return [("alloc_dax_region", region, False), *body, ("provider_put", region, False)]
        if name == "remove":
            body = [s for d in reversed(region.devices) for s in parse(p.remove, d)]
            return [*body, ("dax_region_unregister", region, False)]
        assert dev is not None
        return parse({"bind": p.bind, "unbind": p.unbind, "create_failed": p.create_failed}[name], dev)

    def _run(self, region: DaxRegion, prog: list[tuple[str, DaxRegion | DevDax, bool]]) -> None:
        i = 0
        while i < len(prog):
            name, target, kill_end = prog[i]
            fn: Callable[[], str] | None = getattr(target, name, None)
            if fn is None:
                raise NotImplementedError(f"step {name} is not implemented by {type(target).__name__}")
            try:
                out = fn()
            except StepFailed as e:
                assert isinstance(target, DevDax)
                self._log("step", target.name, f"{name} {errno.errorcode[e.code]}")
                target.create_error = e.code
                if e.prog == "create_failed":
                    self._run(region, self._program(region, "create_failed", target))
                i += 1
                while i < len(prog) and prog[i][1] is target:
                    i += 1
                continue
            self._log("step", getattr(target, "name", "?"), f"{name} {out}")
            if kill_end and out != "skipped":
                assert isinstance(target, DevDax)
                target.dead = True
                self._check_no_entries(target)
            i += 1

    def _check_no_entries(self, dev: DevDax) -> None:
        """no_entry_after_kill (spec/invariants.py), checked against the real page tables: the first
        page of every unit of every vma of the device is not present (/proc/self/pagemap)."""
        if not ON:
            return
        for a in dev.areas():
            if present_units(a.start, a.end, max(dev.align, PAGE), limit=4096):
                raise KernelBug(f"{dev.name} is killed but {a!r} still has an installed entry")

    @OK_BUS
    def remove_region(self, region: DaxRegion) -> None:
        """Provider removal: the profile's remove program per device (reversed), then the region's
        devm action. Files and vmas stay; the devices release when the last of them goes."""
        _owned(self, region, "region")
        with self._lock:
            self._check_open()
            if region.gone:
                raise os_error(errno.ENODEV, f"{region.name} is already removed")
            self._run(region, self._program(region, "remove"))

    @OK_BUS
    def disable(self, dev: DevDax) -> DevDax:
        """Modern: unbind device_dax (dev_dax_kill, dev_dax_cdev_del); ENODEV if not bound.
        v4.10 has no driver binding: disabling is the provider's removal of the whole region."""
        _owned(self, dev, "dev")
        with self._lock:
            self._check_open()
            if dev.region.profile.bind_cycles:
                if not dev.bound:
                    raise os_error(errno.ENODEV, f"{dev.name} is not bound")
                self._run(dev.region, self._program(dev.region, "unbind", dev))
            elif not dev.region.gone:
                self.remove_region(dev.region)
            # else: the provider is gone already; the spec's remove program then skips every device
            # step and the region's devm action has nothing left to put: a no-op that succeeds
            return dev

    @OK_BUS
    def enable(self, dev: DevDax) -> DevDax:
        """Modern: bind device_dax again (cdev_add, run_dax); EBUSY if bound. v4.10: a new probe of
        the provider over the same memory and layout; returns the new instance of this device."""
        _owned(self, dev, "dev")
        with self._lock:
            self._check_open()
            r = dev.region
            if r.profile.bind_cycles:
                if dev.bound:
                    raise os_error(errno.EBUSY, f"{dev.name} is bound")
                if not dev.registered:
                    raise os_error(errno.ENODEV, f"{dev.name} is unregistered")
                self._run(r, self._program(r, "bind", dev))
                return dev
            if not r.gone:
                raise os_error(errno.EBUSY, f"{r.name} is still probed")
            if r.backing.kref.released:
                # the provider let go of its memory (release_backing: the namespace is destroyed)
                # and the last region over it was freed: nothing is left to probe
                raise os_error(errno.ENODEV, f"the provider of {r.name} is gone")
            new = self.create_region(
                r.backing.size,
                r.align,
                [list(d.spans) for d in r.devices],
                profile=r.profile,
                backing=r.backing,
            )
            return new.devices[dev.index]

    # --- open --------------------------------------------------------------------------------------
    @OK_BUS
    def open(self, dev: DevDax, flags: int = os.O_RDWR) -> DaxFile:
        """open("/dev/daxX.Y", flags): chrdev_open finds the cdev through the node's cached i_cdev
        while that kobject still has a reference, else through kobj_map by devt (spec/file.py
        chrdev_lookup); ENXIO if neither. O_DIRECT is EINVAL (spec/fops.py open_flags)."""
        _owned(self, dev, "dev")
        check_int("flags", flags, 0, (1 << 32) - 1)
        with self._lock:
            self._check_open()
            names = frozenset(n for n, v in O_FLAGS.items() if v and flags & v == v)
            if fops.open_flags(names) != "ok":
                raise os_error(getattr(errno, fops.open_flags(names)), "open: O_DIRECT")
            acc = flags & os.O_ACCMODE
            if acc == os.O_ACCMODE:
                raise os_error(errno.EINVAL, "open: access mode 3")
            if dev.minor < 0:
                raise os_error(errno.ENXIO, f"{dev.name} never got a minor")
            target = self._chrdev_lookup(dev)
            if target is None:
                raise os_error(errno.ENXIO, f"no cdev for minor {dev.minor}")
            f = DaxFile(self, target, readable=acc != os.O_WRONLY, writable=acc != os.O_RDONLY, flags=flags)
            target.files.add(f)
            target.icdev_cached = True
            if target.region.profile.open_private_null_when_dead and not target.alive:
                f.private_data = None  # M21: dax_get_private() of a dead device
            self._log("open", f.name, target.name)
            return f

    def _chrdev_lookup(self, dev: DevDax) -> DevDax | None:
        """The cdev reference is taken here (cdev_get: kobject_get_unless_zero)."""
        if dev.icdev_cached and dev.cdev.get_unless_zero():
            self._log("get", dev.name, f"cdev {dev.cdev.count}")
            return dev
        other = kobj_lookup(dev.minor)
        if other is not None and other.cdev_mapped and other.cdev.get_unless_zero():
            self._log("get", other.name, f"cdev {other.cdev.count}")
            return other
        return None

    # --- shutdown ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap every vma, close every fd, remove every region, stop the core. Idempotent; what a
        process exit does to its files, then module unload."""
        with self._lock:
            if self.closed:
                return
            self.closing = True
            try:
                for a in list(self._areas):
                    if a in self._areas and not self.core.closed:
                        a.handle._drop(a)
                files = {f for r in self.regions for d in r.devices for f in d.files}
                for f in files:
                    if f.fd_open:
                        f.close()
                for r in self.regions:
                    if not r.gone:
                        self._run(r, self._program(r, "remove"))
            finally:
                self.closed = True
                self.core.close()
                for bk in self._backings:  # the core closed every fd; drop the holds
                    bk.kref.put()
                self._backings.clear()
                kobj_unmap_bus(self)
                for r in self.regions:
                    for d in r.devices:
                        if d.minor_held:
                            d.minor_held = False
                            self.minor_ida.free(d.minor)

    def __enter__(self) -> DaxBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def present_units(start: int, end: int, unit: int, limit: int = 4096) -> list[int]:
    """Addresses of units in [start, end) whose first page is present in our page tables."""
    out: list[int] = []
    step = unit
    n = (end - start + step - 1) // step
    if n > limit:
        step = ((end - start) // limit + PAGE - 1) // PAGE * PAGE
    with open("/proc/self/pagemap", "rb") as f:
        at = start
        while at < end:
            f.seek((at // PAGE) * 8)
            e = int.from_bytes(f.read(8), "little")
            if e >> 63 & 1:
                out.append(at)
            at += step
    return out


__all__ = [
    "ALIGNS",
    "DAX_MINOR_IDA",
    "DEFAULT_PROFILE",
    "IMPL_PROFILES",
    "MADV",
    "MAP",
    "MS",
    "O_FLAGS",
    "PROT",
    "DaxBus",
    "DaxFile",
    "DaxRegion",
    "DevDax",
    "Event",
    "KernelBug",
    "SharedBacking",
    "VmArea",
    "Vma",
    "flags_of",
    "present_units",
]
