"""BUG: dax_get_unmapped_area forgets the ``& (align - 1)`` when it shifts into the reservation.

``addr_align + (off - addr_align)`` is just ``off``: congruent to the offset, trivially, but nowhere
near the address the allocator reserved. Caught by the reservation conjunct of pure.py's contract.
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS, TASK_SIZE_MAX, TWO64, _aligned_case
from devdax.spec.geometry import PAGE_SHIFT, PAGE_SIZE, U64, round_up


@icontract.require(lambda addr, length, pgoff, base: 0 <= addr <= U64 and 0 <= pgoff <= U64 and base >= 0)
@icontract.require(lambda align: align in ALIGNS)
@icontract.require(lambda length: 0 < length <= TASK_SIZE_MAX and length % PAGE_SIZE == 0)
@icontract.require(lambda length, align, base: base % PAGE_SIZE == 0 and base + length + align <= TWO64)
@icontract.ensure(lambda addr, length, pgoff, align, base, result:
                  addr != 0 or not _aligned_case(length, pgoff, align) or base <= result <= base + align)
def dax_get_unmapped_area(addr: int, length: int, pgoff: int, align: int, base: int) -> int:
    if addr:
        return addr
    off = (pgoff << PAGE_SHIFT) & U64
    off_end = (off + length) & U64
    off_align = round_up(off, align)
    if off_end <= off_align or (off_end - off_align) < align:
        return base
    len_align = (length + align) & U64
    if ((off + len_align) & U64) < off:
        return base
    addr_align = base
    return (addr_align + (off - addr_align)) & U64            # the bug: no "& (align - 1)"
