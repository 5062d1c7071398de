"""BUG (real, M3/M4): the spec's own dax_huge_fault run with the v4.10 profile's FaultRules.

Before the fix there is neither a size fallback nor a vma-bounds check, so a pmd fault on a 4K-aligned
device, or near the edge of a small vma, installs an entry that is not the device's unit or reaches
outside the vma. The contract is the fixed kernel's rule; CrossHair rediscovers the bug. The device is
one 1 TiB range and a vma maps it at its own address, so that the search goes to the fault, not the layout.
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS, _pick
from devdax.spec import geometry
from devdax.spec.geometry import FAULT_SIZES, PAGE_SIZE, FaultDecision, FaultResult, FaultRules

V410_RULES = FaultRules(fallback=False, vma_bounds=False)
DEVICE = geometry.make_ranges([(0, 1 << 40)])


@icontract.require(lambda fault_size, align: fault_size in FAULT_SIZES and align in ALIGNS)
@icontract.require(lambda addr, vm_start, vm_end:
                   (vm_start >= 0) & (vm_start <= addr) & (addr < vm_end) & (vm_end <= 1 << 40)
                   & (vm_start % PAGE_SIZE == 0) & (vm_end % PAGE_SIZE == 0))
@icontract.ensure(lambda fault_size, align, vm_start, vm_end, result:
                  result.result is not FaultResult.NOPAGE
                  or (fault_size == align and vm_start <= result.addr
                      and result.addr + fault_size <= vm_end))
def dax_huge_fault(fault_size: int, addr: int, vm_start: int, vm_end: int, align: int) -> FaultDecision:
    vm_pgoff = vm_start // PAGE_SIZE          # the vma maps the device at its own address
    return geometry.dax_huge_fault(_pick(fault_size, FAULT_SIZES), addr, vm_start, vm_end, vm_pgoff,
                                   _pick(align, ALIGNS), DEVICE, True, V410_RULES)
