"""mmap(2) and what later changes a vma: munmap/mprotect splits, fork, MADV_DONTFORK.

Seed commit 2: "there is no support for private mappings ... Mappings are always guaranteed to match
the alignment of the dax_region ... If userspace attempts to force a misaligned mapping, the driver
will fail the mmap attempt. See dax_dev_check_vma()". mmap does not check the offset or length
against the device size (docs/semantics.md#check_vma): faults past the end SIGBUS instead.
"""

from __future__ import annotations

import errno
import functools

from devdax.spec import mm
from devdax.spec.config import FIXED_BASE, MM_WINDOW, MmapShape
from devdax.spec.ctx import Ctx, oops
from devdax.spec.file import free_slot, vma_file_get
from devdax.spec.geometry import (
    PAGE_SHIFT,
    PAGE_SIZE,
    MmAllocator,
    VmaFlags,
    check_vma,
    dax_get_unmapped_area,
    is_aligned,
    mmap_addr,
    round_up,
)
from devdax.spec.state import C_IDLE, Outcome, State, Vma, set_at


def vma_flags(v: Vma) -> VmaFlags:
    return _flags(shared=v.shared, mayshare=v.mayshare, write=v.write, noreserve=False, dontcopy=v.dontcopy)


#: One VmaFlags per combination (a frozen dataclass, its __init__ interpreted even when compiled):
#: every fault check and munmap asks, 100 K times a search, and every mmap tried, 57 K times.
_flags = functools.cache(VmaFlags)
_mmap_flags = functools.cache(VmaFlags.from_mmap)


def _mm_alloc(length: int) -> int:
    """The model's mm->get_unmapped_area: every mapping lives in its own copy of one window, so vma
    addresses never depend on which slot a vma took (that keeps vmas interchangeable)."""
    return MM_WINDOW


def do_mmap(c: Ctx, s: State, f: int, shape: MmapShape, mm_alloc: MmAllocator = _mm_alloc) -> Outcome | None:
    """mmap(NULL or fixed, len, prot, flags, fd, off): do_mmap's generic checks, then
    dax_get_unmapped_area, then dax_mmap -> check_vma. Guard: an open fd and a free vma slot.
    mm_alloc is mm->get_unmapped_area: the checker's never aligns by luck; scenarios pass the
    kernel's top-down search over their own mappings (geometry.unmapped_area_topdown)."""
    # Over 50 lines on purpose: do_mmap's generic checks and dax_mmap's in the kernel's order, which
    # decides the errno of a call that breaks several rules; split up, that order would be hidden.
    fl = s.files[f]
    v = free_slot(s.vmas, Vma())
    if not fl.fd or v < 0:
        return None
    align = c.align_of(fl.dev)
    length = shape.units * align + shape.extra_bytes
    offset = shape.offset_units * align + shape.offset_bytes
    if length == 0 or not is_aligned(offset, PAGE_SIZE):
        return ("EINVAL", s)
    length = round_up(length, PAGE_SIZE)
    if not fl.readable or (shape.shared and shape.write and not fl.writable):
        return ("EACCES", s)  # do_mmap: FMODE_READ always; MAP_SHARED|PROT_WRITE: WRITE
    if shape.sync and not c.prof.map_sync:
        return ("EOPNOTSUPP", s)  # MAP_SHARED_VALIDATE: flag not in mmap_supported_flags
    if shape.growsdown:
        # do_mmap, a file mapping: "if (vm_flags & (VM_GROWSDOWN|VM_GROWSUP)) return -EINVAL";
        # MAP_GROWSDOWN is in LEGACY_MAP_MASK, so MAP_SHARED keeps it too (recorded: k09)
        return ("EINVAL", s)
    addr = 0
    if shape.fixed_bytes is not None:
        hinted = mmap_addr(FIXED_BASE + shape.fixed_bytes, fixed=not shape.hint)
        if hinted is None:
            return ("EINVAL", s)
        addr = hinted
    start = dax_get_unmapped_area(addr, length, offset >> PAGE_SHIFT, align, mm_alloc)
    flags = _mmap_flags(shape.shared, shape.write, fl.writable, shape.noreserve)
    if fl.private_null:
        # modern dax_mmap: check_vma(filp->private_data == NULL, ...) dereferences dev_dax (M21)
        return ("OOPS", oops(s, f"null deref: dax_mmap -> check_vma(NULL) on file{f} of dax{fl.dev}"))
    dev = s.devs[fl.dev]
    pgoff = offset >> PAGE_SHIFT if c.prof.check_vma_pgoff else None
    rc = check_vma(dev.alive, flags, start, start + length, align, c.prof.private_test, vm_pgoff=pgoff)
    if rc:
        return (errno.errorcode[-rc], s)
    new = Vma(
        f,
        start,
        start + length,
        offset >> PAGE_SHIFT,
        flags.shared,
        flags.mayshare,
        flags.write,
        False,
        shape.read,
        shape.stack and c.prof.map_stack_nohuge,
    )
    s = vma_file_get(c, s, f)
    return ("ok", s._replace(vmas=set_at(s.vmas, v, new)))


def faulting(s: State, v: int) -> bool:
    """A fault holds mmap_lock for read: munmap/mprotect/fork (write side) wait for it."""
    return any(cpu.vma == v and (cpu.pc != C_IDLE or cpu.result) for cpu in s.cpus)


def do_munmap(c: Ctx, s: State, v: int, part: str) -> Outcome | None:
    """munmap(2) of the whole vma, of its last unit (an aligned split), or of its first page (a
    misaligned split, refused by ->may_split since M8): the checker's three shapes of a range, all
    unmapped by mm.change, the one munmap scenarios and impl use too. Guard: mmap_lock for write
    waits for every fault on the vma."""
    vma = s.vmas[v]
    if vma.file < 0 or faulting(s, v):
        return None
    if part == "all":
        return mm.change(c, s, v, vma.start, vma.end, None)
    align = c.vma_align(s, v)
    if part == "tail":
        if vma.end - align <= vma.start:
            return None
        return mm.change(c, s, v, vma.end - align, vma.end, None)
    # one misaligned cut per vma: after it the vma is no longer aligned and a second cut would only
    # walk vm_start towards vm_end (and make the state space infinite)
    cut = vma.start + PAGE_SIZE
    if align == PAGE_SIZE or not is_aligned(vma.start, align) or cut >= vma.end:
        return None
    return mm.change(c, s, v, vma.start, cut, None)


def do_fork(c: Ctx, s: State, v: int) -> Outcome | None:
    """fork(): the child gets a copy of the vma unless VM_DONTCOPY; 4.x copies the entries
    (VM_MIXEDMAP), modern children refault. The copy stands for the child's mapping; the child's
    exit is a munmap of it."""
    vma = s.vmas[v]
    w = free_slot(s.vmas, Vma())
    if vma.file < 0 or w < 0 or faulting(s, v):
        return None
    if vma.dontcopy:
        return ("ok", s)
    s = vma_file_get(c, s, vma.file)
    s = s._replace(vmas=set_at(s.vmas, w, vma))
    if c.prof.vm_mixedmap:
        s = s._replace(entries=s.entries | {e._replace(vma=w) for e in s.entries if e.vma == v})
    return ("ok", s)


def do_madvise_dontfork(c: Ctx, s: State, v: int) -> Outcome | None:
    vma = s.vmas[v]
    if vma.file < 0 or vma.dontcopy or faulting(s, v):
        return None
    return ("ok", s._replace(vmas=set_at(s.vmas, v, vma._replace(dontcopy=True))))
