"""UNKNOWN (control): preconditions no input can meet, so the postcondition is never reached.

CrossHair says "Unable to meet precondition" and nothing about the postcondition; the harness reports
UNKNOWN (a vacuous contract is not a proved one).
"""

from __future__ import annotations

import icontract

from devdax.impl.pure import ALIGNS


@icontract.require(lambda align: align in ALIGNS)
@icontract.require(lambda x, align: align in ALIGNS and x % align == 0 and x % align == 1)
@icontract.ensure(lambda x, result: result == x)
def impossible(x: int, align: int) -> int:
    return x
