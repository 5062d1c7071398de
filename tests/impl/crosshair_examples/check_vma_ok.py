"""CORRECT (control): check_vma with the VM_MAYSHARE test, as 325896ffdf90 fixed it.

The same contract as check_vma_vm_shared.py; CrossHair must prove it over all paths. A control that
stopped being proved would mean the harness, not the code, changed.
"""

from __future__ import annotations

import errno

import icontract

from devdax.impl.pure import ALIGNS
from devdax.spec.geometry import U64, VmaFlags


@icontract.require(lambda vm_start, vm_end: 0 <= vm_start < vm_end <= U64)
@icontract.require(lambda align: align in ALIGNS)
@icontract.ensure(lambda alive, flags, vm_start, vm_end, align, result:
                  (result == 0) == (alive and flags.mayshare
                                    and vm_start % align == 0 and vm_end % align == 0))
def check_vma(alive: bool, flags: VmaFlags, vm_start: int, vm_end: int, align: int) -> int:
    if not alive:
        return -errno.ENXIO
    if not flags.mayshare:
        return -errno.EINVAL
    if vm_start % align or vm_end % align:
        return -errno.EINVAL
    return 0
