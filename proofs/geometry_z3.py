"""Z3 terms for the pure functions of ``spec/geometry.py``: the translator layer of the lemmas.

This is a second encoding of geometry.py, line for line and in the same order, so that a reader can put
the two side by side; ``tests/proofs/test_geometry_agreement.py`` shows that each term, evaluated on
concrete inputs (random 64-bit values, 0, U64, values next to an overflow), equals what the Python
function returns. geometry.py stays the single source of truth: when the two disagree, this file is wrong.

Two arithmetic domains, chosen to be *exactly* Python's:

* ``dax_get_unmapped_area``, ``round_up``/``round_down``, ``is_aligned``, ``check_vma`` and
  ``negotiate`` mask every result with U64 in geometry.py (the kernel's ``unsigned long``), so they are
  64-bit bit-vectors here.
* ``pgoff_to_phys`` and ``dax_huge_fault`` compute with Python's unbounded integers
  (``phys + size - 1 <= r.end`` can exceed 2**64, ``block - vm_start`` is negative without the
  vma-bounds check), so they are Z3 Ints: the shifts by PAGE_SHIFT are products and floor divisions by
  PAGE_SIZE, and everything is linear. (An earlier 96-bit two's-complement encoding was just as exact
  but 100x slower: proving that sums of three range sizes add up the same way twice is hard for a SAT
  solver and trivial for linear arithmetic.) The lemmas bound every Int input to [0, U64].
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import z3

from devdax.proofs.smt import Term, as_bool, bv_val
from devdax.spec import geometry as g

#: FaultResult plus PROCEED, the ``None`` that negotiate() returns when the size rule lets a fault go on
FaultSort, (NOPAGE, FALLBACK, SIGBUS, PROCEED) = z3.EnumSort(
    "fault_result", ["NOPAGE", "FALLBACK", "SIGBUS", "PROCEED"]
)

FAULT_RESULT: dict[g.FaultResult | None, Term] = {
    g.FaultResult.NOPAGE: NOPAGE,
    g.FaultResult.FALLBACK: FALLBACK,
    g.FaultResult.SIGBUS: SIGBUS,
    None: PROCEED,
}


# --------------------------------------------------------------------------------------------------
# 64-bit helpers (geometry.is_aligned, round_up, round_down)
# --------------------------------------------------------------------------------------------------


def is_aligned(x: Term, align: Term) -> Term:
    return x & (align - 1) == 0


def round_up(x: Term, align: Term) -> Term:
    return (x + align - 1) & ~(align - 1)


def round_down(x: Term, align: Term) -> Term:
    return x & ~(align - 1)


# --------------------------------------------------------------------------------------------------
# dax_get_unmapped_area
# --------------------------------------------------------------------------------------------------


def dax_get_unmapped_area(
    addr: Term, length: Term, pgoff: Term, align: Term, mm_alloc: Callable[[Term], Term]
) -> Term:
    """geometry.dax_get_unmapped_area on 64-bit terms. ``mm_alloc`` maps the requested length to the
    allocator's answer: an uninterpreted function in the lemmas (any allocator), a concrete function in
    the agreement tests."""
    off = pgoff << g.PAGE_SHIFT
    off_end = off + length
    off_align = round_up(off, align)
    too_small = z3.Or(z3.ULE(off_end, off_align), z3.ULT(off_end - off_align, align))
    len_align = length + align
    overflows = z3.ULT(off + len_align, off)
    addr_align = mm_alloc(len_align)
    aligned = addr_align + ((off - addr_align) & (align - 1))
    return z3.If(addr != 0, addr, z3.If(z3.Or(too_small, overflows), mm_alloc(length), aligned))


# --------------------------------------------------------------------------------------------------
# check_vma
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmaFlagsTerms:
    """geometry.VmaFlags as Z3 Bools."""

    shared: Term
    mayshare: Term
    write: Term
    noreserve: Term
    dontcopy: Term

    @staticmethod
    def fresh(prefix: str) -> VmaFlagsTerms:
        return VmaFlagsTerms(
            *(z3.Bool(f"{prefix}.{n}") for n in ("shared", "mayshare", "write", "noreserve", "dontcopy"))
        )


def private_rejected(flags: VmaFlagsTerms, private_test: g.PrivateTest) -> Term:
    """The era's test for 'attempted private mapping' (geometry.PrivateTest)."""
    if private_test is g.PrivateTest.V47_NORESERVE:
        return z3.And(z3.Not(flags.shared), flags.write, z3.Not(flags.noreserve))
    if private_test is g.PrivateTest.VM_SHARED:
        return z3.Not(flags.shared)
    return z3.Not(flags.mayshare)


def check_vma(
    alive: Term,
    flags: VmaFlagsTerms,
    vm_start: Term,
    vm_end: Term,
    align: Term,
    private_test: g.PrivateTest = g.PrivateTest.VM_MAYSHARE,
    pfn_dev_only: bool | Term = False,
    s_dax: bool | Term = True,
) -> Term:
    """geometry.check_vma as an Int term: 0 or a negative errno, the checks in kernel order."""
    misaligned = z3.Or(z3.Not(is_aligned(vm_start, align)), z3.Not(is_aligned(vm_end, align)))
    pfn = z3.And(as_bool(pfn_dev_only), z3.Not(flags.dontcopy))
    return _first_error(alive, flags, private_test, misaligned, pfn, z3.Not(as_bool(s_dax)))


def _first_error(alive: Term, flags: VmaFlagsTerms, private_test: g.PrivateTest, *einval: Term) -> Term:
    """-ENXIO for a dead device, else -EINVAL for the private test or the first of ``einval`` that
    holds, else 0: the nested If both check_vma encodings build (the same term as written out)."""
    out = z3.IntVal(0)
    for cond in reversed((private_rejected(flags, private_test), *einval)):
        out = z3.If(cond, z3.IntVal(-errno.EINVAL), out)
    return z3.If(z3.Not(alive), z3.IntVal(-errno.ENXIO), out)


def check_vma_int(
    alive: Term,
    flags: VmaFlagsTerms,
    vm_start: Term,
    vm_end: Term,
    align: int,
    private_test: g.PrivateTest = g.PrivateTest.VM_MAYSHARE,
) -> Term:
    """check_vma with Int addresses and a concrete align, as the transition system uses it (its vmas
    live in the Int domain with dax_huge_fault). Same checks, same order, same errnos."""
    misaligned = z3.Or(vm_start % align != 0, vm_end % align != 0)
    return _first_error(alive, flags, private_test, misaligned)


# --------------------------------------------------------------------------------------------------
# pgoff_to_phys (exact integers)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RangeTerms:
    """geometry.Range over Int: [start, end] inclusive and its first device pgoff."""

    start: Term
    end: Term
    pgoff: Term

    @property
    def pages(self) -> Term:
        return (self.end - self.start + 1) / g.PAGE_SIZE  # Int div: floor, as Python's >>


def range_ok(start: Term, size: Term, align: int) -> list[Term]:
    """What every device range is (the lemmas' devices and the protocol's): non-empty, start and size
    multiples of align, ending at most at U64."""
    return [size > 0, start % align == 0, size % align == 0, start + size - 1 <= g.U64]


def make_ranges(spans: Sequence[tuple[Term, Term]]) -> tuple[RangeTerms, ...]:
    """geometry.make_ranges: (start, size) spans laid back to back in pgoff space."""
    out: list[RangeTerms] = []
    pgoff: Term = z3.IntVal(0)
    for start, size in spans:
        out.append(RangeTerms(start, start + size - 1, pgoff))
        pgoff = pgoff + size / g.PAGE_SIZE
    return tuple(out)


def pgoff_to_phys(ranges: Sequence[RangeTerms], pgoff: Term, size: Term | int) -> tuple[Term, Term]:
    """geometry.pgoff_to_phys as (found, phys): found is False where Python returns None.

    Built from the last range backwards, so that the first range holding pgoff decides, as the loop's
    ``return`` does; phys is 0 when not found (a value nobody reads).
    """
    found: Term = z3.BoolVal(False)
    phys: Term = z3.IntVal(0)
    for r in reversed(ranges):
        holds = z3.Not(z3.Or(pgoff < r.pgoff, pgoff > r.pgoff + r.pages - 1))
        here = (pgoff - r.pgoff) * g.PAGE_SIZE + r.start
        fits = here + size - 1 <= r.end
        found = z3.If(holds, fits, found)
        phys = z3.If(holds, z3.If(fits, here, z3.IntVal(0)), phys)
    return found, phys


# --------------------------------------------------------------------------------------------------
# Fault-size negotiation (64-bit) and dax_huge_fault (exact integers, concrete sizes)
# --------------------------------------------------------------------------------------------------


def negotiate(fault_size: Term, align: Term, rules: g.FaultRules) -> Term:
    """geometry.negotiate on 64-bit sizes, as a fault_result (PROCEED for Python's None)."""
    bigger = FALLBACK if rules.fallback else PROCEED
    rule = z3.If(z3.ULT(fault_size, align), SIGBUS, z3.If(z3.UGT(fault_size, align), bigger, PROCEED))
    if not rules.pud_supported:
        rule = z3.If(fault_size == bv_val(g.PUD_SIZE), FALLBACK, rule)
    return rule


def next_fault_size(fault_size: Term) -> Term:
    """geometry.next_fault_size with 0 for None: pud -> pmd -> pte -> 0."""
    return z3.If(
        fault_size == bv_val(g.PUD_SIZE),
        bv_val(g.PMD_SIZE),
        z3.If(fault_size == bv_val(g.PMD_SIZE), bv_val(g.PAGE_SIZE), bv_val(0)),
    )


@dataclass(frozen=True)
class FaultTerms:
    """geometry.FaultDecision: result, and the entry's addr/phys as Ints (0 unless NOPAGE)."""

    result: Term
    addr: Term
    phys: Term


def dax_huge_fault(
    fault_size: int,
    addr: Term,
    vm_start: Term,
    vm_end: Term,
    vm_pgoff: Term,
    align: int,
    ranges: Sequence[RangeTerms],
    vma_ok: bool | Term,
    rules: g.FaultRules,
) -> FaultTerms:
    """geometry.dax_huge_fault with the sizes concrete (one query per row of the size table) and the
    addresses Int. ``round_down(addr, fault_size)`` is ``addr - addr % fault_size`` for 0 <= addr <= U64."""
    size_rule = negotiate(bv_val(fault_size), bv_val(align), rules)
    block = addr - addr % fault_size
    outside = z3.Or(block < vm_start, block + fault_size > vm_end) if rules.vma_bounds else z3.BoolVal(False)
    # linear_page_index(vma, block): block - vm_start in unsigned long arithmetic, as geometry.py
    # computes it (vm_pgoff < 2^52 since mmap offsets are byte offsets, so the sum cannot wrap)
    two64 = 1 << 64
    diff = z3.If(block >= vm_start, block - vm_start, block - vm_start + two64)
    pgoff = vm_pgoff + diff / g.PAGE_SIZE
    found, phys = pgoff_to_phys(ranges, pgoff, fault_size)
    result = z3.If(
        z3.Not(as_bool(vma_ok)),
        SIGBUS,
        z3.If(size_rule != PROCEED, size_rule, z3.If(outside, SIGBUS, z3.If(z3.Not(found), SIGBUS, NOPAGE))),
    )
    zero = z3.IntVal(0)
    return FaultTerms(result, z3.If(result == NOPAGE, block, zero), z3.If(result == NOPAGE, phys, zero))
