"""BUG: pgoff_to_phys only checks that the entry starts inside the range, not that it ends there.

A huge entry near a range end runs on past it (into the next range's memory or into nothing): the
straddle the kernel turns into SIGBUS. Caught by "the entry lies in exactly one range".
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS, Span, is_layout, spans_holding
from devdax.spec.geometry import FAULT_SIZES, PAGE_SHIFT, U64, make_ranges


@icontract.require(lambda spans, align: align in ALIGNS and is_layout(spans, align))
@icontract.require(lambda pgoff, size: 0 <= pgoff <= U64 and size in FAULT_SIZES)
@icontract.ensure(lambda spans, size, result: result is None or spans_holding(spans, result, size) == 1)
def pgoff_to_phys(spans: tuple[Span, ...], align: int, pgoff: int, size: int) -> int | None:
    for r in make_ranges(spans):
        if pgoff < r.pgoff or pgoff > r.pgoff + r.pages - 1:
            continue
        phys = ((pgoff - r.pgoff) << PAGE_SHIFT) + r.start
        if phys <= r.end:                                       # the bug: the entry's end unchecked
            return phys
        return None
    return None
