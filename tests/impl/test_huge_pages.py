"""Real huge entries in impl (issue 12 item 4): 2M and 1G devices on hugetlbfs memory.

One test per rule, each citing where the kernel does it:

* a huge entry maps round_down(phys, size) (x86 pfn_pmd/pfn_pud mask the pfn; mm/huge_memory.c
  vmf_insert_pfn_pmd/pud): MAP_FIXED at an aligned address with file offset 4K reads the bytes of
  device offset 0, what tests/kernel-results/*/ recorded for f3_fixed_unaligned_offset_2m (step 5:
  "read 17"), and k21 on 1G;
* smaps KernelPageSize of a device vma is the device align (drivers/dax/device.c dev_dax_pagesize,
  read by vma_kernel_pagesize in mm/hugetlb.c), which impl's hugetlbfs vmas report by themselves;
* a zap of part of a huge entry drops the whole entry (zap_pmd_range -> __split_huge_pmd, which
  only clears a file vma's PMD), where hugetlbfs alone would refuse the unaligned start;
* where no huge page can be had, the backing stays at 4K pages, says why, warns once, and the bytes
  follow the same rule.

The hugetlbfs tests need free huge pages; `make hugepages` reserves them (root; CI runs it). As
root this module raises the pools itself as make hugepages would; it skips, with the reason, only
where they still cannot be had.
"""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from devdax.impl import sys as dsys
from devdax.impl.bus import DaxBus
from devdax.impl.core import MappingCore
from devdax.impl.dax import MAP
from devdax.impl.vmcore import reserve

K4, M2, G1 = 4096, 2 << 20, 1 << 30
RW = dsys.PROT_READ | dsys.PROT_WRITE
SH = MAP["MAP_SHARED"]
FIXED = MAP["MAP_SHARED"] | MAP["MAP_FIXED"]
REGION_2M = 8 * M2  # 8 huge pages


def _pool(page: int, need: int) -> str | None:
    """None when ``need`` pages of ``page`` bytes are free (raising the pool as root if it is
    short, never lowering it), else why not."""
    name = "2M" if page == M2 else "1G"
    free = dsys.hugepages_free(page)
    if free < need and os.geteuid() == 0:
        path = f"{dsys.HUGEPAGES_SYSFS}/hugepages-{page >> 10}kB/nr_hugepages"
        try:
            with open(path) as f:
                total = int(f.read())
            with open(path, "w") as f:
                f.write(str(total + need - free))
        except OSError:
            pass
        free = dsys.hugepages_free(page)
    if not dsys.uffd_features() & dsys.UFFD_FEATURE_MINOR_HUGETLBFS:
        return "userfaultfd has no minor faults on hugetlbfs on this kernel"
    if free < need:
        return f"{need} free {name} hugepages needed, {free} free (make hugepages, as root)"
    return None


_UFFD = dsys.uffd_unavailable()
NO_2M = _UFFD or _pool(M2, REGION_2M // M2)
NO_1G = _UFFD or _pool(G1, 1)
for _why in filter(None, {NO_2M, NO_1G}):
    warnings.warn(f"tests/impl/test_huge_pages.py skips: {_why}", stacklevel=1)
pytestmark = pytest.mark.skipif(_UFFD is not None, reason=_UFFD or "")
needs_2m = pytest.mark.skipif(NO_2M is not None, reason=f"no 2M hugepages: {NO_2M}")
needs_1g = pytest.mark.skipif(NO_1G is not None, reason=f"no 1G hugepage: {NO_1G}")


def _f3(bus: DaxBus, align: int, size: int) -> tuple[list[str | None], int, int]:
    """F3's steps on one device: markers 17 at device offset 0 and 34 at 4K through an offset-0
    mapping, then MAP_FIXED at an aligned address with file offset 4K; returns what that mapping
    reads at +0 and +4K, its KernelPageSize and the backing's page size."""
    r = bus.create_region(size, align)
    f = bus.open(r.devices[0])
    whole = f.mmap(align, RW, SH)
    assert whole.touch(0, True, 17) == "ok" and whole.touch(K4, True, 34) == "ok"
    at = reserve(align, align)
    dsys.munmap(at, align)  # a free, aligned range, as the scenario backend's fixed_offset
    m = f.mmap(align, RW, FIXED, K4, at)
    got = [str(m.read_byte(o)[1]) for o in (0, K4)]
    return [*got], dsys.kernel_page_size(m.addr) or 0, r.backing.backing.page


@needs_2m
def test_2m_entry_maps_the_aligned_block(bus: DaxBus) -> None:
    """F3 on a real PMD: offset 4K shows device offset 0 (17), +4K device offset 4K (34): the
    recorded kernels read 17 at step 5 of f3_fixed_unaligned_offset_2m."""
    got, kps, page = _f3(bus, M2, REGION_2M)
    assert page == M2 and kps == M2
    assert got == ["17", "34"]
    assert bus.core.counters()["install_pmd"] >= 2


@needs_1g
def test_1g_entry_is_one_pud_and_unaligned_offsets_fit_by_the_exact_phys(bus: DaxBus) -> None:
    """A 1G device on one 1G page: one fault installs one PUD, smaps says 1048576 kB. With file
    offset 4K the unit would reach 4K past the device: dax_pgoff_to_phys tests the exact phys
    ("phys + size - 1 <= range->end") before the entry masks it, so it SIGBUSes although the aligned
    block would fit. (F3's bytes at 1G need a second 1G page, more than make hugepages takes: k21
    checks them on 4K pages through the conformance recordings.)"""
    r = bus.create_region(G1, G1)
    f = bus.open(r.devices[0])
    v = f.mmap(G1, RW, SH)
    assert r.backing.backing.page == G1
    assert v.touch(G1 - 1, True, 9) == "ok" and v.read_byte(5) == ("ok", 0)
    assert bus.core.counters()["install_pud"] == 1 and dsys.kernel_page_size(v.addr) == G1
    at = reserve(G1, G1)
    dsys.munmap(at, G1)
    assert f.mmap(G1, RW, FIXED, K4, at).touch(0) == "SIGBUS"


@needs_2m
def test_smaps_page_size_is_the_device_align(bus: DaxBus) -> None:
    """dev_dax_pagesize: KernelPageSize and MMUPageSize of a 2M device's vma are 2048 kB; a 4K
    device's are 4 kB (its backing never takes huge pages: a 4K unit cannot be part of one)."""
    big = bus.create_region(REGION_2M, M2)
    small = bus.create_region(REGION_2M, K4)
    for r, want in ((big, M2), (small, K4)):
        v = bus.open(r.devices[0]).mmap(4 * M2, RW, SH)
        assert v.touch(M2 + 5) == "ok"
        assert dsys.kernel_page_size(v.addr) == want
        assert bus.core.page_size(v.areas[0].m) == want
    assert small.backing.backing.page == K4 and small.backing.backing.why == ""


@needs_2m
def test_partial_zap_drops_whole_entries() -> None:
    """MADV_DONTNEED from the middle of one PMD to the middle of the next drops both (the next touch
    of either end faults again); hugetlbfs alone would refuse the unaligned start with EINVAL."""
    with MappingCore() as c:
        b = c.create_backing(4 * M2)
        d = c.add_device(b, [(0, 4 * M2)], M2)
        m = c.map_shared(d, 4 * M2)
        assert b.page == M2
        assert c.touch_read(m.addr, 4 * M2).outcome == "ok"
        assert c.counters()["faults"] == 4
        with pytest.raises(OSError):
            dsys.madvise(m.addr + M2 // 2, M2, dsys.MADV_DONTNEED)
        c.zap_range(m, m.addr + M2 // 2, m.addr + M2 + M2 // 2)
        assert (
            c.touch_read(m.addr, 1).outcome == "ok" and c.touch_read(m.addr + 2 * M2 - 1, 1).outcome == "ok"
        )
        assert c.counters()["faults"] == 6  # both entries refaulted, the others did not
        assert c.touch_read(m.addr + 3 * M2, 1).outcome == "ok" and c.counters()["faults"] == 6


@needs_2m
def test_hugetlb_device_lifecycle() -> None:
    """The handler's other paths on huge pages: a forked child reads through its own context, a
    kill poisons whole entries, write_backing reaches memory hugetlbfs cannot write(2)."""
    with MappingCore() as c:
        b = c.create_backing(2 * M2)
        d = c.add_device(b, [(0, 2 * M2)], M2)
        c.write_backing(b, M2 + 3, b"\x42")
        m = c.map_shared(d, 2 * M2)
        assert c.touch_in_child(m.addr + M2 + 3).value == 0x42
        assert os.pread(b.fd, 1, M2 + 3) == b"\x42"
        c.kill_device(d)
        assert c.touch_read(m.addr + M2 + 3, 1).outcome == "SIGBUS"
        assert c.touch_in_child(m.addr + 5).outcome == "SIGBUS"
        assert c.counters()["errors"] == 0


def test_fallback_without_huge_pages(caplog: pytest.LogCaptureFixture) -> None:
    """Where no huge page can be had the backing stays at 4K pages and says why, one warning line
    is logged per cause, and the bytes follow the kernel's rule all the same (round_down)."""
    from devdax.impl import core as core_mod

    core_mod._REPORTED.discard((M2, "4K"))
    with MappingCore(huge=False) as c, caplog.at_level(logging.WARNING, "devdax.impl"):
        bs = [c.create_backing(2 * M2) for _ in range(2)]
        devs = [c.add_device(b, [(0, 2 * M2)], M2) for b in bs]
        assert all(b.page == K4 and "huge=False" in b.why for b in bs)
        assert len([r for r in caplog.records if "4K pages" in r.getMessage()]) == 1
        m = c.map_shared(devs[0], 2 * M2)
        assert c.touch_write(m.addr + 5, b"\x07").outcome == "ok"
        assert c.page_size(m) == K4
        assert [p.phys for p in c.pieces(c._devices[devs[0]].ranges, 1, M2, M2)] == [0]


def test_fallback_when_the_pool_is_short() -> None:
    """A backing larger than the free pool: 4K pages, and ``why`` gives the numbers."""
    free = dsys.hugepages_free(M2)
    with MappingCore() as c:
        b = c.create_backing((free + 1) * M2)
        c.add_device(b, [(0, (free + 1) * M2)], M2)
        assert b.page == K4 and f"{free + 1} free 2M hugepages needed" in b.why


def test_reading_the_fd_first_keeps_4k_pages() -> None:
    """A backing whose fd was handed out before its first device may hold data written through it,
    so it is not replaced by hugetlbfs memory."""
    with MappingCore() as c:
        b = c.create_backing(2 * M2)
        os.pwrite(b.fd, b"x", 0)
        c.add_device(b, [(0, 2 * M2)], M2)
        assert b.page == K4 and os.pread(b.fd, 1, 0) == b"x"


def test_1g_device_takes_2m_pages_when_no_1g_page_is_free(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The next size down: a 1G device whose 1G pool is short gets 2M pages (entries of 2M, smaps
    2048 kB: not the kernel's 1G, so it is reported). The pools are faked: 512 free 2M pages are
    more than make hugepages reserves."""
    from devdax.impl import core as core_mod

    def fake(self: MappingCore, size: int, page: int) -> tuple[int, str]:
        if page == G1:
            return -1, "1 free 1G hugepages needed, 0 free"
        fd = dsys.memfd_create("fake-2m")
        dsys.ftruncate(fd, size)
        return fd, ""

    monkeypatch.setattr(MappingCore, "_hugetlb", fake)
    core_mod._REPORTED.discard((G1, "2M"))
    with MappingCore() as c, caplog.at_level(logging.WARNING, "devdax.impl"):
        b = c.create_backing(G1)
        c.add_device(b, [(0, G1)], G1)
        assert b.page == M2 and b.why.startswith("1 free 1G hugepages needed")
        assert any("a 1G device uses 2M pages" in r.getMessage() for r in caplog.records)
        with pytest.raises(OSError):  # a 4K device cannot live on 2M pages
            c.add_device(b, [(0, G1)], K4)
