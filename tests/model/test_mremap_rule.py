"""mremap(2) by spec/mm.py mremap_path and mremap_move, in 6.1's order (mm/mremap.c). Recorded on
6.1, 6.12 and 7.2 (k34, k35, k42): old_len == new_len is nothing at all, even with
MREMAP_MAYMOVE; with MAYMOVE a sub-range of a vma moves (may_split at its ends); old_len 0 on a
shared mapping duplicates it. Each rule has its failing twin, at 4K, 2M and 1G."""

from __future__ import annotations

import pytest

from devdax.spec import mm
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import PAGE_SIZE, parse_align
from devdax.spec.state import State
from devdax.spec.system import init

ALIGNS = ["4K", "2M", "1G"]


def _mapped(align: str, units: int = 4) -> tuple[Ctx, State, int]:
    """A live device of ``units`` align units, opened and mapped whole on vma slot 0."""
    c = Ctx.of(Config(profile="modern", align=align, units=units, files=1, vmas=3, cpus=0, race=True))
    s = init(c)
    v = next(i for i, x in enumerate(s.vmas) if x.file >= 0)
    return c, s, v


@pytest.mark.parametrize("align", ALIGNS)
def test_the_path_in_the_kernels_order(align: str) -> None:
    a = parse_align(align)
    end = 4 * a
    vma = (end, True)
    assert mm.mremap_path(1, a, a, True, vma, True) == "EINVAL"  # offset_in_page(addr)
    assert mm.mremap_path(0, a, 0, True, vma, True) == "EINVAL"  # !new_len
    assert mm.mremap_path(0, a, 2 * a, True, None, True) == "EFAULT"  # vma_lookup finds nothing
    assert mm.mremap_path(a, a, a, True, vma, True) == "same"  # a "move" of the same length
    assert mm.mremap_path(a, a, a, False, vma, False) == "same"
    assert mm.mremap_path(0, 2 * a, a, False, vma, False) == "shrink"
    assert mm.mremap_path(0, 0, a, True, (end, False), True) == "EINVAL"  # private duplicate
    assert mm.mremap_path(0, 0, a, True, vma, True) == "move"  # shared duplicate
    assert mm.mremap_path(a, 4 * a, 5 * a, True, vma, True) == "EFAULT"  # across the vma's end
    assert mm.mremap_path(a, 3 * a, 4 * a, False, vma, True) == "expand"
    assert mm.mremap_path(a, 3 * a, 4 * a, False, vma, False) == "ENOMEM"  # no room, no MAYMOVE
    assert mm.mremap_path(a, 3 * a, 4 * a, True, vma, False) == "move"
    assert mm.mremap_path(a, a, 2 * a, False, vma, True) == "ENOMEM"  # a sub-range cannot expand
    assert mm.mremap_path(a, a, 2 * a, True, vma, True) == "move"  # but it can move


@pytest.mark.parametrize("align", ALIGNS)
def test_a_sub_range_moves_and_the_old_range_goes(align: str) -> None:
    c, s, v = _mapped(align)
    a = parse_align(align)
    vma = s.vmas[v]
    new_addr = vma.start + (1 << 40)
    out, after = mm.mremap_move(c, s, v, vma.start + a, a, new_addr, 2 * a)
    assert out == "ok"
    moved = [x for x in after.vmas if x.file >= 0 and x.start == new_addr]
    assert (
        len(moved) == 1 and moved[0].end == new_addr + 2 * a and moved[0].pgoff == vma.pgoff + a // PAGE_SIZE
    )
    left = sorted((x.start, x.end) for x in after.vmas if x.file >= 0 and x.start != new_addr)
    assert left == [(vma.start, vma.start + a), (vma.start + 2 * a, vma.end)]


@pytest.mark.parametrize("align", ["2M", "1G"])
def test_a_move_with_a_misaligned_end_is_refused_by_may_split(align: str) -> None:
    c, s, v = _mapped(align)
    vma = s.vmas[v]
    out, after = mm.mremap_move(c, s, v, vma.start, PAGE_SIZE, vma.start + (1 << 40), PAGE_SIZE)
    assert out == "EINVAL" and after == s


@pytest.mark.parametrize("align", ALIGNS)
def test_old_len_zero_duplicates_a_shared_mapping(align: str) -> None:
    c, s, v = _mapped(align)
    a = parse_align(align)
    vma = s.vmas[v]
    out, after = mm.mremap_move(c, s, v, vma.start, 0, vma.start + (1 << 40), a)
    assert out == "ok"
    assert after.vmas[v] == vma  # the original stays
    assert sum(1 for x in after.vmas if x.file == vma.file) == 2


def _backend(steps: list[dict[str, object]]) -> list[str]:
    from devdax.scenario.parse import parse
    from devdax.scenario.spec_backend import SpecBackend

    rw = ["PROT_READ", "PROT_WRITE"]
    head: list[dict[str, object]] = [
        {"op": "open", "dev": 0, "flags": ["O_RDWR"], "as": "f"},
        {
            "op": "mmap",
            "fd": "f",
            "length": "4M",
            "prot": rw,
            "flags": ["MAP_SHARED"],
            "offset": 0,
            "as": "m",
        },
        {"op": "madvise", "map": "m", "offset": "2M", "length": "2M", "advice": "MADV_DONTFORK"},
    ]
    doc = {"format": "devdax-scenario/1", "name": "shrink", "profile": "modern", "steps": head + steps}
    return SpecBackend().run(parse(doc))[3:]


def test_a_shrink_unmaps_the_tail_across_vmas_all_or_nothing() -> None:
    """do_vmi_munmap of [addr + new_len, addr + old_len) over both vmas: a cut inside the second
    at a misaligned address is refused (may_split) and nothing changes (found by test_dax_random)."""
    shrink: dict[str, object] = {
        "op": "mremap",
        "map": "m",
        "offset": 0,
        "old_length": "4M",
        "new_length": 2 * 2**20 + 4096,
    }
    touch: dict[str, object] = {"op": "touch", "map": "m", "offset": "3M", "access": "read"}
    assert _backend([shrink, touch]) == ["EINVAL", "ok"]
    aligned: dict[str, object] = {**shrink, "new_length": "2M"}
    assert _backend([aligned, touch]) == ["ok", "SIGSEGV"]
