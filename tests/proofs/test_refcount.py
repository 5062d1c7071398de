"""Refcount exactness for any number of files and vmas (ghost bijection), and a mutant that forgets
the reference open() takes is caught."""

from __future__ import annotations

import pytest
import z3

from devdax.proofs import refcount as R
from devdax.proofs.runner import Status


@pytest.mark.parametrize("name", [n for n, _, _ in R.RINVARIANTS])
def test_inductive(name: str) -> None:
    v = R.check(name, 30)
    assert v.status is Status.PROVED, v.counterexample


def test_not_vacuous() -> None:
    assert R.check_not_vacuous(30).status is Status.PROVED


def test_open_without_cdev_get_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = R.actions

    def mutant(s: R.RState, t: R.RState, tag: str = "step") -> list[tuple[str, z3.ExprRef]]:
        out = real(s, t, tag)
        f = z3.Const(f"f@{tag}", R.F)
        forgot = s.replace(opened=z3.Store(s.opened, f, True), fd=z3.Store(s.fd, f, True),
                           count=z3.Store(s.count, f, 1), idx=z3.Store(s.idx, f, s.nfiles),
                           slot=z3.Store(s.slot, s.nfiles, f), nfiles=s.nfiles + 1, nv=z3.Store(s.nv, f, 0))
        return [("open", z3.And(z3.Not(s.opened[f]), s.cdev_ref > 0, t.equals(forgot))), *out[1:]]

    monkeypatch.setattr(R, "actions", mutant)
    v = R.check("refcount_exact_cdev", 30, assume=["refcount_exact_cdev"])
    assert v.status is Status.VIOLATED
    assert "step: open" in v.counterexample and "state before:" in v.counterexample
