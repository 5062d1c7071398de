"""Where a mapping lands and which bytes a huge entry shows: three mm rules the kernel recordings
taught the spec (issue 12), each tested at 4K, 2M and 1G, each with the case that breaks it.

- geometry.mmap_addr: a hint is page-masked by arch_get_unmapped_area_topdown, MAP_FIXED is not
  (k16, k17: a hint one byte past an aligned base maps at the base; MAP_FIXED there is EINVAL).
- geometry.unmapped_area_topdown: the plain get_unmapped_area is a top-down search, so a request
  dax_get_unmapped_area does not align still lands aligned right under an aligned mapping (k12,
  k14, k20), and never by luck in an empty window.
- geometry.pfn_huge: a pmd/pud entry maps the aligned block below the phys the driver passed (F3's
  bytes, k20 and k21)."""

from __future__ import annotations

import pytest

from devdax.spec.config import FIXED_BASE, MM_WINDOW, Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import (
    PAGE_SIZE,
    is_aligned,
    mmap_addr,
    parse_align,
    pfn_huge,
    unmapped_area_topdown,
)
from devdax.spec.system import init
from devdax.spec.vma import do_mmap

ALIGNS = ["4K", "2M", "1G"]


@pytest.mark.parametrize("align", ALIGNS)
def test_a_huge_entry_maps_the_aligned_block_below(align: str) -> None:
    size = parse_align(align)
    phys = (7 << 30) + size + PAGE_SIZE  # one page past an aligned block: F3's vm_pgoff of 4K
    if size == PAGE_SIZE:
        assert pfn_huge(phys, size) == phys  # a pte maps exactly the page it is given
    else:
        assert pfn_huge(phys, size) == (7 << 30) + size
    assert pfn_huge((7 << 30) + size, size) == (7 << 30) + size  # an aligned phys is kept


def test_a_hint_is_page_masked_and_map_fixed_is_refused() -> None:
    assert mmap_addr(FIXED_BASE + 1, fixed=False) == FIXED_BASE
    assert mmap_addr(FIXED_BASE + 1, fixed=True) is None
    assert mmap_addr(FIXED_BASE + PAGE_SIZE, fixed=True) == FIXED_BASE + PAGE_SIZE
    assert mmap_addr(0, fixed=False) == 0


@pytest.mark.parametrize("align", ALIGNS)
def test_topdown_lands_aligned_right_under_an_aligned_mapping(align: str) -> None:
    size = parse_align(align)
    top = MM_WINDOW
    first = unmapped_area_topdown([], size, top)
    assert first == top - size
    assert size == PAGE_SIZE or not is_aligned(first, size)  # an empty window: never aligned by luck
    below = (top - 3 * size) & ~(size - 1)  # an aligned mapping dax_get_unmapped_area placed
    got = unmapped_area_topdown([(below, below + size)], size, top)
    assert got == top - size  # the gap above it still holds one unit: used from its top
    full = [(below, top)]
    assert unmapped_area_topdown(full, size, top) == below - size
    assert is_aligned(below - size, size)


def test_topdown_reuses_the_highest_hole_that_fits() -> None:
    top = 1 << 40
    m = 1 << 21
    busy = [(top - 2 * m, top), (top - 5 * m, top - 3 * m), (top - 8 * m, top - 6 * m)]
    assert unmapped_area_topdown(busy, m, top) == top - 3 * m  # the 2M hole between the first two
    assert unmapped_area_topdown(busy, 2 * m, top) == top - 10 * m  # no hole holds 4M: under all


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("hint", [True, False])
def test_do_mmap_one_byte_past_an_aligned_base(align: str, hint: bool) -> None:
    c = Ctx.of(Config(profile="modern", align=align, units=2, files=1, vmas=2, cpus=0, race=True))
    s = init(c)
    f = next(i for i, fl in enumerate(s.files) if fl.fd)
    out, after = do_mmap(c, s, f, MmapShape("hint+1", fixed_bytes=1, hint=hint)) or ("none", s)
    if hint:
        assert out == "ok"
        assert any(v.file >= 0 and v.start == FIXED_BASE for v in after.vmas)
    else:
        assert out == "EINVAL"
