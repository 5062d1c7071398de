"""The generic mm side of changing a device-dax vma: munmap, mprotect, madvise and mremap over a range.

The driver's only hook into all of them is vm_ops->may_split (dev_dax_may_split, M8 / 9702cffdbf21):
a vma may be cut only at a multiple of the device alignment, so a range operation whose ends fall
inside a vma at a misaligned address fails with EINVAL before anything changes. Everything else is
mm/ code (mmap.c, mprotect.c, madvise.c, mremap.c); each rule below names the function it comes from.
Profiles without ->split (v4.7, v4.10 before M8) cut anywhere and zap huge entries the cut crosses.

Ranges are absolute [lo, hi) addresses inside one vma; callers split a user range by vma first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from devdax.spec.ctx import Ctx
from devdax.spec.file import free_slot, vma_file_get, vma_file_put
from devdax.spec.geometry import PAGE_SHIFT, PAGE_SIZE, is_aligned, round_up
from devdax.spec.state import Entry, Outcome, State, Vma, set_at


def may_split(c: Ctx, addr: int, align: int | None = None) -> bool:
    """dev_dax_may_split(): "if (!IS_ALIGNED(addr, dev_dax->align)) return -EINVAL"; align is the
    vma's device's (the region's when not given)."""
    return not c.prof.has_split or is_aligned(addr, c.align if align is None else align)


def _piece(v: Vma, lo: int, hi: int) -> Vma:
    return v._replace(start=lo, end=hi, pgoff=v.pgoff + ((lo - v.start) >> PAGE_SHIFT))


def change(c: Ctx, s: State, v: int, lo: int, hi: int, update: Callable[[Vma], Vma] | None) -> Outcome:
    """Apply `update` to [lo, hi) of vma v (None unmaps it), splitting at lo and hi when they fall
    inside: __split_vma asks may_split for each cut. The parts keep their entries; a huge entry that
    a cut crosses is zapped whole (split_huge_pmd on a devmap pmd just clears it).

    An update that leaves the flags as they are splits nothing and so asks nothing: mprotect_fixup()
    and madvise_update_vma() both return 0 at once when "newflags == vma->vm_flags" (recorded: k27,
    k29 repeat an advice over a misaligned sub-range of a vma it already covers, and Linux says ok)."""
    vma = s.vmas[v]
    lo, hi = max(lo, vma.start), min(hi, vma.end)
    if lo >= hi:
        return ("ok", s)
    middle = None
    if update is not None:
        piece = _piece(vma, lo, hi)
        middle = update(piece)
        if middle == piece:
            return ("ok", s)
    align = c.vma_align(s, v)
    for cut in (lo, hi):
        if vma.start < cut < vma.end and not may_split(c, cut, align):
            return ("EINVAL", s)
    parts = [
        p
        for p in (
            _piece(vma, vma.start, lo) if lo > vma.start else None,
            middle,
            _piece(vma, hi, vma.end) if hi < vma.end else None,
        )
        if p is not None
    ]
    if not parts:
        s = s._replace(vmas=set_at(s.vmas, v, Vma()), entries=frozenset(e for e in s.entries if e.vma != v))
        return ("ok", vma_file_put(c, s, vma.file))
    return _split(c, s, v, parts)


def _split(c: Ctx, s: State, v: int, parts: list[Vma]) -> Outcome:
    """__split_vma: the first part stays in slot v, each other takes a free slot and a file
    reference (vma->vm_file); an entry moves with the part that holds it whole, and an entry of an
    unmapped range (in no part) or one a cut crosses is dropped."""
    vma = s.vmas[v]
    slots = [v]
    vmas = s.vmas
    for _ in parts[1:]:
        w = free_slot(vmas, Vma())
        if w < 0:
            return ("ENOMEM", s)  # the model's bound on vmas, not a kernel limit
        vmas = set_at(vmas, w, Vma(file=-2))  # reserve
        slots.append(w)
    entries = set()
    for e in s.entries:
        if e.vma != v:
            entries.add(e)
            continue
        for slot, p in zip(slots, parts, strict=True):
            if p.start <= e.addr and e.addr + e.size <= p.end:
                entries.add(e._replace(vma=slot))
                break
    for slot, p in zip(slots, parts, strict=True):
        vmas = set_at(vmas, slot, p)
    s = s._replace(vmas=vmas, entries=frozenset(entries))
    for _ in parts[1:]:
        s = vma_file_get(c, s, vma.file)
    return ("ok", s)


def walk(spans: list[tuple[int, int]], lo: int, hi: int, past_gaps: bool) -> tuple[list[int], bool]:
    """The vmas a range operation visits, as indices into spans in address order, and whether the
    range has a hole. mprotect stops at the first hole (do_mprotect_pkey: "if (!vma ||
    vma->vm_start != nstart) error = -ENOMEM; break"), after changing the vmas before it;
    madvise goes on past holes and reports ENOMEM at the end (madvise_walk_vmas: unmapped_error).
    Neither is all or nothing: a vma refused on the way (EACCES, may_split) stops the walk with
    the earlier ones changed. Recorded: k22, k23 (a partial mprotect over a hole)."""
    order = sorted((i for i, (a, b) in enumerate(spans) if a < hi and lo < b), key=lambda i: spans[i][0])
    at, gap = lo, False
    visit: list[int] = []
    for i in order:
        start, end = spans[i]
        if start > at:
            gap = True
            if not past_gaps:
                return visit, True
        visit.append(i)
        at = max(at, end)
    return visit, gap or at < hi


def populate_vma(vma: Vma, write: bool) -> str | None:
    """MADV_POPULATE_(READ|WRITE) on one vma: faultin_vma_page_range() runs check_vma_flags()
    first and reports a write to a vma without VM_WRITE, or a read of one without access, as
    EINVAL ("We want to report -EINVAL instead of -EFAULT for any permission problems"); only a
    fault that ends in SIGBUS is EFAULT. Recorded: k30 steps 25, 27, 28."""
    if (write and not vma.write) or not vma.read:
        return "EINVAL"
    return None


def check_range(addr: int, length: int) -> str | None:
    """The common entry checks of munmap/mprotect/madvise/msync: a page-aligned start and a range
    that does not wrap. A zero length is fine for madvise/mprotect/msync and EINVAL for munmap."""
    if not is_aligned(addr, PAGE_SIZE):
        return "EINVAL"
    if addr + round_up(length, PAGE_SIZE) < addr:
        return "EINVAL"
    return None


def mprotect(c: Ctx, s: State, v: int, lo: int, hi: int, read: bool, write: bool) -> Outcome:
    """mprotect_fixup(): PROT_WRITE on a shared mapping of a file opened read-only has no
    VM_MAYWRITE -> EACCES (checked before any split); then the split rule."""
    vma = s.vmas[v]
    if write and vma.mayshare and not s.files[vma.file].writable:
        return ("EACCES", s)
    return change(c, s, v, lo, hi, lambda p: p._replace(read=read, write=write))


def _same(p: Vma) -> Vma:
    return p


#: madvise_vma_behavior(): the advices that only compute new vm_flags for madvise_update_vma()
FLAG_ADVICE: Final[dict[str, Callable[[Vma], Vma]]] = {
    "MADV_NORMAL": lambda p: p._replace(seq_read=False, rand_read=False),
    "MADV_SEQUENTIAL": lambda p: p._replace(seq_read=True, rand_read=False),
    "MADV_RANDOM": lambda p: p._replace(seq_read=False, rand_read=True),
    "MADV_DONTFORK": lambda p: p._replace(dontcopy=True),
    "MADV_DOFORK": lambda p: p._replace(dontcopy=False),  # "if (vma->vm_flags & VM_IO)": never here
    "MADV_KEEPONFORK": _same,  # clears VM_WIPEONFORK, which a file vma never has
    "MADV_DONTDUMP": lambda p: p._replace(dontdump=True),
    "MADV_DODUMP": lambda p: p._replace(dontdump=False),
    # hugepage_madvise(); dax_mmap() sets VM_HUGEPAGE, so MADV_HUGEPAGE only clears VM_NOHUGEPAGE
    "MADV_HUGEPAGE": lambda p: p._replace(nohuge=False),
    "MADV_NOHUGEPAGE": lambda p: p._replace(nohuge=True),
    # ksm_madvise(): "just ignore the advice" on VM_SHARED, VM_MAYSHARE or VM_MIXEDMAP; a dax vma
    # is one of those in every profile, so nothing is ever merged or unmerged
    "MADV_MERGEABLE": _same,
    "MADV_UNMERGEABLE": _same,
}


def madvise(c: Ctx, s: State, v: int, lo: int, hi: int, advice: str) -> Outcome:
    """madvise(2) on a device-dax vma, by advice (mm/madvise.c madvise_vma_behavior)."""
    vma = s.vmas[v]
    if advice == "MADV_DODUMP" and c.prof.vm_mixedmap:
        return ("EINVAL", s)  # "if (!is_vm_hugetlb_page(vma) && new_flags & VM_SPECIAL)"
    if advice in FLAG_ADVICE:
        return change(c, s, v, lo, hi, FLAG_ADVICE[advice])
    if advice in ("MADV_DONTNEED", "MADV_DONTNEED_LOCKED"):
        return ("ok", zap(s, v, lo, hi))  # zap_page_range_single; the device keeps the data
    if advice in ("MADV_COLD", "MADV_PAGEOUT", "MADV_WILLNEED"):
        return ("ok", s)  # no pages on the LRU to age; madvise_willneed ignores a DAX file
    if advice == "MADV_FREE":
        return ("EINVAL", s)  # madvise_free_single_vma: anonymous only
    if advice == "MADV_WIPEONFORK":
        return ("EINVAL", s)  # "if (vma->vm_file || vma->vm_flags & VM_SHARED)"
    if advice == "MADV_REMOVE":
        if not (vma.mayshare and s.files[vma.file].writable):
            return ("EACCES", s)  # "if (!vma_is_shared_maywrite(vma))"
        return ("ENODEV", s)  # vfs_fallocate(PUNCH_HOLE) on a char device
    return ("EINVAL", s)


def zap(s: State, v: int, lo: int, hi: int) -> State:
    """Remove the entries of v that overlap [lo, hi) (a partially covered huge entry goes whole)."""
    keep = frozenset(e for e in s.entries if e.vma != v or e.addr + e.size <= lo or e.addr >= hi)
    return s._replace(entries=keep)


def mremap_grow(c: Ctx, s: State, v: int, new_end: int) -> Outcome:
    """mremap() growing in place (mremap_path "expand"): no driver hook is asked (no ->mremap, no
    split), so the vma simply ends at new_end, aligned or not; every later fault runs check_vma,
    which refuses a misaligned vma with SIGBUS (recorded: k34 step 14)."""
    vma = s.vmas[v]
    return ("ok", s._replace(vmas=set_at(s.vmas, v, vma._replace(end=new_end))))


def mremap_path(
    addr: int, old_len: int, new_len: int, may_move: bool, vma: tuple[int, bool] | None, expandable: bool
) -> str:
    """What mremap(2) without MREMAP_FIXED does, in 6.1's order (mm/mremap.c SYSCALL mremap,
    vma_to_resize): an errno, or "shrink" (munmap of the tail), "same" (nothing: old_len ==
    new_len, even with MREMAP_MAYMOVE and even when that munmap of nothing fails), "expand" (in
    place) or "move" (get_unmapped_area, then move_vma). vma is (vm_end, VM_MAYSHARE) of the one at
    addr (vma_lookup), and expandable is vma_expandable(): nothing mapped in [vm_end, vm_end + delta).
    No driver hook is
    asked on this path; move_vma asks may_split (mremap_move). Recorded: k34, k35, k42."""
    if not is_aligned(addr, PAGE_SIZE):
        return "EINVAL"
    old_len, new_len = round_up(old_len, PAGE_SIZE), round_up(new_len, PAGE_SIZE)
    if new_len == 0:
        return "EINVAL"
    if vma is None:
        return "EFAULT"
    if old_len >= new_len:
        return "same" if old_len == new_len else "shrink"
    end, mayshare = vma
    if old_len == 0 and not mayshare:
        return "EINVAL"  # vma_to_resize: duplicating a private mapping makes no sense
    if old_len > end - addr:
        return "EFAULT"  # "We can't remap across vm area boundaries"
    if old_len == end - addr and expandable:
        return "expand"
    return "move" if may_move else "ENOMEM"


def mremap_move(c: Ctx, s: State, v: int, addr: int, old_len: int, new_addr: int, new_len: int) -> Outcome:
    """move_vma(): may_split at each end of the old range that is not the vma's own, then copy_vma
    at new_addr (a new vma, its own file reference, the pgoff of addr), move_page_tables, and
    do_munmap of the old range. A huge entry moves whole when the distance keeps it aligned
    (move_huge_pmd); otherwise split_huge_pmd clears it and the new vma refaults. old_len 0
    duplicates the mapping: the munmap of nothing fails and is ignored."""
    vma = s.vmas[v]
    align = c.vma_align(s, v)
    cuts = [x for x, own in ((addr, vma.start), (addr + old_len, vma.end)) if x != own]
    if not all(may_split(c, x, align) for x in cuts):
        return ("EINVAL", s)
    w = free_slot(s.vmas, Vma())
    if w < 0:
        return ("ENOMEM", s)  # the model's bound on vmas, not a kernel limit
    new = vma._replace(
        start=new_addr, end=new_addr + new_len, pgoff=vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT)
    )
    shift = new_addr - addr
    moved = frozenset(
        e._replace(vma=w, addr=e.addr + shift)
        for e in s.entries
        if e.vma == v and addr <= e.addr and e.addr + e.size <= addr + old_len and is_aligned(shift, e.size)
    )
    s = vma_file_get(c, s, vma.file)
    s = s._replace(vmas=set_at(s.vmas, w, new), entries=s.entries | moved)
    if old_len == 0:
        return ("ok", s)
    return change(c, s, v, addr, addr + old_len, None)


def entry_at(s: State, v: int, addr: int) -> Entry | None:
    for e in s.entries:
        if e.vma == v and e.addr <= addr < e.addr + e.size:
            return e
    return None
