"""Unit tests of the spec's pure helpers: geometry, the ida, the layout and Config validation.

These functions are shared by the state machine, the emulation and the Z3 lemmas, so each is pinned
here on the cases that decide behaviour a user can see: which errno wins in check_vma, when
dax_get_unmapped_area aligns and when it passes through, where a multi-range device's pages are.
"""

from __future__ import annotations

import errno

import pytest

from devdax.spec.config import GENERATION_STRIDE, REGION_BASE, Config, Layout
from devdax.spec.geometry import (
    FAULT_SIZES,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SIZE,
    PUD_SIZE,
    U64,
    FaultResult,
    FaultRules,
    PrivateTest,
    VmaFlags,
    check_vma,
    dax_get_unmapped_area,
    make_ranges,
    negotiate,
    next_fault_size,
    pgoff_to_phys,
)
from devdax.spec.state import ida_alloc

SHARED_RW = VmaFlags(shared=True, mayshare=True, write=True, noreserve=False, dontcopy=False)
SHARED_RO_FD = VmaFlags.from_mmap(map_shared=True, prot_write=False, file_writable=False, noreserve=False)
PRIVATE_RW = VmaFlags.from_mmap(map_shared=False, prot_write=True, file_writable=True, noreserve=False)
PRIVATE_NORESERVE = VmaFlags.from_mmap(map_shared=False, prot_write=True, file_writable=True, noreserve=True)
PRIVATE_RO = VmaFlags.from_mmap(map_shared=False, prot_write=False, file_writable=True, noreserve=False)
A = PMD_SIZE
BASE = 0x7F00_0000_0000 + A * 4


# --- check_vma ---------------------------------------------------------------------------------


def test_check_vma_accepts_an_aligned_shared_mapping() -> None:
    assert check_vma(True, SHARED_RW, BASE, BASE + A, A) == 0
    assert check_vma(True, SHARED_RO_FD, BASE, BASE + 2 * A, A) == 0  # M2: VM_MAYSHARE test


def test_check_vma_alive_is_checked_first() -> None:
    """A dead device says ENXIO even for a mapping that is also private and misaligned."""
    assert check_vma(False, PRIVATE_RW, BASE + PAGE_SIZE, BASE + A, A) == -errno.ENXIO


def test_check_vma_private_before_alignment_and_after_alive() -> None:
    assert check_vma(True, PRIVATE_RW, BASE + PAGE_SIZE, BASE + A, A) == -errno.EINVAL
    assert check_vma(True, PRIVATE_RW, BASE, BASE + A, A) == -errno.EINVAL


@pytest.mark.parametrize("start, end", [(BASE + PAGE_SIZE, BASE + A), (BASE, BASE + A + PAGE_SIZE)])
def test_check_vma_misaligned(start: int, end: int) -> None:
    assert check_vma(True, SHARED_RW, start, end, A) == -errno.EINVAL
    assert check_vma(True, SHARED_RW, start, end, PAGE_SIZE) == 0


@pytest.mark.parametrize(
    "test, flags, want",
    [
        (PrivateTest.V47_NORESERVE, PRIVATE_RW, -errno.EINVAL),
        (PrivateTest.V47_NORESERVE, PRIVATE_NORESERVE, 0),  # M1: slips through
        (PrivateTest.V47_NORESERVE, PRIVATE_RO, 0),  # M1: read-only private always allowed
        (PrivateTest.VM_SHARED, PRIVATE_NORESERVE, -errno.EINVAL),
        (PrivateTest.VM_SHARED, SHARED_RO_FD, -errno.EINVAL),  # M2: shared read-only on O_RDONLY refused
        (PrivateTest.VM_MAYSHARE, SHARED_RO_FD, 0),
        (PrivateTest.VM_MAYSHARE, PRIVATE_RO, -errno.EINVAL),
        (PrivateTest.VM_MAYSHARE, PRIVATE_NORESERVE, -errno.EINVAL),
    ],
)
def test_check_vma_private_test_per_era(test: PrivateTest, flags: VmaFlags, want: int) -> None:
    assert check_vma(True, flags, BASE, BASE + A, A, test) == want


def test_check_vma_later_checks() -> None:
    assert check_vma(True, SHARED_RW, BASE, BASE + A, A, pfn_dev_only=True) == -errno.EINVAL
    dontcopy = VmaFlags(True, True, True, False, True)
    assert check_vma(True, dontcopy, BASE, BASE + A, A, pfn_dev_only=True) == 0
    assert check_vma(True, SHARED_RW, BASE, BASE + A, A, s_dax=False) == -errno.EINVAL  # M10


def test_vma_flags_from_mmap() -> None:
    assert SHARED_RO_FD.mayshare and not SHARED_RO_FD.shared
    assert not PRIVATE_RW.mayshare and not PRIVATE_RW.shared and PRIVATE_RW.write


# --- dax_get_unmapped_area ---------------------------------------------------------------------


class Mm:
    """A recording mm->get_unmapped_area that returns a page-aligned but not huge-aligned address."""

    def __init__(self, at: int = 0x7F00_0000_0000 + PAGE_SIZE) -> None:
        self.at = at
        self.asked: list[int] = []

    def __call__(self, length: int) -> int:
        self.asked.append(length)
        return self.at


@pytest.mark.parametrize("addr", [BASE, BASE + PAGE_SIZE, 0x1000])
def test_unmapped_area_passes_a_hint_or_fixed_address_through(addr: int) -> None:
    mm = Mm()
    assert dax_get_unmapped_area(addr, A, 0, A, mm) == addr
    assert mm.asked == []


@pytest.mark.parametrize("align", [PAGE_SIZE, PMD_SIZE, PUD_SIZE])
@pytest.mark.parametrize("pgoff_units, extra_pages", [(0, 0), (1, 0), (3, 5), (0, 1)])
def test_unmapped_area_congruent_to_offset(align: int, pgoff_units: int, extra_pages: int) -> None:
    off = pgoff_units * align + extra_pages * PAGE_SIZE
    length = 2 * align
    mm = Mm()
    addr = dax_get_unmapped_area(0, length, off >> PAGE_SHIFT, align, mm)
    assert (addr - off) % align == 0
    assert mm.asked == [length + align], "asks for one extra unit to have room to align"
    assert mm.at <= addr < mm.at + align


def test_unmapped_area_too_short_to_hold_an_aligned_unit() -> None:
    mm = Mm()
    # offset one page into a unit, one unit long: [off, off+len) holds no whole aligned unit
    assert dax_get_unmapped_area(0, A, 1, A, mm) == mm.at
    assert mm.asked == [A]
    mm = Mm()
    assert dax_get_unmapped_area(0, A - PAGE_SIZE, 0, A, mm) == mm.at
    assert mm.asked == [A - PAGE_SIZE]


def test_unmapped_area_overflow_falls_back() -> None:
    """off + len + align wraps around u64: the plain allocator, no alignment promised."""
    mm = Mm()
    pgoff = ((U64 + 1) - 2 * A) >> PAGE_SHIFT  # off = 2^64 - 2A, len = A: off + len + A wraps
    assert dax_get_unmapped_area(0, A, pgoff, A, mm) == mm.at
    assert mm.asked == [A]


# --- pgoff_to_phys and the layout ---------------------------------------------------------------


def test_layout_multi_range_leaves_holes_and_concatenates_pgoffs() -> None:
    cfg = Config(units=3, ranges=2, devices=2, generations=2)
    lay = Layout.of(cfg)
    assert len(lay.ranges) == 4
    r0, r1 = lay.ranges[0]
    assert (r0.start, r0.end - r0.start + 1) == (REGION_BASE, 2 * A)  # 3 units over 2 ranges: 2 + 1
    assert r1.start == r0.end + 1 + A, "a one-unit hole after each range"
    assert r1.end - r1.start + 1 == A
    assert (r0.pgoff, r1.pgoff) == (0, (2 * A) >> PAGE_SHIFT), "pgoff space is the concatenation"
    assert lay.size(0) == 3 * A
    # the second device starts after the first one's trailing hole; generation 1 in its own window
    assert lay.ranges[1][0].start == r1.end + 1 + A
    assert lay.ranges[2][0].start == REGION_BASE + GENERATION_STRIDE


def test_layout_1g_alignment() -> None:
    lay = Layout.of(Config(align="1G", units=2, ranges=2))
    r0, r1 = lay.ranges[0]
    assert r0.end - r0.start + 1 == PUD_SIZE and r1.start == r0.start + 2 * PUD_SIZE


def test_pgoff_to_phys_over_ranges() -> None:
    (r0, r1) = Layout.of(Config(units=3, ranges=2)).ranges[0]
    ranges = (r0, r1)
    unit = A >> PAGE_SHIFT
    assert pgoff_to_phys(ranges, 0, A) == r0.start
    assert pgoff_to_phys(ranges, unit, A) == r0.start + A
    assert pgoff_to_phys(ranges, 2 * unit, A) == r1.start, "jumps the hole"
    assert pgoff_to_phys(ranges, 2 * unit + 5, PAGE_SIZE) == r1.start + 5 * PAGE_SIZE
    assert pgoff_to_phys(ranges, 3 * unit, PAGE_SIZE) is None, "past the end of the device"
    assert pgoff_to_phys(ranges, 3 * unit - 1, PAGE_SIZE) == r1.end + 1 - PAGE_SIZE


def test_pgoff_to_phys_never_straddles_a_range() -> None:
    ranges = make_ranges([(REGION_BASE, A + 8 * PAGE_SIZE), (REGION_BASE + 4 * A, A)])
    first_pages = (A >> PAGE_SHIFT) + 8
    # a 2M entry starting 8 pages before the end of range 0 would run into the hole
    assert pgoff_to_phys(ranges, first_pages - 8, A) is None
    assert pgoff_to_phys(ranges, first_pages - 8, PAGE_SIZE) == REGION_BASE + A
    assert pgoff_to_phys(ranges, 0, A) == REGION_BASE
    assert pgoff_to_phys(ranges, first_pages, A) == REGION_BASE + 4 * A


# --- fault-size negotiation -------------------------------------------------------------------


@pytest.mark.parametrize("size", FAULT_SIZES)
@pytest.mark.parametrize("align", FAULT_SIZES)
def test_negotiate_table(size: int, align: int) -> None:
    got = negotiate(size, align, FaultRules())
    want = FaultResult.FALLBACK if size > align else FaultResult.SIGBUS if size < align else None
    assert got is want
    # before the M3/M4 fix a larger fault is not refused: it proceeds (and inserts too much)
    old = negotiate(size, align, FaultRules(fallback=False))
    assert old is (FaultResult.SIGBUS if size < align else None)


def test_negotiate_without_pud_support() -> None:
    rules = FaultRules(pud_supported=False)
    for align in FAULT_SIZES:
        assert negotiate(PUD_SIZE, align, rules) is FaultResult.FALLBACK
    assert negotiate(PMD_SIZE, PMD_SIZE, rules) is None


def test_next_fault_size() -> None:
    assert next_fault_size(PUD_SIZE) == PMD_SIZE
    assert next_fault_size(PMD_SIZE) == PAGE_SIZE
    assert next_fault_size(PAGE_SIZE) is None


# --- the ida -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mask, want", [(0, 0), (0b1, 1), (0b10, 0), (0b101, 1), (0b111, 3), (0b1011, 2)])
def test_ida_alloc_lowest_free(mask: int, want: int) -> None:
    assert ida_alloc(mask) == want


def test_ida_alloc_limit_is_exclusive() -> None:
    assert ida_alloc(0b01, 2) == 1
    assert ida_alloc(0b11, 2) is None
    assert ida_alloc(0, 0) is None
    assert ida_alloc(0b11, None) == 2, "no limit: v4.10's ida_simple_get(.., 0, 0)"
    assert ida_alloc((1 << 300) - 1) == 300


# --- Config validation --------------------------------------------------------------------------

FAULTS_BINDS = (
    "spec/config.py Config.__post_init__ reports 'faults/binds: ...' for either field: the "
    "error should name the one option that is wrong"
)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"devices": 0}, "devices"),
        ({"units": 0}, "units"),
        ({"generations": 0}, "generations"),
        ({"files": -1}, "files"),
        ({"vmas": -1}, "vmas"),
        ({"cpus": -1}, "cpus"),
        ({"faults": -1}, "faults"),
        ({"binds": -1}, "binds"),
        ({"ranges": 3, "units": 2}, "ranges"),
        ({"first_fault": "huge"}, "first_fault"),
        ({"align": "3M"}, "align"),
        ({"devices": 3, "generations": 3}, "devices*generations"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """The text before the first colon is exactly the offending option (the CLI prints it)."""
    with pytest.raises(ValueError) as err:
        Config(**kwargs)  # type: ignore[arg-type]
    assert str(err.value).split(":")[0] == field, str(err.value)


def test_config_zero_populations_are_allowed() -> None:
    cfg = Config(files=0, vmas=0, cpus=0, faults=0)
    assert cfg.instances == 1 and cfg.align_bytes == A and cfg.first_fault_bytes == PUD_SIZE


# --- munmap of a vma's first page on a profile without ->split -----------------------------------


def test_munmap_first_page_never_leaves_an_empty_vma() -> None:
    from devdax.spec.ctx import Ctx
    from devdax.spec.system import init, successors

    c = Ctx.of(Config(profile="v4.7", munmap_parts=True, files=1, vmas=1, cpus=0, first_fault="pmd"))
    s = init(c)
    while not (s.files[0].fd and s.vmas[0].file >= 0):
        ts = successors(c, s)
        s = next(
            t.state
            for t in ts
            if (t.action in ("mmap", "open") and t.outcome == "ok")
            or (t.action == "admin" and t.args[0] == "probe")
        )
    for _ in range(A // PAGE_SIZE + 2):
        t = next((t for t in successors(c, s) if t.action == "munmap" and t.args[1] == "misaligned"), None)
        if t is None:
            break
        s = t.state
        vma = s.vmas[0]
        assert vma.file < 0 or vma.start < vma.end, f"vma [{vma.start:#x}, {vma.end:#x})"
