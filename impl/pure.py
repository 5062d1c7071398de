"""Contract-annotated entry points to the pure arithmetic of device-dax (spec/geometry.py).

Each function here is a thin wrapper: its body calls the one implementation in devdax.spec.geometry,
adding only what the call needs (the device's Range tuple built by make_ranges from its spans, an mm
allocator that answers a fixed page-aligned base, _pick below). What it adds is the contract. The
preconditions are the kernel's domain: align is 4K, 2M or 1G; every value fits in 64 bits; a device's
spans are align-multiples and disjoint (make_ranges lays them back to back in pgoff space); a mapping
is no longer than TASK_SIZE and its vma page-aligned. The postconditions state the kernel's rule in
plain modular arithmetic, never by re-running the code's bit tricks, so that a slip in geometry.py (a
lost mask, an off-by-one at a range end) breaks a contract instead of being copied into it.

CrossHair checks these contracts symbolically (tests/impl/test_crosshair.py); icontract checks them at
run time wherever the emulation calls through here. CrossHair proves is_aligned, check_vma and
negotiate over all paths. The rest only gets "no counterexample within budget": round_up and
round_down mask with ``~(align - 1)``, which CrossHair cannot keep symbolic (it fixes x to one value
per path), and pgoff_to_phys and dax_huge_fault take any number of spans.
"""

from __future__ import annotations

import errno

import icontract

from devdax.spec import geometry
from devdax.spec.geometry import (
    FAULT_SIZES,
    PAGE_SIZE,
    U64,
    FaultDecision,
    FaultResult,
    FaultRules,
    VmaFlags,
)

#: the alignments a dax region can be configured with
ALIGNS = FAULT_SIZES
TWO64 = U64 + 1
#: the largest user address space of x86_64 (5-level paging); __get_unmapped_area() refuses a longer
#: mapping with ENOMEM before the driver is asked, so dax_get_unmapped_area never sees one
TASK_SIZE_MAX = (1 << 56) - PAGE_SIZE


def _pick(value: int, choices: tuple[int, ...]) -> int:
    """value itself, as the constant in choices it equals (precondition: it is one of them).

    The identity at run time. Under CrossHair it turns a symbolic align or fault size into three
    branches with a constant each, so that ``x & (align - 1)`` in geometry.py stays symbolic in x
    (CrossHair turns a constant low-bit mask into ``x % align``) instead of fixing x to one value.
    """
    return next(c for c in choices if c == value)


def _u64(*xs: int) -> bool:
    """Every x fits in 64 bits unsigned.

    Preconditions conjoin comparisons with ``&`` rather than ``and``: the same value on bools, but
    one branch for CrossHair (which hands the whole conjunction to the solver) instead of one branch
    per conjunct, most of them ending in a failed precondition that eats the budget.
    """
    ok = True
    for x in xs:
        ok = ok & (x >= 0) & (x <= U64)
    return ok


#: one physical span of a device as make_ranges takes it: (start, size in bytes)
Span = tuple[int, int]


def is_layout(spans: tuple[Span, ...], align: int) -> bool:
    """A device's spans: at least one, align-multiple starts and sizes, no byte shared, all in 64 bits.

    make_ranges lays them back to back in pgoff space, so that part of the layout is by construction.
    Conjoined with ``&``, see _u64.
    """
    ok = len(spans) > 0
    for s, n in spans:
        ok = ok & (s >= 0) & (n > 0) & (s + n <= TWO64) & (s % align == 0) & (n % align == 0)
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            ok = ok & ((a[0] + a[1] <= b[0]) | (b[0] + b[1] <= a[0]))
    return ok


def holder(spans: tuple[Span, ...], pgoff: int) -> tuple[int, int, int] | None:
    """(start, size, first device page) of the span holding device page pgoff; the device is the
    concatenation of its spans in order."""
    first = 0
    for s, n in spans:
        if first <= pgoff < first + n // PAGE_SIZE:
            return s, n, first
        first += n // PAGE_SIZE
    return None


def spans_holding(spans: tuple[Span, ...], phys: int, size: int) -> int:
    """How many spans contain the whole entry [phys, phys + size)."""
    return sum(1 for s, n in spans if s <= phys and phys + size <= s + n)


# --------------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------------

@icontract.require(lambda x, align: _u64(x) and align in ALIGNS)
@icontract.ensure(lambda x, align, result: result == (x % align == 0))
def is_aligned(x: int, align: int) -> bool:
    """IS_ALIGNED(x, align)."""
    return geometry.is_aligned(x, _pick(align, ALIGNS))


@icontract.require(lambda x, align: _u64(x) and align in ALIGNS)
@icontract.ensure(lambda result: _u64(result))
@icontract.ensure(lambda align, result: result % align == 0)
@icontract.ensure(lambda x, align, result: (result - x) % TWO64 < align)
def round_up(x: int, align: int) -> int:
    """round_up() on u64: the first multiple of align at or after x, wrapping to 0 past the top."""
    return geometry.round_up(x, _pick(align, ALIGNS))


# --------------------------------------------------------------------------------------------------
# dax_get_unmapped_area
# --------------------------------------------------------------------------------------------------

def _aligned_case(length: int, pgoff: int, align: int) -> bool:
    """The file range holds one whole aligned unit and off + len + align does not overflow."""
    off = pgoff * PAGE_SIZE % TWO64
    return (-off) % align + align <= length and off + length + align <= U64


@icontract.require(lambda addr, length, pgoff, base: _u64(addr, length, pgoff, base))
@icontract.require(lambda align: align in ALIGNS)
@icontract.require(lambda length, align, base:
                   (length > 0) & (length <= TASK_SIZE_MAX) & (length % PAGE_SIZE == 0)
                   & (base % PAGE_SIZE == 0) & (base + length + align <= TWO64))
@icontract.ensure(lambda addr, result: addr == 0 or result == addr)
@icontract.ensure(lambda addr, length, pgoff, align, base, result:
                  addr != 0 or _aligned_case(length, pgoff, align) or result == base)
@icontract.ensure(lambda addr, length, pgoff, align, result:
                  addr != 0 or not _aligned_case(length, pgoff, align)
                  or result % align == pgoff * PAGE_SIZE % align)
@icontract.ensure(lambda addr, length, pgoff, align, base, result:
                  addr != 0 or not _aligned_case(length, pgoff, align)
                  or base <= result <= base + align)
def dax_get_unmapped_area(addr: int, length: int, pgoff: int, align: int, base: int) -> int:
    """dax_get_unmapped_area() with an mm allocator that places any request at page-aligned `base`.

    The reservation is [base, base + length + align): when the aligned path is taken the result is
    congruent to the file offset mod align and the mapping [result, result + length) stays inside it;
    otherwise the plain allocator's address is returned. A hint (addr != 0) passes through.
    """
    return geometry.dax_get_unmapped_area(addr, length, pgoff, _pick(align, ALIGNS), lambda _n: base)


# --------------------------------------------------------------------------------------------------
# check_vma
# --------------------------------------------------------------------------------------------------

@icontract.require(lambda vm_start, vm_end: _u64(vm_start, vm_end) and vm_start < vm_end)
@icontract.require(lambda align: align in ALIGNS)
@icontract.ensure(lambda alive, flags, vm_start, vm_end, align, result:
                  (result == 0) == (alive and flags.mayshare
                                    and vm_start % align == 0 and vm_end % align == 0))
@icontract.ensure(lambda alive, result: (result == -errno.ENXIO) == (not alive))
@icontract.ensure(lambda result: result in (0, -errno.ENXIO, -errno.EINVAL))
def check_vma(alive: bool, flags: VmaFlags, vm_start: int, vm_end: int, align: int) -> int:
    """check_vma() of a modern kernel (the VM_MAYSHARE test, no PFN_DEV-only range, S_DAX inode)."""
    return geometry.check_vma(alive, flags, vm_start, vm_end, _pick(align, ALIGNS))


# --------------------------------------------------------------------------------------------------
# pgoff_to_phys
# --------------------------------------------------------------------------------------------------

@icontract.require(lambda spans, align: align in ALIGNS and is_layout(spans, align))
@icontract.require(lambda pgoff, size: size in FAULT_SIZES and _u64(pgoff))
@icontract.ensure(lambda spans, size, result: result is None or spans_holding(spans, result, size) == 1)
@icontract.ensure(lambda spans, pgoff, result:
                  result is None or ((h := holder(spans, pgoff)) is not None
                                     and result == h[0] + (pgoff - h[2]) * PAGE_SIZE))
@icontract.ensure(lambda spans, pgoff, size, result:
                  result is not None or (h := holder(spans, pgoff)) is None
                  or h[0] + (pgoff - h[2]) * PAGE_SIZE + size > h[0] + h[1])
def pgoff_to_phys(spans: tuple[Span, ...], align: int, pgoff: int, size: int) -> int | None:
    """dax_pgoff_to_phys() over the device make_ranges lays out from spans: page pgoff's physical
    address, or None (the kernel's -1).

    The entry [result, result + size) lies in exactly one span and is the one that holds pgoff; None
    only when pgoff is past the device or the entry would straddle the end of its span.
    """
    return geometry.pgoff_to_phys(geometry.make_ranges(spans), pgoff, _pick(size, FAULT_SIZES))


# --------------------------------------------------------------------------------------------------
# fault-size negotiation and the fault handler
# --------------------------------------------------------------------------------------------------

def _pud_off(fault_size: int, rules: FaultRules) -> bool:
    """Without CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD a pud fault always falls back."""
    return fault_size == geometry.PUD_SIZE and not rules.pud_supported


@icontract.require(lambda fault_size, align: fault_size in FAULT_SIZES and align in ALIGNS)
@icontract.ensure(lambda fault_size, rules, result: not _pud_off(fault_size, rules)
                  or result is FaultResult.FALLBACK)
@icontract.ensure(lambda fault_size, align, rules, result: _pud_off(fault_size, rules) or fault_size <= align
                  or result is (FaultResult.FALLBACK if rules.fallback else None))
@icontract.ensure(lambda fault_size, align, rules, result: _pud_off(fault_size, rules) or fault_size >= align
                  or result is FaultResult.SIGBUS)
@icontract.ensure(lambda fault_size, align, rules, result: _pud_off(fault_size, rules) or fault_size != align
                  or result is None)
def negotiate(fault_size: int, align: int, rules: FaultRules) -> FaultResult | None:
    """The fault-size rule; None means proceed with an entry of fault_size bytes."""
    return geometry.negotiate(_pick(fault_size, FAULT_SIZES), _pick(align, ALIGNS), rules)


@icontract.require(lambda fault_size, align: fault_size in FAULT_SIZES and align in ALIGNS)
@icontract.require(lambda addr, vm_start, vm_end, vm_pgoff:
                   _u64(addr, vm_start, vm_end, vm_pgoff) & (vm_start <= addr) & (addr < vm_end)
                   & (vm_start % PAGE_SIZE == 0) & (vm_end % PAGE_SIZE == 0)
                   & (vm_pgoff + (vm_end - vm_start) // PAGE_SIZE <= U64))
@icontract.require(lambda spans, align: align in ALIGNS and is_layout(spans, align))
@icontract.ensure(lambda vma_ok, result: vma_ok or result.result is FaultResult.SIGBUS)
@icontract.ensure(lambda fault_size, addr, result:
                  result.result is not FaultResult.NOPAGE
                  or (result.addr % fault_size == 0 and result.addr <= addr < result.addr + fault_size))
@icontract.ensure(lambda fault_size, align, rules, result:
                  result.result is not FaultResult.NOPAGE or not rules.fallback or fault_size == align)
@icontract.ensure(lambda fault_size, vm_start, vm_end, rules, result:
                  result.result is not FaultResult.NOPAGE or not rules.vma_bounds
                  or (vm_start <= result.addr and result.addr + fault_size <= vm_end))
@icontract.ensure(lambda fault_size, spans, result:
                  result.result is not FaultResult.NOPAGE
                  or spans_holding(spans, result.phys, fault_size) == 1)
def dax_huge_fault(fault_size: int, addr: int, vm_start: int, vm_end: int, vm_pgoff: int, align: int,
                   spans: tuple[Span, ...], vma_ok: bool, rules: FaultRules) -> FaultDecision:
    """__dev_dax_{pte,pmd,pud}_fault: with the fixed rules a NOPAGE entry is align-sized, covers the
    faulting address, lies inside the vma and inside exactly one span of the device (make_ranges)."""
    return geometry.dax_huge_fault(_pick(fault_size, FAULT_SIZES), addr, vm_start, vm_end, vm_pgoff,
                                   _pick(align, ALIGNS), geometry.make_ranges(spans), vma_ok, rules)
