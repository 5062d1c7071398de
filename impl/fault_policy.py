"""The fault policy the device layer runs in the handler process: the mm's fault and dev_dax_huge_fault.

The mm's part is spec/fault.py's: first_size asks the driver first at the largest size the vma
allows (thp_vma_suitable_order), at PTE size only on a vma with VM_NOHUGEPAGE (MADV_NOHUGEPAGE: not
THP-eligible, __handle_mm_fault -> thp_vma_allowable_order says no; on a 2M/1G device that is
SIGBUS, __dev_dax_pte_fault: "fault_size != align", docs/semantics.md#faults), and at most at PMD size
where a pmd table fills the PUD entry of the 1G slot (leaves_pmd_table: a fault there went below PUD
size; free_pgtables at munmap of the slot's last vma frees it). The device layer (impl/vma.py) marks
VM_NOHUGEPAGE vmas with VMA_NOHUGE in the shared vma descriptor; the pmd tables are the mm's, one per
1G slot in the shared table (table.py), set by the handler and freed by MappingCore's munmap.

Loaded by the handler with ``--policy devdax.impl.fault_policy:dax_vm_policy``.
"""

from __future__ import annotations

from .handler import Decision, dax_policy
from .table import VMA_NOHUGE, SharedTable

#: VmaDesc.flags bit: the vma has VM_DONTCOPY (recorded for observers; fork itself is the kernel's)
VMA_DONTCOPY = 1 << 9

__all__ = ["VMA_DONTCOPY", "VMA_NOHUGE", "dax_vm_policy"]


def dax_vm_policy(table: SharedTable, vma_idx: int, addr: int) -> Decision:
    """dax_policy, which reads VMA_NOHUGE and the slot's pmd table (handler.first_fault_size)."""
    return dax_policy(table, vma_idx, addr)
