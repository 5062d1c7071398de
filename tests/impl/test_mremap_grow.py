"""mremap growing a vma in place keeps its installed entries (impl/vmcore.py VmCore.grow).

The kernel's in-place growth (mremap -> vma_expandable -> vma_merge / vma_expand) only moves
vm_end: the page tables, and the entries in them, stay. A new end that is not a multiple of the
device align makes every later *fault* of the vma SIGBUS (check_vma), while a touch of a unit
installed before the growth does not fault and succeeds (recorded: k34 step 15 on 6.1, 6.12, 7.2).
What impl must drop are its poison markers: they cache SIGBUS decisions that the new vm_end may
change (an unaligned vma grown to an aligned end faults fine again).
"""

from __future__ import annotations

import pytest

from devdax.impl import sys as dsys
from devdax.impl.bus import DaxBus
from devdax.impl.dax import MAP
from devdax.impl.vma import present_units
from devdax.impl.vmcore import absent_runs, reserve

K4, M2 = 4096, 2 << 20
RW = dsys.PROT_READ | dsys.PROT_WRITE
FIXED = MAP["MAP_SHARED"] | MAP["MAP_FIXED"]

_UFFD = dsys.uffd_unavailable()
pytestmark = [pytest.mark.skipif(_UFFD is not None, reason=_UFFD or ""), pytest.mark.timeout(120)]


def test_grow_keeps_entries_and_drops_markers(bus: DaxBus) -> None:
    """k34's steps on a 2M device: grown to an unaligned end, the unit installed before still reads
    its byte, a unit never touched SIGBUSes (check_vma); grown on to an aligned end, that unit
    (whose poison marker must not outlive the decision) faults in. (Not the unit at the old
    unaligned end: on hugetlbfs pages impl maps a partial page there to the empty memfd, which a
    later growth does not replace; see vmcore.clip_pieces.)"""
    r = bus.create_region(8 * M2, M2)
    f = bus.open(r.devices[0])
    at = reserve(8 * M2, M2)
    dsys.munmap(at, 8 * M2)
    v = f.mmap(4 * M2, RW, FIXED, 0, at)
    assert v.touch(M2, True, 143) == "ok"
    assert v.mremap(0, 4 * M2, 4 * M2 + K4) == at  # in place, vm_end unaligned
    assert present_units(at, at + 4 * M2, M2) == [at + M2]
    assert v.check(M2, 143) == "ok"  # installed before: no fault
    assert v.touch(2 * M2) == "SIGBUS"  # a new fault: check_vma refuses the vma
    assert v.touch(4 * M2) == "SIGBUS"
    assert v.mremap(0, 4 * M2 + K4, 5 * M2) == at  # aligned again
    assert v.check(M2, 143) == "ok"
    assert v.touch(2 * M2, True, 9) == "ok"  # its marker went with the growth
    v.munmap()


def test_absent_runs_are_the_units_without_an_entry(bus: DaxBus) -> None:
    """The units the growth zaps: runs of units whose first page has no entry, clipped to the
    range (a vma may end inside a unit)."""
    r = bus.create_region(4 * M2, M2)
    f = bus.open(r.devices[0])
    at = reserve(4 * M2, M2)
    dsys.munmap(at, 4 * M2)
    v = f.mmap(4 * M2, RW, FIXED, 0, at)
    assert v.touch(M2) == "ok"
    assert absent_runs(at, at + 3 * M2 + K4, M2) == [(at, at + M2), (at + 2 * M2, at + 3 * M2 + K4)]
    assert absent_runs(at + M2, at + 2 * M2, M2) == []
    v.munmap()
