"""BUG: fault-size negotiation without the fallback (the driver before the M3/M4 fix).

A pmd or pud fault on a smaller-aligned device proceeds instead of answering VM_FAULT_FALLBACK, and
the handler goes on to insert an entry larger than the device's unit. Caught by "> align is FALLBACK".
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS
from devdax.spec.geometry import FAULT_SIZES, FaultResult


@icontract.require(lambda fault_size, align: fault_size in FAULT_SIZES and align in ALIGNS)
@icontract.ensure(lambda fault_size, align, result: fault_size <= align or result is FaultResult.FALLBACK)
def negotiate(fault_size: int, align: int) -> FaultResult | None:
    if fault_size < align:
        return FaultResult.SIGBUS
    return None                                                 # the bug: > align proceeds too
