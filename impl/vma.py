"""Vmas: the kernel's vm_area_struct (VmArea), its placement at mmap time, and the user's handle.

A VmArea is one kernel vma: exactly one core Mapping, so that the vma descriptor the handler
process reads is the kernel vma (start, end, pgoff, flags) and check_vma sees the real bounds. It
pins its file (vma->vm_file) from mmap to munmap. What mmap(2) returns to the caller is a UserMapping
handle: the range at an address and the kernel vmas it consists of now, which munmap, mprotect,
madvise and mremap cut (__split_vma) or move. The mm's rules are the spec's: mm.may_split,
mm.check_range, geometry.dax_get_unmapped_area, fops.msync_vma.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Final, cast

import icontract

from devdax.spec import fops, geometry, mm
from devdax.spec.abi import MADV_NAMES, MS
from devdax.spec.config import MM_ROOM
from devdax.spec.ctx import Ctx
from devdax.spec.state import Vma as SpecVma

from . import contracts
from . import sys as dsys
from .core import Mapping
from .errors import check_int, os_error
from .fault_policy import VMA_NOHUGE
from .vmcore import claim

if TYPE_CHECKING:
    from .bus import DaxBus
    from .file import DaxFile

ON: Final = contracts.ENABLED
PAGE: Final = geometry.PAGE_SIZE
G1: Final = geometry.PUD_SIZE


def real_prot(prot: int) -> int:
    """The protection the real mapping gets. x86 page tables cannot express write-only or
    execute-only: any of them is also readable by a plain load, which is what the spec models
    (a vma is readable unless PROT_NONE). GUP (process_vm_readv) checks VM_READ instead, so the
    real vma gets PROT_READ whenever the user asked for any access."""
    return prot | dsys.PROT_READ if prot & (dsys.PROT_WRITE | dsys.PROT_EXEC) else prot


#: how often the top-down search may find the host's own memory in its way before it gives up
_MM_TRIES: Final = 8
#: address space kept reserved above a top-down window's top (Placement._mm_alloc)
CEILING: Final = MM_ROOM


class Placement:
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
        """mm->get_unmapped_area: the kernel's top-down search (geometry.unmapped_area_topdown)
        over this bus's vmas, below a window top fixed by the first plain mapping one page past a
        1G boundary, as the spec's MM_WINDOW: never aligned by luck until an earlier mapping makes
        it so, as on the kernel (k12, k14, k20). The range is reserved PROT_NONE; where the host
        process already uses it, the search goes on below, and after a few misses a fresh window
        is opened, which only costs the luck. Above a window's top nothing is free, as above the
        spec's MM_WINDOW (the kernel's libraries and stack): CEILING bytes stay reserved there for
        the bus's life, so a mapping at the top cannot grow in place with mremap where the spec
        moves it."""
        bus = self.bus
        if bus.mm_topdown and bus.mm_top is not None:
            busy = [(a.start, a.end) for a in bus._areas] + [(a, a + k) for a, k in self.res if k]
            for _ in range(_MM_TRIES):
                addr = geometry.unmapped_area_topdown(busy, n, bus.mm_top)
                if addr > 0 and claim(addr, n):
                    self.res.append((addr, n))
                    return addr
                busy.append((addr, addr + n))
        ceiling = CEILING if bus.mm_topdown else 0
        span = n + G1 + PAGE + ceiling
        a = dsys.mmap(0, span, dsys.PROT_NONE, dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS | dsys.MAP_NORESERVE)
        addr = ((a + G1 - 1) & ~(G1 - 1)) + PAGE
        bus.mm_top = addr + n
        if ceiling:
            self.res.append((a, bus.mm_top - a))
            bus.ceilings.append((bus.mm_top, a + span - bus.mm_top))
        else:
            self.res.append((a, span))
        return addr

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
            # mmap_region() unmaps what MAP_FIXED replaces before ->mmap, through the same split as
            # munmap: a cut inside a device vma asks that vma's dev_dax_may_split (issue 14 class 1)
            lo, hi = self.hint, self.hint + self.length
            if not all(a.handle._may_split_all(lo, hi, [a]) for a in mine):
                raise os_error(errno.EINVAL, f"MAP_FIXED at {lo:#x}: dev_dax_may_split refuses the cut")
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
        # VM_SEQ_READ, VM_RAND_READ, VM_DONTDUMP: flags only madvise reads and writes (spec Vma)
        self.seq_read = self.rand_read = self.dontdump = False
        self.handle: UserMapping = cast("UserMapping", None)

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
        a.seq_read, a.rand_read, a.dontdump = self.seq_read, self.rand_read, self.dontdump
        a.handle = self.handle
        return a

    def advice_flags(self) -> SpecVma:
        """The flags madvise may change, as the spec's vma, so that spec/mm.py FLAG_ADVICE decides."""
        return SpecVma(
            dontcopy=self.dontcopy,
            nohuge=self.nohuge,
            seq_read=self.seq_read,
            rand_read=self.rand_read,
            dontdump=self.dontdump,
        )

    def prot(self) -> int:
        return (1 if self.read else 0) | (2 if self.write else 0) | (4 if self.exec_ else 0)

    def __repr__(self) -> str:
        return f"VmArea({self.start:#x}-{self.end:#x} pgoff {self.pgoff} {self.file.name})"


def _handle_ok(self: UserMapping) -> bool:
    v = self
    return all(a.handle is v and a.file.f_count.count > 0 for a in v.areas)


@icontract.invariant(_handle_ok, "every vma of a handle pins a live file", enabled=ON)
class UserMapping:
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
            write = bool(prot & 2)
            flags = (geometry.prot_readable(prot), write, bool(prot & 4))
            for a in self._walk(lo, hi, past_gaps=False):
                if write and a.mayshare and not a.file.writable:
                    raise os_error(
                        errno.EACCES, "mprotect: PROT_WRITE on a shared mapping of an O_RDONLY file"
                    )
                # mprotect_fixup: "if (newflags == oldflags)" the vma is left alone, unsplit (mm.change)
                if (a.read, a.write, a.exec_) == flags or hi == lo:
                    continue
                if not self._may_split_all(lo, hi, [a]):
                    raise os_error(errno.EINVAL, "dev_dax_may_split: misaligned cut")
                mid = self._carve(a, lo, hi)
                self.bus.core.set_prot(mid.m, real_prot(prot))
                mid.read, mid.write, mid.exec_ = flags

    def _walk(self, lo: int, hi: int, past_gaps: bool) -> Iterator[VmArea]:
        """The vmas a range operation visits, in address order (spec/mm.py walk): a refusal on the
        way stops it with the earlier ones changed; a hole raises ENOMEM, at once for mprotect
        (past_gaps False), after the last vma for madvise."""
        areas = self._hit(lo, hi)
        visit, gap = mm.walk([(a.start, a.end) for a in areas], lo, hi, past_gaps)
        yield from (areas[i] for i in visit)
        if gap:
            raise os_error(errno.ENOMEM, f"part of [{lo:#x}, {hi:#x}) is not mapped")

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
                write = name.endswith("WRITE")
                for a in self._walk(lo, hi, past_gaps=False):
                    refused = mm.populate_vma(a.advice_flags()._replace(read=a.read, write=a.write), write)
                    if refused:
                        raise os_error(getattr(errno, refused), f"{name}: check_vma_flags")
                    self._populate(max(lo, a.start), min(hi, a.end), write=write, strict=True)
                return
            if not areas:
                raise os_error(errno.ENOMEM, "madvise: no vma in range")
            for a in self._walk(lo, hi, past_gaps=True):
                if name in mm.FLAG_ADVICE:
                    self._flag_advice(a, lo, hi, name)
                else:
                    self._advise(a, max(lo, a.start), min(hi, a.end), name)

    def _flag_advice(self, a: VmArea, lo: int, hi: int, name: str) -> None:
        """An advice that only changes vm_flags (spec/mm.py FLAG_ADVICE): a vma whose flags it
        leaves as they are is not split and asks no may_split (madvise_update_vma)."""
        if name == "MADV_DODUMP" and a.file.dev.region.profile.vm_mixedmap:
            raise os_error(errno.EINVAL, "MADV_DODUMP on a VM_MIXEDMAP (VM_SPECIAL) vma")
        new = mm.FLAG_ADVICE[name]
        if new(a.advice_flags()) == a.advice_flags() or hi == lo:
            return
        if not self._may_split_all(lo, hi, [a]):
            raise os_error(errno.EINVAL, "dev_dax_may_split: misaligned cut")
        mid = self._carve(a, lo, hi)
        self._apply_flags(mid, new(mid.advice_flags()))

    def _apply_flags(self, a: VmArea, f: SpecVma) -> None:
        core = self.bus.core
        if f.dontcopy != a.dontcopy:  # the real vma must not be copied into a forked child either
            dsys.madvise(a.start, a.end - a.start, dsys.MADV_DONTFORK if f.dontcopy else dsys.MADV_DOFORK)
        if f.nohuge != a.nohuge:  # the fault handler reads it from the shared table
            if f.nohuge:
                core.set_flags(a.m, set_bits=VMA_NOHUGE)
            else:
                core.set_flags(a.m, clear_bits=VMA_NOHUGE)
        a.dontcopy, a.nohuge = f.dontcopy, f.nohuge
        a.seq_read, a.rand_read, a.dontdump = f.seq_read, f.rand_read, f.dontdump

    def _advise(self, a: VmArea, lo: int, hi: int, name: str) -> None:
        if name in ("MADV_DONTNEED", "MADV_DONTNEED_LOCKED"):
            self.bus.core.zap_range(a.m, lo, hi)  # zap_page_range_single; data stays
        elif name in ("MADV_COLD", "MADV_PAGEOUT", "MADV_WILLNEED"):
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
                if a.pgoff * PAGE + (at - a.start) >= a.file.dev.size:
                    # every unit from here on is past the device end and SIGBUSes: MAP_POPULATE
                    # ignores them, MADV_POPULATE_* fails at the first; the work stays bounded by
                    # the device, not by the length asked for (issue 14 class 2)
                    if strict:
                        self.bus.scan_handler()
                        raise os_error(errno.EFAULT, f"populate: {at:#x} is past the device end")
                    break
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
        """mremap(2) by spec/mm.py mremap_path: shrinking is a cut (may_split); growing in place
        asks no driver hook, so an unaligned new end is accepted and every later fault SIGBUSes
        (check_vma); a move places the range as mmap does. Returns the range's new address; the
        handle then names the remapped range (base + offset is its start), as on the kernel runner."""
        check_int("new_length", new_length, 0, 1 << 47)
        with self.bus._lock:
            lo, old_end = self._range(offset, old_length)
            old_len, new_len = old_end - lo, geometry.round_up(new_length, PAGE)
            a = self._area_at(lo)
            vma = (a.end, a.mayshare) if a is not None else None
            path = mm.mremap_path(lo, old_len, new_len, may_move, vma, expandable=True)
            if path == "expand":
                assert a is not None
                if self.bus.core.grow(a.m, a.m.length + (new_len - old_len)):
                    self._relength()
                    return lo
                path = mm.mremap_path(lo, old_len, new_len, may_move, vma, expandable=False)
            if path == "shrink":
                self._unmap_range(lo + new_len, lo + old_len)
            elif path == "move":
                assert a is not None
                lo = self._move(a, lo, old_len, new_len)
                self.base = lo - offset
            elif path != "same":
                raise os_error(getattr(errno, path), f"mremap {lo:#x} {old_len:#x} -> {new_len:#x}")
            self._relength()
            return lo

    def _relength(self) -> None:
        self.length = max(0, max((x.end for x in self.areas), default=self.base) - self.base)

    def _move(self, a: VmArea, lo: int, old_len: int, new_len: int) -> int:
        """move_vma (spec mm.mremap_move): may_split at the ends of the old range that are not the
        vma's own, a new vma where dax_get_unmapped_area puts it with its own file reference, then
        the old range unmapped (old_len 0 keeps it: a duplicate). Installed entries are not carried
        over; they refault through the handler: same data, same outcome."""
        align = a.file.dev.align
        cuts = [x for x, own in ((lo, a.start), (lo + old_len, a.end)) if x != own]
        if not all(mm.may_split(self._ctx(align), x) for x in cuts):
            raise os_error(errno.EINVAL, "dev_dax_may_split: misaligned cut")
        pgoff = a.pgoff + (lo - a.start) // PAGE
        core = self.bus.core
        place = Placement(self.bus, new_len, pgoff, align, 0, False, False)
        try:
            addr = place.start()
            place.commit()
            m = core.map_at(
                a.m.dev, addr, new_len, pgoff, a.m.prot, a.file.writable, core.flags(a.m) & VMA_NOHUGE
            )
        except BaseException:
            place.abort()
            raise
        b = a.copy(m)
        if b.dontcopy:
            dsys.madvise(b.start, b.end - b.start, dsys.MADV_DONTFORK)
        a.file._get()
        a.file.areas.append(b)
        self.areas.append(b)
        self.bus._areas.add(b)
        if old_len:
            self._unmap_range(lo, lo + old_len, check=False)
        return addr

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

    def fork_touch(self, offset: int, write: bool = False, value: int | None = None) -> str:
        """fork(); the child does one plain load (or a store of value, by default the byte it
        finds) and exits: its outcome. A VM_DONTCOPY vma is not in the child at all (SIGSEGV)."""
        if value is not None:
            check_int("value", value, 0, 255)
        with self.bus._lock:
            addr, bad = self._access_check(offset, write)
            a = self._area_at(addr)
            if a is None or a.dontcopy:
                return "SIGSEGV"
            if bad:
                return bad
            core = self.bus.core
            if write and value is None:
                t = core.touch_read(addr, 1)
                value = t.data[0] if t.outcome == "ok" else 0
            r = core.touch_in_child(addr, write=write, value=value or 0)
            self.bus.scan_handler()
            if r.outcome == "ok":
                return "ok"
            if r.outcome in ("SIGBUS", "SIGSEGV"):
                return r.outcome
            raise os_error(errno.EIO, f"fork_touch: child ended {r.outcome}")

    def view(self, offset: int = 0, length: int | None = None) -> memoryview:
        """A memoryview over live mapped memory (plain Python access; faults go to the handler).
        A touch of a dead device through it raises SIGBUS in this process: use touch() to probe."""
        check_int("offset", offset, 0, self.length)
        if length is not None:
            check_int("length", length, 0, self.length)
        with self.bus._lock:
            length = (self.length - offset) if length is None else length
            lo = self.base + offset
            if not self._covered(lo, lo + length, self._hit(lo, lo + length)):
                raise os_error(errno.EFAULT, "view: range not fully mapped")
            return memoryview((ctypes.c_char * length).from_address(lo)).cast("B")


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


__all__ = ["Placement", "UserMapping", "VmArea", "present_units", "real_prot"]
