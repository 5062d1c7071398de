"""Pure address arithmetic of device-dax: the parts of the driver that are functions of their inputs.

Everything here is a plain function on 64-bit unsigned integers, written once and shared: the state
machine calls it, the emulation (impl/) calls it from its fault handler, the Z3 lemmas (proofs/) are
checked against it and CrossHair explores it. Sizes are real bytes (4K, 2M, 1G), never scaled, so a
driver author can compare any line with drivers/dax/device.c.

Sources: docs/semantics.md#check_vma, #dax_get_unmapped_area and #faults (fault handlers and
pgoff_to_phys); seed commit 2 ("Mappings are always guaranteed to match the alignment of
the dax_region ... If userspace attempts to force a misaligned mapping, the driver will fail the mmap").
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, NamedTuple

from devdax.spec.state import fast_record

# Final: the compiled spec inlines them instead of looking them up in the module's dict
PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PMD_SIZE: Final = 1 << 21
PUD_SIZE: Final = 1 << 30
U64: Final = (1 << 64) - 1

#: the three entry sizes a fault can ask for, smallest first (enum page_entry_size)
FAULT_SIZES: Final = (PAGE_SIZE, PMD_SIZE, PUD_SIZE)
SIZE_NAMES: Final = {PAGE_SIZE: "pte", PMD_SIZE: "pmd", PUD_SIZE: "pud"}
#: and by name: cfg.first_fault, a fault_check outcome ("SIGBUS@pmd:size")
SIZE_OF_NAME: Final = {name: size for size, name in SIZE_NAMES.items()}
ALIGN_NAMES: Final = {PAGE_SIZE: "4K", PMD_SIZE: "2M", PUD_SIZE: "1G"}


def parse_align(text: str) -> int:
    """'4K' | '2M' | '1G' -> bytes; the only alignments a dax region can be configured with."""
    for size, name in ALIGN_NAMES.items():
        if text.upper() == name:
            return size
    raise ValueError(f"align: expected one of 4K, 2M, 1G, got {text!r}")


def is_aligned(x: int, align: int) -> bool:
    """IS_ALIGNED(): align is a power of two."""
    return x & (align - 1) == 0


def round_up(x: int, align: int) -> int:
    """round_up() on u64: wraps exactly as the kernel's macro does."""
    return ((x + align - 1) & ~(align - 1)) & U64


def round_down(x: int, align: int) -> int:
    return x & ~(align - 1) & U64


# --------------------------------------------------------------------------------------------------
# dax_get_unmapped_area (identical from v4.7 to today)
# --------------------------------------------------------------------------------------------------

MmAllocator = Callable[[int], int]
"""current->mm->get_unmapped_area(filp, 0, len, pgoff, flags): any page-aligned address for len bytes."""


#: The CPU has protection keys (X86_FEATURE_OSPKE), as QEMU's x86 CPU the recordings ran on has
#: and as x86 servers have had since Skylake-SP and Zen 3.
X86_PKEYS = True


def prot_readable(prot: int, pkeys: bool = X86_PKEYS) -> bool:
    """Whether a load through a vma of this protection works on x86 (PROT_READ 1, WRITE 2, EXEC 4).

    Page tables cannot express write-only, so PROT_WRITE alone reads too. PROT_EXEC alone reads too
    unless the CPU has protection keys: then mmap and mprotect give the vma the execute-only pkey
    (arch_override_mprotect_pkey -> execute_only_pkey) and a load faults with SIGSEGV, SEGV_PKUERR
    (recorded: k07, k08, k23 on 6.1, 6.12 and 7.2).
    """
    if prot & 3:
        return True
    return bool(prot & 4) and not pkeys


def mmap_addr(addr: int, fixed: bool) -> int | None:
    """The address get_unmapped_area starts from; None is EINVAL.

    MAP_FIXED (and MAP_FIXED_NOREPLACE, which do_mmap turns into MAP_FIXED) takes addr as it is, and
    __get_unmapped_area refuses one inside a page (offset_in_page). A hint is only a hint: x86
    arch_get_unmapped_area(_topdown) masks it (addr &= PAGE_MASK) and uses it when the range is free.
    Recorded: k16 and k17, a hint one byte past an aligned base maps at the base.
    """
    if fixed:
        return addr if is_aligned(addr, PAGE_SIZE) else None
    return round_down(addr, PAGE_SIZE)


def unmapped_area_topdown(busy: Iterable[tuple[int, int]], length: int, top: int) -> int:
    """vm_unmapped_area() with VM_UNMAPPED_AREA_TOPDOWN, as x86 arch_get_unmapped_area_topdown asks
    for a file that is not hugetlbfs (no align mask): the highest gap below top that holds length
    bytes, used from its upper end. busy lists [start, end) of the mappings below top; the space
    under the lowest is taken as free. This is why an unaligned request can still land aligned:
    right under an earlier dax mapping that dax_get_unmapped_area aligned (recorded: k12, k14, k20).
    """
    hi = top
    for start, end in sorted(busy, reverse=True):
        if hi - end >= length:
            break
        hi = min(hi, start)
    return hi - length


def dax_get_unmapped_area(addr: int, length: int, pgoff: int, align: int, mm_alloc: MmAllocator) -> int:
    """Pick the virtual address of a new mapping so that it is congruent to the file offset mod align.

    A non-zero addr (a hint or MAP_FIXED) is passed through untouched: alignment is then the caller's
    problem and check_vma rejects a misaligned result. When the range cannot contain one aligned unit,
    or off + len + align overflows, the plain allocator is used and no alignment is promised.
    Domain: length <= TASK_SIZE, which __get_unmapped_area enforces before it calls this (for a larger
    length, len + align itself can wrap and the overflow test above does not see it).
    """
    if addr:
        return addr
    off = (pgoff << PAGE_SHIFT) & U64
    off_end = (off + length) & U64
    off_align = round_up(off, align)
    if off_end <= off_align or (off_end - off_align) < align:
        return mm_alloc(length)
    len_align = (length + align) & U64
    if ((off + len_align) & U64) < off:
        return mm_alloc(length)
    addr_align = mm_alloc(len_align)
    return (addr_align + ((off - addr_align) & (align - 1))) & U64


# --------------------------------------------------------------------------------------------------
# check_vma
# --------------------------------------------------------------------------------------------------


class PrivateTest(Enum):
    """How check_vma recognises a private mapping; each value is one era of the driver."""

    #: v4.7: ``(vm_flags & (VM_NORESERVE|VM_SHARED|VM_WRITE)) == VM_WRITE``: writable private
    #: mappings slip through with MAP_NORESERVE, read-only private ones always (bug M1)
    V47_NORESERVE = "v4.7"
    #: 4cb19355ea19: ``!(vm_flags & VM_SHARED)``: rejects PROT_READ MAP_SHARED on O_RDONLY (bug M2)
    VM_SHARED = "VM_SHARED"
    #: 325896ffdf90 and later: ``(vm_flags & VM_MAYSHARE) != VM_MAYSHARE``
    VM_MAYSHARE = "VM_MAYSHARE"


@dataclass(frozen=True, slots=True)
class VmaFlags:
    """The vm_flags bits check_vma and the fault handlers read, as mmap(2) derives them."""

    shared: bool  # VM_SHARED: MAP_SHARED and the file is writable (O_RDWR)
    mayshare: bool  # VM_MAYSHARE: MAP_SHARED, whatever the file mode
    write: bool  # VM_WRITE: PROT_WRITE
    noreserve: bool  # VM_NORESERVE: MAP_NORESERVE (private mappings only matter)
    dontcopy: bool  # VM_DONTCOPY: MADV_DONTFORK

    @staticmethod
    def from_mmap(map_shared: bool, prot_write: bool, file_writable: bool, noreserve: bool) -> VmaFlags:
        """do_mmap(): MAP_SHARED sets VM_MAYSHARE always and VM_SHARED only for a writable file."""
        return VmaFlags(
            shared=map_shared and file_writable,
            mayshare=map_shared,
            write=prot_write,
            noreserve=noreserve,
            dontcopy=False,
        )


def check_vma(
    alive: bool,
    flags: VmaFlags,
    vm_start: int,
    vm_end: int,
    align: int,
    private_test: PrivateTest = PrivateTest.VM_MAYSHARE,
    pfn_dev_only: bool = False,
    s_dax: bool = True,
    vm_pgoff: int | None = None,
) -> int:
    """check_vma() in kernel order; returns 0 or a negative errno. vm_pgoff is given only where the
    driver checks it (F3's fix, profile switch check_vma_pgoff): refused unless align-aligned.

    The order matters to a user only through which errno wins, and to the fault handler not at all
    (any failure is SIGBUS). It does not look at the file offset or the length against the device
    size: an oversized mapping succeeds and faults past the end SIGBUS (pgoff_to_phys).
    """
    if not alive:
        return -errno.ENXIO  # "!dax_alive"
    if private_test is PrivateTest.V47_NORESERVE:
        if not flags.shared and (flags.write and not flags.noreserve):
            return -errno.EINVAL  # v4.7: only this shape was refused
    elif private_test is PrivateTest.VM_SHARED:
        if not flags.shared:
            return -errno.EINVAL  # M2
    elif not flags.mayshare:
        return -errno.EINVAL  # "attempted private mapping"
    if not is_aligned(vm_start, align) or not is_aligned(vm_end, align):
        return -errno.EINVAL  # "unaligned vma"
    if vm_pgoff is not None and not is_aligned(vm_pgoff << PAGE_SHIFT, align):
        return -errno.EINVAL  # F3 fix: "unaligned vma" also for vm_pgoff & (align >> PAGE_SHIFT) - 1
    if pfn_dev_only and not flags.dontcopy:
        return -errno.EINVAL  # "dax range requires MADV_DONTFORK"
    if not s_dax:
        return -errno.EINVAL  # M10: !vma_is_dax()
    return 0


# --------------------------------------------------------------------------------------------------
# pgoff_to_phys
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Range:
    """One physical range of a device: [start, end] inclusive, and the device pgoff it begins at."""

    start: int
    end: int
    pgoff: int

    @property
    def pages(self) -> int:
        return (self.end - self.start + 1) >> PAGE_SHIFT


def make_ranges(spans: Sequence[tuple[int, int]]) -> tuple[Range, ...]:
    """Lay (start, size) spans out back to back in pgoff space: the device is their concatenation."""
    out: list[Range] = []
    pgoff = 0
    for start, size in spans:
        out.append(Range(start, start + size - 1, pgoff))
        pgoff += size >> PAGE_SHIFT
    return tuple(out)


def pgoff_to_phys(ranges: Sequence[Range], pgoff: int, size: int) -> int | None:
    """dax_pgoff_to_phys(): the physical address of device page pgoff for an entry of `size` bytes.

    None is the kernel's -1: pgoff is past the device, or the entry would run past the end of the
    range that holds pgoff (a huge entry never straddles two ranges, it SIGBUSes instead).
    """
    for r in ranges:
        if pgoff < r.pgoff or pgoff > r.pgoff + r.pages - 1:
            continue
        phys = ((pgoff - r.pgoff) << PAGE_SHIFT) + r.start
        if phys + size - 1 <= r.end:
            return phys
        return None
    return None


def pfn_huge(phys: int, size: int) -> int:
    """The physical block an entry of ``size`` bytes really maps when the driver hands it ``phys``.

    x86 pfn_pmd()/pfn_pud() keep only the bits above the entry size (PHYSICAL_PMD_PAGE_MASK,
    PHYSICAL_PUD_PAGE_MASK), and 7.2's vmf_insert_folio_pmd/_pud insert the head of the compound
    folio, which is the same block: an unaligned phys (F3, an unchecked vm_pgoff) maps the bytes of
    the aligned block below it. Recorded: tests/kernel-results/*/results.jsonl, k20 and k21 checks.
    """
    return round_down(phys, size) if size > PAGE_SIZE else phys


def device_size(ranges: Sequence[Range]) -> int:
    return sum(r.end - r.start + 1 for r in ranges)


# --------------------------------------------------------------------------------------------------
# Fault-size negotiation and the fault handler's arithmetic
# --------------------------------------------------------------------------------------------------


class FaultResult(Enum):
    NOPAGE = "NOPAGE"  # an entry was installed
    FALLBACK = "FALLBACK"  # try again with the next smaller size
    SIGBUS = "SIGBUS"


@dataclass(frozen=True, slots=True)
class FaultRules:
    """Which version of the size checks a profile's fault handler has."""

    fallback: bool = True  # M3/M4 fix: fault_size > align -> FALLBACK (else no check at all)
    vma_bounds: bool = True  # M3/M4 fix: the huge block must lie inside the vma
    pud_supported: bool = True  # CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD


class FaultDecision(NamedTuple):
    """What dax_huge_fault decided. A record like the state's (spec/state.py): one is built per
    fault check, and a frozen dataclass's __init__ stays interpreted in the compiled form."""

    result: FaultResult
    addr: int = 0  # start of the entry (the faulting address rounded down to the fault size)
    phys: int = 0
    #: why it ended so: "dead" (check_vma), "size" (negotiation), "bounds" (block outside the vma),
    #: "range" (pgoff_to_phys), "" for NOPAGE
    reason: str = ""


fast_record(FaultDecision)


def negotiate(fault_size: int, align: int, rules: FaultRules) -> FaultResult | None:
    """The size rule alone: > align falls back, < align is SIGBUS, == align proceeds (None).

    Total and deterministic over the three sizes (a Z3 lemma). Without the M3/M4 fix there is no
    fallback: a huge fault on a smaller-aligned device proceeds to insert a too-large entry.
    """
    if fault_size == PUD_SIZE and not rules.pud_supported:
        return FaultResult.FALLBACK
    if fault_size < align:
        return FaultResult.SIGBUS
    if fault_size > align:
        return FaultResult.FALLBACK if rules.fallback else None
    return None


def dax_huge_fault(
    fault_size: int,
    addr: int,
    vm_start: int,
    vm_end: int,
    vm_pgoff: int,
    align: int,
    ranges: Sequence[Range],
    vma_ok: bool,
    rules: FaultRules,
) -> FaultDecision:
    """__dev_dax_{pte,pmd,pud}_fault after the read lock is held; vma_ok is check_vma()'s verdict.

    Returns the entry to install (NOPAGE) or the fault's end. The vma-bounds check is what keeps a
    huge entry inside its vma (M3/M4); pgoff_to_phys keeps it inside one range of the device.
    """
    if not vma_ok:
        return FaultDecision(FaultResult.SIGBUS, reason="dead")
    size_rule = negotiate(fault_size, align, rules)
    if size_rule is not None:
        return FaultDecision(size_rule, reason="size")
    block = round_down(addr, fault_size)
    if rules.vma_bounds and (block < vm_start or block + fault_size > vm_end):
        return FaultDecision(FaultResult.SIGBUS, reason="bounds")
    # linear_page_index(vma, block), in unsigned long arithmetic: a block below vm_start (possible
    # only without the vma bounds check) wraps to a huge pgoff that pgoff_to_phys refuses. vm_pgoff
    # is below 2^52 (mmap offsets are byte offsets), so the sum itself never wraps.
    pgoff = vm_pgoff + (((block - vm_start) & U64) >> PAGE_SHIFT)
    phys = pgoff_to_phys(ranges, pgoff, fault_size)
    if phys is None:
        return FaultDecision(FaultResult.SIGBUS, reason="range")
    return FaultDecision(FaultResult.NOPAGE, block, phys)


def next_fault_size(fault_size: int) -> int | None:
    """What the mm tries after VM_FAULT_FALLBACK: pud -> pmd -> pte -> (nothing: SIGBUS)."""
    i = FAULT_SIZES.index(fault_size)
    return FAULT_SIZES[i - 1] if i > 0 else None
