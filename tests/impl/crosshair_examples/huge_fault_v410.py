"""BUG (real, M3/M4): the spec's own dax_huge_fault run with the v4.10 profile's FaultRules.

Before the fix there is neither a size fallback nor a vma-bounds check, so a pmd fault on a 4K-aligned
device, or near the edge of a small vma, installs an entry that is not the device's unit or reaches
outside the vma. The contract is the fixed kernel's rule; CrossHair rediscovers the bug.
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS, Span, _pick, is_layout
from devdax.spec import geometry
from devdax.spec.geometry import FAULT_SIZES, PAGE_SIZE, U64, FaultDecision, FaultResult, FaultRules

V410_RULES = FaultRules(fallback=False, vma_bounds=False)


@icontract.require(lambda fault_size, align: fault_size in FAULT_SIZES and align in ALIGNS)
@icontract.require(lambda addr, vm_start, vm_end, vm_pgoff:
                   0 <= vm_start <= addr < vm_end <= U64 and 0 <= vm_pgoff <= U64)
@icontract.require(lambda vm_start, vm_end, vm_pgoff:
                   vm_start % PAGE_SIZE == 0 and vm_end % PAGE_SIZE == 0
                   and vm_pgoff + (vm_end - vm_start) // PAGE_SIZE <= U64)
@icontract.require(lambda spans, align: align in ALIGNS and is_layout(spans, align))
@icontract.ensure(lambda fault_size, align, vm_start, vm_end, result:
                  result.result is not FaultResult.NOPAGE
                  or (fault_size == align and vm_start <= result.addr
                      and result.addr + fault_size <= vm_end))
def dax_huge_fault(fault_size: int, addr: int, vm_start: int, vm_end: int, vm_pgoff: int, align: int,
                   spans: tuple[Span, ...]) -> FaultDecision:
    return geometry.dax_huge_fault(_pick(fault_size, FAULT_SIZES), addr, vm_start, vm_end, vm_pgoff,
                                   _pick(align, ALIGNS), geometry.make_ranges(spans), True, V410_RULES)
