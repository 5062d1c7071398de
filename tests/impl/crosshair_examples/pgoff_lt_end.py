"""BUG: pgoff_to_phys tests the range end with ``<`` instead of ``<=``.

An entry that ends exactly on the last byte of its range is refused (-1), so the last huge page of
every range SIGBUSes. Caught by the "None only when past the device or straddling" conjunct.
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS, Span, holder, is_layout
from devdax.spec.geometry import FAULT_SIZES, PAGE_SHIFT, PAGE_SIZE, U64, make_ranges


@icontract.require(lambda spans, align: align in ALIGNS and is_layout(spans, align))
@icontract.require(lambda pgoff, size: 0 <= pgoff <= U64 and size in FAULT_SIZES)
@icontract.ensure(lambda spans, pgoff, size, result:
                  result is not None or (h := holder(spans, pgoff)) is None
                  or h[0] + (pgoff - h[2]) * PAGE_SIZE + size > h[0] + h[1])
def pgoff_to_phys(spans: tuple[Span, ...], align: int, pgoff: int, size: int) -> int | None:
    for r in make_ranges(spans):
        if pgoff < r.pgoff or pgoff > r.pgoff + r.pages - 1:
            continue
        phys = ((pgoff - r.pgoff) << PAGE_SHIFT) + r.start
        if phys + size - 1 < r.end:                             # the bug: < for <=
            return phys
        return None
    return None
