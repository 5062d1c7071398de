"""BUG: check_vma recognises a shared mapping by VM_SHARED instead of VM_MAYSHARE (bug M2, 4cb19355ea19).

VM_SHARED is only set for MAP_SHARED on a writable file, so PROT_READ MAP_SHARED of an O_RDONLY
device is refused with EINVAL. Caught by "0 iff alive and VM_MAYSHARE and aligned".
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
    if not flags.shared:                                        # the bug: VM_SHARED for VM_MAYSHARE
        return -errno.EINVAL
    if vm_start % align or vm_end % align:
        return -errno.EINVAL
    return 0
