"""The emulation places mappings by the spec's rules (tests/model/test_placement_rules.py): a hint
is page-masked, MAP_FIXED is not, and a plain mapping is found top-down, so one that
dax_get_unmapped_area does not align lands aligned right under an aligned one (k12, k20)."""

from __future__ import annotations

import errno
import os

import pytest

from devdax.impl import sys as dsys
from devdax.impl.bus import DaxBus

pytestmark = pytest.mark.timeout(60)

M2 = 2 << 20
RW = dsys.PROT_READ | dsys.PROT_WRITE
SH = dsys.MAP_SHARED


def _base(span: int) -> int:
    """A free 2M-aligned address, as the kernel runner finds one."""
    res = dsys.mmap(0, span + M2, dsys.PROT_NONE, dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS | dsys.MAP_NORESERVE)
    dsys.munmap(res, span + M2)
    return (res + M2 - 1) & ~(M2 - 1)


def test_a_hint_one_byte_past_a_base_maps_at_the_base(bus: DaxBus) -> None:
    r = bus.create_region(8 * M2, M2)
    f = bus.open(r.devices[0], os.O_RDWR)
    try:
        base = _base(4 * M2)
        m = f.mmap(2 * M2, RW, SH, 0, fixed_addr=base + 1)
        assert m.addr == base
        m.munmap()
        with pytest.raises(OSError) as e:
            f.mmap(2 * M2, RW, SH | dsys.MAP_FIXED, 0, fixed_addr=base + 1)
        assert e.value.errno == errno.EINVAL
    finally:
        f.close()
        bus.remove_region(r)


def test_an_unaligned_offset_lands_aligned_under_an_aligned_mapping(bus: DaxBus) -> None:
    r = bus.create_region(8 * M2, M2)
    f = bus.open(r.devices[0], os.O_RDWR)
    try:
        bus.mm_topdown = True  # the kernel's search, as the scenario backend asks for
        whole = f.mmap(4 * M2, RW, SH, 0)  # dax_get_unmapped_area aligns this one
        assert whole.addr % M2 == 0
        # offset 2M-4K: no aligned unit fits, the plain top-down search places it, under `whole`
        m = f.mmap(M2, RW, SH, M2 - 4096)
        assert m.addr == whole.addr - M2
        bus.mm_topdown = False  # the checker's allocator: never aligned by luck
        with pytest.raises(OSError) as e:
            f.mmap(M2, RW, SH, M2 - 4096)
        assert e.value.errno == errno.EINVAL
    finally:
        bus.mm_topdown = False
        f.close()
        bus.remove_region(r)
