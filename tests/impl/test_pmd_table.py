"""A pmd table left in a PUD slot, in impl (spec/fault.py first_size and leaves_pmd_table).

__handle_mm_fault tries create_huge_pud only while the PUD entry is none, and runs pmd_alloc()
before any attempt below PUD size; the table stays until free_pgtables frees it with the last vma
of its 1G slot (munmap), MADV_DONTNEED keeps it. So on a 1G device one PTE-sized fault (after
MADV_NOHUGEPAGE) makes every later fault of that slot start at PMD size and SIGBUS
(__dev_dax_pmd_fault: align > PMD_SIZE), MADV_HUGEPAGE or not (recorded: k37 and k24 on 6.1,
6.12 and 7.2). The table is the mm's, not a vma's: impl keeps one byte per 1G slot in the shared
table, set by the handler's policy and cleared by the core's munmap.

The 1G device's memory is whatever the machine can give (a 1G page, 2M pages, or 4K shmem): the
rule is the policy's, the same on all of them.
"""

from __future__ import annotations

import pytest

from devdax.impl import sys as dsys
from devdax.impl.bus import DaxBus
from devdax.impl.dax import MADV, MAP
from devdax.impl.vmcore import reserve

M2, G1 = 2 << 20, 1 << 30
RW = dsys.PROT_READ | dsys.PROT_WRITE
SH = MAP["MAP_SHARED"]
FIXED = MAP["MAP_SHARED"] | MAP["MAP_FIXED"]

_UFFD = dsys.uffd_unavailable()
pytestmark = [pytest.mark.skipif(_UFFD is not None, reason=_UFFD or ""), pytest.mark.timeout(120)]


def _free_slot() -> int:
    """A 1G-aligned 1G of free address space (a 1G slot no vma touches)."""
    at = reserve(G1, G1)
    dsys.munmap(at, G1)
    return at


def test_nohuge_fault_leaves_a_table_that_only_munmap_frees(bus: DaxBus) -> None:
    """k37's rule on one 1G unit: NOHUGEPAGE touch (SIGBUS at PTE size), DONTNEED, HUGEPAGE, and the
    touch still SIGBUSes (it starts at PMD size); munmap frees the table, a new vma there faults at
    PUD size again."""
    r = bus.create_region(G1, G1)
    f = bus.open(r.devices[0])
    at = _free_slot()
    v = f.mmap(G1, RW, FIXED, 0, at)
    table = bus.core.table
    assert not table.pmd_table(at)
    v.madvise(0, G1, MADV["MADV_NOHUGEPAGE"])
    assert v.touch(0) == "SIGBUS"  # __dev_dax_pte_fault: fault_size != align
    assert table.pmd_table(at) and table.pmd_table(at + G1 - 1)
    v.madvise(0, G1, MADV["MADV_DONTNEED"])  # zap_page_range keeps page tables
    v.madvise(0, G1, MADV["MADV_HUGEPAGE"])
    assert v.touch(0) == "SIGBUS"  # PMD first: align > PMD_SIZE
    assert v.touch(G1 - 1, True, 7) == "SIGBUS"
    assert table.pmd_table(at)
    v.munmap()
    assert not table.pmd_table(at)  # free_pgtables: the slot's last vma is gone
    w = f.mmap(G1, RW, FIXED, 0, at)
    assert w.touch(0, True, 5) == "ok" and w.read_byte(0) == ("ok", 5)
    assert not table.pmd_table(at)  # a PUD-sized fault allocates no pmd table
    w.munmap()


def test_the_table_is_the_mm_s_shared_by_the_vmas_of_its_slot(bus: DaxBus) -> None:
    """Two vmas in one 1G slot (a 2M device's mapping cut in two): a fault of one leaves the table
    (no 1G block fits the vma, so the mm starts at PMD size), munmap of the other keeps it, munmap
    of the last vma in the slot frees it."""
    r = bus.create_region(6 * M2, M2)
    f = bus.open(r.devices[0])
    at = _free_slot()
    v = f.mmap(3 * M2, RW, FIXED, 0, at)
    v.munmap(M2, M2)
    table = bus.core.table
    assert v.touch(0, True, 1) == "ok" and table.pmd_table(at)
    v.munmap(2 * M2, M2)
    assert table.pmd_table(at)  # the touched vma is still in the slot
    v.munmap(0, M2)
    assert not table.pmd_table(at)


def test_free_pgtables_keeps_slots_other_vmas_touch(bus: DaxBus) -> None:
    """SharedTable.free_pgtables over a range spanning slots: only the slots no vma touches lose
    their table; addresses beyond the 47-bit user space are never tracked."""
    table = bus.core.table
    r = bus.create_region(M2, M2)
    f = bus.open(r.devices[0])
    at = reserve(2 * G1, G1)
    dsys.munmap(at, 2 * G1)
    v = f.mmap(M2, RW, FIXED, 0, at + G1)  # in the second slot only
    table.leave_pmd_table(at)
    table.leave_pmd_table(at + G1)
    table.free_pgtables(at, at + 2 * G1)
    assert not table.pmd_table(at) and table.pmd_table(at + G1)
    v.munmap()
    assert not table.pmd_table(at + G1)
    table.leave_pmd_table(1 << 47)
    assert not table.pmd_table(1 << 47)
