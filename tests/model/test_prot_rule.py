"""x86 loads by protection (spec/geometry.py prot_readable): write-only pages read, and exec-only
pages read only on a CPU without protection keys. Recorded with PKU: k07, k08, k23 (SEGV_PKUERR)."""

from __future__ import annotations

from devdax.spec.geometry import prot_readable

R, W, X = 1, 2, 4


def test_loads_by_protection() -> None:
    assert not prot_readable(0)
    assert prot_readable(R) and prot_readable(W) and prot_readable(R | X) and prot_readable(W | X)
    assert not prot_readable(X)  # the execute-only pkey
    assert prot_readable(X, pkeys=False)  # no protection keys: x86 cannot express exec-only
