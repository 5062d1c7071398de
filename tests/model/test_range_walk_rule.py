"""Range operations walk vma by vma (spec/mm.py walk, populate_vma), as the recordings showed on
6.1, 6.12 and 7.2: mprotect over a hole changes the vmas before it and then says ENOMEM (k22,
k23); madvise goes on past holes and says ENOMEM at the end; MADV_POPULATE_* refuses a vma that
does not allow the access with EINVAL, not EFAULT (k30)."""

from __future__ import annotations

import pytest

from devdax.spec import mm
from devdax.spec.geometry import parse_align
from devdax.spec.state import Vma


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
def test_mprotect_stops_at_the_first_hole_and_madvise_goes_on(align: str) -> None:
    a = parse_align(align)
    spans = [(4 * a, 6 * a), (0, 2 * a), (3 * a, 4 * a)]  # holes at [2a, 3a) and after 6a
    assert mm.walk(spans, 0, 6 * a, past_gaps=False) == ([1], True)
    assert mm.walk(spans, 0, 6 * a, past_gaps=True) == ([1, 2, 0], True)
    assert mm.walk(spans, 3 * a, 6 * a, past_gaps=False) == ([2, 0], False)
    assert mm.walk(spans, 3 * a, 7 * a, past_gaps=False) == ([2, 0], True)  # the tail is a hole
    assert mm.walk(spans, 2 * a, 4 * a, past_gaps=False) == ([], True)  # starts in a hole


def test_populate_refuses_what_the_vma_does_not_allow() -> None:
    rw, ro, none = Vma(file=0, read=True, write=True), Vma(file=0, read=True), Vma(file=0, read=False)
    assert mm.populate_vma(rw, write=True) is None and mm.populate_vma(rw, write=False) is None
    assert mm.populate_vma(ro, write=True) == "EINVAL"
    assert mm.populate_vma(ro, write=False) is None
    assert mm.populate_vma(none, write=False) == "EINVAL"
