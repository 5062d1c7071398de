"""BUG: pgoff_to_phys tests the range end with ``<`` instead of ``<=``.

An entry that ends exactly on the last byte of its range is refused (-1), so the last huge page of
every range SIGBUSes. Caught by the "None only when past the device or straddling" conjunct.
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS, holder, is_layout
from devdax.spec.geometry import FAULT_SIZES, PAGE_SHIFT, PAGE_SIZE, U64, Range


@icontract.require(lambda ranges, align: align in ALIGNS and len(ranges) > 0 and is_layout(ranges, align))
@icontract.require(lambda pgoff, size: 0 <= pgoff <= U64 and size in FAULT_SIZES)
@icontract.ensure(lambda ranges, pgoff, size, result:
                  result is not None or (r := holder(ranges, pgoff)) is None
                  or r.start + (pgoff - r.pgoff) * PAGE_SIZE + size - 1 > r.end)
def pgoff_to_phys(ranges: tuple[Range, ...], align: int, pgoff: int, size: int) -> int | None:
    for r in ranges:
        if pgoff < r.pgoff or pgoff > r.pgoff + r.pages - 1:
            continue
        phys = ((pgoff - r.pgoff) << PAGE_SHIFT) + r.start
        if phys + size - 1 < r.end:                             # the bug: < for <=
            return phys
        return None
    return None
