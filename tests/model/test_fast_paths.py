"""The checker's fast paths (issue 15) against the plain forms they replace, on every reachable
state and every transition of small configurations and of every variant.

* spec.symmetry.Canonicaliser (renamings memoised per files/vmas/entries, and the CPUs only when a
  successor shares those with its canonical parent) equals canonical(); canonical() is idempotent,
  which is what lets the checker take a successor equal to a stored state as a duplicate without
  canonicalising it;
* a step property that model.checker.STEP_ACTIONS skips for an action holds on that transition;
* check(fast=True) stores the same states (same records, same reprs), in the same order, with the
  same parents and actions, and reports the same violations with the same traces as fast=False;
* every record's generated ``_replace`` (spec/state.py) equals collections.namedtuple's own;
* neither form makes reference cycles, which is what lets check() pause the cyclic collector.
"""

from __future__ import annotations

import gc
from collections import deque
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devdax.model.checker import STEP_ACTIONS, _Explorer, check, gc_paused
from devdax.model.reduction import reduced_successors
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import step_properties
from devdax.spec.state import Admin, Cpu, Dev, Entry, File, Region, State, Vma
from devdax.spec.symmetry import Canonicaliser, canonical
from devdax.spec.system import Transition, init, successors
from devdax.spec.variants import VARIANTS, variant_config

CONFIGS: dict[str, Config] = {
    "race-2cpu": Config(profile="v4.10", race=True, cpus=2, faults=2, units=2, files=1, vmas=1),
    "v4.10-2files-1cpu": Config(files=2, vmas=2, cpus=1, generations=1),
    "modern-binds1": Config(profile="modern", binds=1),
    **{n: variant_config(v) for n, v in VARIANTS.items()},
}


def every_transition(c: Ctx) -> list[tuple[State, Transition]]:
    """Every transition from every raw reachable state, unreduced and fused (the fused ones carry
    the action names like fault_lock+fault_check that the step filter must also judge)."""
    s0 = init(c)
    seen = {s0}
    todo = deque([s0])
    out = []
    while todo:
        s = todo.popleft()
        for t in successors(c, s):
            out.append((s, t))
            if t.state not in seen:
                seen.add(t.state)
                todo.append(t.state)
        out.extend((s, t) for t in reduced_successors(c, s))
    return out


SLOW = {"v4.10-2files-1cpu"}
#: With three CPUs and more, whose states share their shared parts most (model/memo.py).
MEMO_CONFIGS: dict[str, Config] = {
    **CONFIGS,
    "race-4cpu-pmd": Config(profile="v4.10", race=True, cpus=4, faults=2, units=2, first_fault="pmd"),
    "race-3cpu-no-synchronize": replace(
        variant_config(VARIANTS["no-synchronize"]), race=True, cpus=3, faults=2, units=2
    ),
    "v4.10-3cpu": Config(files=1, vmas=1, cpus=3, generations=1),
    "modern-3cpu": Config(profile="modern", cpus=3, binds=1),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CONFIGS]
)
def test_canonicaliser_and_step_filter(name: str) -> None:
    c = Ctx.of(CONFIGS[name])
    fast = Canonicaliser()
    steps = [p for p in step_properties() if p.name in STEP_ACTIONS]
    for s, t in every_transition(c):
        cs = canonical(s)
        assert fast(s) == cs
        assert canonical(cs) == cs
        ct = canonical(t.state)
        assert fast(t.state) == ct
        if cs == s:  # a stored parent: the shortcut on shared files/vmas/entries
            assert fast(t.state, s) == ct
        for p in steps:
            assert p.step is not None
            if not STEP_ACTIONS[p.name](t.action):
                assert p.step(c, s, t) is None, (p.name, t.action)


@pytest.mark.parametrize("memo", [False, True], ids=["whole-states", "memo"])
@pytest.mark.parametrize("name", list(MEMO_CONFIGS))
def test_fast_checker_equals_plain(name: str, memo: bool) -> None:
    """Both fast paths, each on every configuration whatever its CPU count (MEMO_MIN_CPUS picks
    one of them in a real run)."""
    c = Ctx.of(MEMO_CONFIGS[name])
    runs = []
    for fast in (False, True):
        x = _Explorer(c, True, True, True, None, fast, memo=memo)
        assert x.use_memo == (fast and memo)
        x.explore(None, False, None, 0.0)
        x.liveness()
        runs.append(x)
    plain, fast_run = runs
    assert list(fast_run.g.states) == list(plain.g.states)
    assert [repr(s) for s in fast_run.g.states] == [repr(s) for s in plain.g.states]
    assert fast_run.g.parent == plain.g.parent
    assert fast_run.g.via == plain.g.via
    assert fast_run.g.rev_src == plain.g.rev_src and fast_run.g.rev_dst == plain.g.rev_dst
    assert fast_run.res.transitions == plain.res.transitions
    assert fast_run.res.violations.keys() == plain.res.violations.keys()
    for k, v in plain.res.violations.items():
        w = fast_run.res.violations[k]
        assert (w.message, w.trace) == (v.message, v.trace)
        assert [repr(step.state) for step in w.trace] == [repr(step.state) for step in v.trace]


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
@pytest.mark.parametrize("name", ["race-4cpu-pmd", "modern-binds1", "M20"])
def test_the_search_leaves_no_cyclic_garbage(name: str, fast: bool) -> None:
    """check() pauses Python's cyclic collector (checker.gc_paused), which is only sound if the
    search makes no reference cycles: after a run (violations, traces and liveness included; the
    memo path in the 4-CPU race) a collection must find nothing to free."""
    gc.collect()
    gc.disable()
    try:
        res = check(Ctx.of(MEMO_CONFIGS[name]), fast=fast)
        assert not gc.isenabled()  # check() leaves the collector as it found it
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert res.states > 0 and (name == "race-4cpu-pmd" or res.violations)


def test_gc_paused_restores_the_collector_also_when_the_search_raises() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()


RECORDS = (Region, Dev, File, Vma, Entry, Cpu, Admin, State)


def stock_replace(record: tuple[object, ...], **changes: object) -> tuple[object, ...]:
    """collections.namedtuple's own _replace, which spec.state's generated one stands in for."""
    fields: tuple[str, ...] = type(record)._fields  # type: ignore[attr-defined]
    out = type(record)._make(map(changes.pop, fields, record))  # type: ignore[attr-defined]
    if changes:
        raise ValueError(f"Got unexpected field names: {list(changes)!r}")
    return out  # type: ignore[no-any-return]


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
@settings(deadline=None)  # a loaded CI machine must not turn a slow example into a failure
@given(data=st.data())
def test_record_replace_equals_the_stock_method(cls: type[Any], data: st.DataObject) -> None:
    fields = cls._fields
    record = cls._make(data.draw(st.lists(st.integers(-3, 3), min_size=len(fields), max_size=len(fields))))
    chosen = data.draw(st.lists(st.sampled_from(fields), unique=True))
    changes = {f: data.draw(st.one_of(st.integers(), st.text(max_size=2), st.none())) for f in chosen}
    new = record._replace(**changes)
    old = stock_replace(record, **changes)
    assert type(new) is cls and new == old
    assert all(a is b for a, b in zip(new, old, strict=True))  # the very objects, not equal copies
    assert record._replace() == record


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_record_replace_refuses_an_unknown_field(cls: type[Any]) -> None:
    record = cls._make([0] * len(cls._fields))
    with pytest.raises(TypeError, match="no_such_field"):
        record._replace(no_such_field=1)
    with pytest.raises(TypeError):
        record._replace(0)  # fields are keywords only, as in the stock method
