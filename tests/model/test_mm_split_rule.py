"""The split rule of range operations (spec/mm.py change): a vma is split, and so ->may_split is
asked, only when the operation changes its flags. mprotect_fixup() and madvise_update_vma() return 0
at once when "newflags == vma->vm_flags"; the kernel recordings of k27, k29 and k32 (a repeated
advice over a misaligned sub-range) and k42 (the same protection again on 4K of a 2M vma) say ok on
6.1, 6.12 and 7.2. Each test can fail: the changing twin of every no-op is refused."""

from __future__ import annotations

import pytest

from devdax.spec import mm
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State
from devdax.spec.system import init


def _mapped(align: str, units: int = 4) -> tuple[Ctx, State, int]:
    """A live device of ``units`` align units, opened and mapped whole on vma slot 0."""
    c = Ctx.of(Config(profile="modern", align=align, units=units, files=1, vmas=3, cpus=0, race=True))
    s = init(c)
    v = next(i for i, x in enumerate(s.vmas) if x.file >= 0)
    return c, s, v


def _inside(c: Ctx, s: State, v: int) -> tuple[int, int]:
    """A range that starts and ends in the middle of align units: both cuts are misaligned."""
    vma = s.vmas[v]
    align = c.vma_align(s, v)
    half = max(align // 2, 4096)
    return vma.start + half, vma.start + half + align


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("MADV_DONTFORK", "MADV_DONTFORK"),
        ("MADV_NOHUGEPAGE", "MADV_NOHUGEPAGE"),
        ("MADV_RANDOM", "MADV_RANDOM"),
        ("MADV_SEQUENTIAL", "MADV_SEQUENTIAL"),
        ("MADV_DONTDUMP", "MADV_DONTDUMP"),
        ("MADV_NORMAL", "MADV_NORMAL"),
        ("MADV_DOFORK", "MADV_DOFORK"),
        ("MADV_HUGEPAGE", "MADV_HUGEPAGE"),
        ("MADV_MERGEABLE", "MADV_UNMERGEABLE"),
    ],
)
def test_an_advice_that_changes_no_flag_splits_nothing(align: str, first: str, again: str) -> None:
    c, s, v = _mapped(align)
    vma = s.vmas[v]
    out, s = mm.madvise(c, s, v, vma.start, vma.end, first)
    assert out == "ok"
    lo, hi = _inside(c, s, v)
    out, after = mm.madvise(c, s, v, lo, hi, again)
    assert out == "ok" and after == s


@pytest.mark.parametrize("align", ["2M", "1G"])
@pytest.mark.parametrize(
    "advice", ["MADV_DONTFORK", "MADV_NOHUGEPAGE", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_DONTDUMP"]
)
def test_an_advice_that_changes_a_flag_asks_may_split(align: str, advice: str) -> None:
    c, s, v = _mapped(align)
    lo, hi = _inside(c, s, v)
    assert mm.madvise(c, s, v, lo, hi, advice) == ("EINVAL", s)  # dev_dax_may_split
    vma = s.vmas[v]
    out, after = mm.madvise(c, s, v, vma.start, vma.start + c.vma_align(s, v), advice)
    assert out == "ok" and after != s  # an aligned cut splits


def test_advice_flags_follow_madvise_vma_behavior() -> None:
    """MADV_SEQUENTIAL and MADV_RANDOM exclude each other, MADV_NORMAL clears both, MADV_HUGEPAGE
    on a fresh dax vma (dax_mmap set VM_HUGEPAGE) and KSM advice on a shared vma change nothing."""
    _, s, v = _mapped("2M")
    fresh = s.vmas[v]
    seq = mm.FLAG_ADVICE["MADV_SEQUENTIAL"](fresh)
    rand = mm.FLAG_ADVICE["MADV_RANDOM"](seq)
    assert (seq.seq_read, seq.rand_read) == (True, False)
    assert (rand.seq_read, rand.rand_read) == (False, True)
    assert mm.FLAG_ADVICE["MADV_NORMAL"](rand) == fresh
    for same in ("MADV_HUGEPAGE", "MADV_MERGEABLE", "MADV_UNMERGEABLE", "MADV_KEEPONFORK", "MADV_DODUMP"):
        assert mm.FLAG_ADVICE[same](fresh) == fresh


def test_dodump_is_refused_where_dax_mmap_set_vm_mixedmap() -> None:
    """4.x dax_mmap set VM_MIXEDMAP, one of VM_SPECIAL: "if (... new_flags & VM_SPECIAL) return
    -EINVAL"; modern has no VM_MIXEDMAP."""
    c = Ctx.of(Config(profile="v4.10", align="2M", units=2, files=1, vmas=1, cpus=0, race=True))
    s = init(c)
    v = next(i for i, x in enumerate(s.vmas) if x.file >= 0)
    vma = s.vmas[v]
    assert mm.madvise(c, s, v, vma.start, vma.end, "MADV_DODUMP")[0] == "EINVAL"
    c, s, v = _mapped("2M")
    vma = s.vmas[v]
    assert mm.madvise(c, s, v, vma.start, vma.end, "MADV_DODUMP")[0] == "ok"


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
def test_mprotect_to_the_same_protection_splits_nothing(align: str) -> None:
    c, s, v = _mapped(align)
    lo, hi = _inside(c, s, v)
    vma = s.vmas[v]
    assert mm.mprotect(c, s, v, lo, hi, vma.read, vma.write) == ("ok", s)
    changed = mm.mprotect(c, s, v, lo, hi, True, False)
    assert changed[0] == ("EINVAL" if align != "4K" else "ok")
