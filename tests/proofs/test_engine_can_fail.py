"""Every obligation of proofs/refcount.py and proofs/minor.py can fail: for each, a planted bad step (a
wrong effect of one kernel step or user action) makes its induction fail with a counterexample to
induction, two states and the step. The variants and profile findings that fail them for real are
tested in test_lifetime.py and test_minor.py; this covers the strengthening invariants too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
import z3

from devdax.proofs import minor as M
from devdax.proofs import refcount as R
from devdax.proofs.engine import St, Sys, check_inductive, check_reaches
from devdax.proofs.runner import Status
from devdax.spec.profiles import get_profile

Action = Callable[[St, St, str], tuple[z3.ExprRef, dict[str, z3.ExprRef]]]


def _frame(s: St, t: St, new: St) -> z3.ExprRef:
    return z3.And(*(t[k] == v for k, v in new.items()))


def _open_no_slot(s: St, t: St, tag: str) -> tuple[z3.ExprRef, dict[str, z3.ExprRef]]:
    """open() that takes its references but forgets to number the file (ghost slot)."""
    f = z3.Const(f"f@{tag}", R.F)
    new = {
        **s,
        "opened": z3.Store(s["opened"], f, True),
        "fd": z3.Store(s["fd"], f, True),
        "count": z3.Store(s["count"], f, 1),
        "idx": z3.Store(s["idx"], f, s["nfiles"]),
        "nfiles": s["nfiles"] + 1,
        "nv": z3.Store(s["nv"], f, 0),
        "dev_ref": s["dev_ref"] + 1,
        "kref": s["kref"] + 1,
    }
    return z3.And(z3.Not(s["opened"][f]), s["registered"], _frame(s, t, new)), {"f": f}


def _mmap(count: bool, vslot: bool, gslot: bool, kref: bool) -> Action:
    """mmap() with some of its updates left out."""

    def act(s: St, t: St, tag: str) -> tuple[z3.ExprRef, dict[str, z3.ExprRef]]:
        f, v = z3.Const(f"f@{tag}", R.F), z3.Const(f"v@{tag}", R.V)
        n = s["nv"][f]
        new = {
            **s,
            "used": z3.Store(s["used"], v, True),
            "vfile": z3.Store(s["vfile"], v, f),
            "vidx": z3.Store(s["vidx"], v, n),
            "nv": z3.Store(s["nv"], f, n + 1),
            "gidx": z3.Store(s["gidx"], v, s["nvmas"]),
            "nvmas": s["nvmas"] + 1,
        }
        if count:
            new["count"] = z3.Store(s["count"], f, s["count"][f] + 1)
        if vslot:
            new["vslot"] = z3.Store(s["vslot"], f, z3.Store(s["vslot"][f], n, v))
        if gslot:
            new["gslot"] = z3.Store(s["gslot"], s["nvmas"], v)
        if kref:
            new["kref"] = s["kref"] + 1
        return z3.And(s["fd"][f], z3.Not(s["used"][v]), _frame(s, t, new)), {"f": f, "v": v}

    return act


def _effect(name: str, fn: Callable[[St], St]) -> dict[str, object]:
    return {"effect": (name, fn)}


#: obligation of v4.7's kref model -> planted change: an EFFECTS entry or a replaced user action
PLANTED: dict[str, dict[str, object]] = {
    "ghost_files_numbered": {"action": ("open", _open_no_slot)},
    "ghost_vmas_numbered": {"action": ("mmap", _mmap(True, False, True, True))},
    "ghost_all_vmas_numbered": {"action": ("mmap", _mmap(True, True, False, True))},
    "refcount_exact_file": {"action": ("mmap", _mmap(False, True, True, True))},
    "refcount_exact_kref": {"action": ("mmap", _mmap(True, True, True, False))},
    "refcount_exact_device": _effect(
        "device_create",
        lambda s: {**s, "phase": z3.IntVal(2), "registered": z3.BoolVal(True), "dev_ref": z3.IntVal(2)},
    ),
    "counts_nonnegative": _effect(
        "kref_init", lambda s: {**s, "kref": z3.IntVal(-1), "init_ref": z3.BoolVal(True)}
    ),
    "creation_order": _effect("kref_init", lambda s: {**s, "kref": z3.IntVal(1)}),
    "program_position": _effect("device_unregister", lambda s: s),
    "no_use_after_free": _effect(
        "dax_dev_put", lambda s: {**s, "init_ref": z3.BoolVal(False), "phase": z3.IntVal(4)}
    ),
    "no_refcount_underflow": _effect(
        "device_unregister", lambda s: R.device_put(R.device_put({**s, "registered": z3.BoolVal(False)}))
    ),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_refcount_obligation_can_fail(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    change = PLANTED[name]
    if "effect" in change:
        step, fn = cast(tuple[str, Any], change["effect"])
        monkeypatch.setitem(R.EFFECTS, step, fn)
    md = R.model_of(get_profile("v4.7"))
    sys = R.system(md)
    if "action" in change:
        act, fn = cast(tuple[str, Any], change["action"])
        sys = Sys(
            sys.vars, sys.init, {**sys.actions, act: fn}, sys.invariants, sys.render, sys.frozen, sys.tidy
        )
    v = check_inductive(sys, name, 120, depth=0)
    assert v.status is Status.VIOLATED, (name, v.counterexample)
    text = v.counterexample
    assert text.startswith(
        (
            f"counterexample to induction of {name}",
            f"{name} does not hold in Init",
            f"reachable violation of {name}",
        )
    )


def test_every_refcount_obligation_has_a_planted_failure() -> None:
    assert {i.name for i in R.system(R.model_of(get_profile("v4.7"))).invariants} == set(PLANTED)


def test_not_vacuous_can_fail() -> None:
    """A run that is impossible (closing a file before any open) is reported as such."""
    sys = R.system(R.model_of(get_profile("v4.7")))
    v = check_reaches(sys, ["close"], lambda states: z3.BoolVal(True), 30)
    assert v.status is Status.VIOLATED and "is impossible" in v.counterexample
    msys = M.system(M.rules_of(get_profile("v4.10")))
    v = check_reaches(msys, ["ida_alloc_minor"], lambda states: z3.BoolVal(True), 30)
    assert v.status is Status.VIOLATED


def test_minor_strengthenings_can_fail() -> None:
    """held_minors_distinct and device_phases, the two the variants never break: an alloc that skips
    the ida's 'free' test, and a creation that revives a released device."""
    base = M.system(M.rules_of(get_profile("v4.10")))

    def greedy(s: St, t: St, tag: str) -> tuple[z3.ExprRef, dict[str, z3.ExprRef]]:
        d, m = z3.Const(f"d@{tag}", M.DEV), z3.Int(f"m@{tag}")
        new = {
            **s,
            "minor": z3.Store(s["minor"], d, m),
            "held": z3.Store(s["held"], d, True),
            "ida": z3.Store(s["ida"], m, True),
            "owner": z3.Store(s["owner"], m, d),
        }
        formula = z3.And(s["live"][d], s["minor"][d] == -1, m >= 0, m < s["nr"], _frame(s, t, new))
        return formula, {"d": d, "m": m}

    def revive(s: St, t: St, tag: str) -> tuple[z3.ExprRef, dict[str, z3.ExprRef]]:
        d = z3.Const(f"d@{tag}", M.DEV)
        new = {**s, "live": z3.Store(s["live"], d, True)}
        return z3.And(z3.Not(s["live"][d]), _frame(s, t, new)), {"d": d}

    for name, act, fn in (
        ("held_minors_distinct", "ida_alloc_minor", greedy),
        ("device_phases", "ida_alloc_id", revive),
    ):
        sys = Sys(
            base.vars,
            base.init,
            {**base.actions, act: fn},
            base.invariants,
            base.render,
            base.frozen,
            base.tidy,
        )
        # assuming only the invariant itself: the planted step breaks it on its own
        v = check_inductive(sys, name, 120, depth=0, assume=[name])
        assert v.status is Status.VIOLATED, name
        assert f"step: {act}(" in v.counterexample
