"""The fault policy the device layer runs in the handler process: dev_dax_huge_fault plus VM_NOHUGEPAGE.

handler.dax_policy asks the driver first at the largest size the vma allows (thp_vma_suitable_order).
A vma with VM_NOHUGEPAGE (MADV_NOHUGEPAGE) is not THP-eligible, so the mm calls ->fault at PTE size
only (mm/memory.c __handle_mm_fault -> thp_vma_allowable_order says no), and on a 2M/1G device that is
SIGBUS (__dev_dax_pte_fault: "fault_size != align" -> VM_FAULT_SIGBUS; kernel-semantics 1.7). The
device layer (impl/vma.py) marks such vmas with VMA_NOHUGE in the shared vma descriptor; every other
decision is handler.dax_policy's, unchanged.

Loaded by the handler with ``--policy devdax.impl.fault_policy:dax_vm_policy``.
"""

from __future__ import annotations

from devdax.spec import geometry

from .handler import Decision, _ranges, dax_policy, device_rules
from .table import VMA_MAYSHARE, VMA_SHARED, VMA_WRITE, SharedTable

PAGE = geometry.PAGE_SIZE
#: VmaDesc.flags bit (beyond the core's three): the vma has VM_NOHUGEPAGE
VMA_NOHUGE = 1 << 8
#: VmaDesc.flags bit: the vma has VM_DONTCOPY (recorded for observers; fork itself is the kernel's)
VMA_DONTCOPY = 1 << 9


def dax_vm_policy(table: SharedTable, vma_idx: int, addr: int) -> Decision:
    """dax_policy, except that a VM_NOHUGEPAGE vma is faulted at PTE size only."""
    vma = table.t.vmas[vma_idx]
    vflags = int(vma.flags)
    if not vflags & VMA_NOHUGE:
        return dax_policy(table, vma_idx, addr)
    dev_idx = int(vma.dev)
    dev = table.t.devices[dev_idx]
    start, end, align = int(vma.start), int(vma.end), int(dev.align)
    alive = bool(dev.alive)
    flags = geometry.VmaFlags(
        shared=bool(vflags & VMA_SHARED),
        mayshare=bool(vflags & VMA_MAYSHARE),
        write=bool(vflags & VMA_WRITE),
        noreserve=False,
        dontcopy=False,
    )
    vma_ok = geometry.check_vma(alive, flags, start, end, align) == 0
    unit = max(align, PAGE)
    poison_at = max(start, addr & ~(unit - 1))
    poison_len = max(PAGE, min(unit, end - poison_at))
    if not vma_ok:
        return Decision(False, poison_at, poison_len, "check_vma" if alive else "dead")
    d = geometry.dax_huge_fault(
        PAGE,
        addr,
        start,
        end,
        int(vma.pgoff),
        align,
        _ranges(table, dev_idx),
        vma_ok,
        device_rules(int(dev.rules)),
    )
    if d.result is geometry.FaultResult.NOPAGE:
        return Decision(True, d.addr, PAGE, "ok")
    # a PTE fault on a huge-aligned device: SIGBUS for the whole unit (the marker answers later
    # touches of the unit the same way the kernel's handler would each time)
    return Decision(False, poison_at, poison_len, "fault")
