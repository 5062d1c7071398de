"""Invariants must be able to fail.

A property that cannot fail proves nothing. For every entry of INVARIANTS this module takes a state
the spec really reaches (found by a breadth-first search over ``successors``, never written by hand),
checks that the property holds there, then breaks exactly that property with ``_replace`` and checks
that the property now reports it. Step properties get a real transition and a mutated one; the one
liveness property (teardown_finishes) is decided by the checker itself, on the M20 variant where a
leaked read lock blocks synchronize forever.

The meta-test at the end makes a new invariant without a case here fail the suite.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from devdax.model.checker import check
from devdax.spec.config import Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import PAGE_SIZE
from devdax.spec.invariants import INVARIANTS, state_invariants
from devdax.spec.profiles import ReadLock
from devdax.spec.state import C_IDLE, D_LIVE, D_RELEASED, RG_GONE, RG_LIVE, File, State, set_at
from devdax.spec.system import Transition, init, successors
from devdax.spec.variants import VARIANTS, variant_config

SHARED_RW = MmapShape("shared-rw")


def reach(c: Ctx, pred: Callable[[State], bool], limit: int = 50_000) -> State:
    """The shallowest state satisfying pred, by breadth-first search over the unreduced spec."""
    s0 = init(c)
    seen = {s0}
    todo = deque([s0])
    while todo and len(seen) < limit:
        s = todo.popleft()
        if pred(s):
            return s
        for t in successors(c, s):
            if t.state not in seen:
                seen.add(t.state)
                todo.append(t.state)
    raise AssertionError("no reachable state satisfies the predicate")


def reach_step(
    c: Ctx, pred: Callable[[State, Transition], bool], limit: int = 50_000
) -> tuple[State, Transition]:
    """The first transition (in breadth-first order) satisfying pred."""
    s0 = init(c)
    seen = {s0}
    todo = deque([s0])
    while todo and len(seen) < limit:
        s = todo.popleft()
        for t in successors(c, s):
            if pred(s, t):
                return s, t
            if t.state not in seen:
                seen.add(t.state)
                todo.append(t.state)
    raise AssertionError("no reachable transition satisfies the predicate")


def all_state_hold(c: Ctx, s: State) -> None:
    """The unmutated state is clean: every state invariant holds (so the mutation is what breaks)."""
    bad = {
        i.name: msg for i in state_invariants() if i.check is not None and (msg := i.check(c, s)) is not None
    }
    assert not bad, bad


# --- shared reachable states ------------------------------------------------------------------

V410 = Ctx.of(Config(files=1, vmas=1, cpus=1, mmaps=(SHARED_RW,)))


def idle_admin(s: State) -> bool:
    return not s.admin.prog


def mapped_with_entry(s: State) -> bool:
    """A live, probed device with an open file, a vma and one installed entry; admin idle."""
    return (
        bool(s.entries)
        and idle_admin(s)
        and s.devs[0].phase == D_LIVE
        and all(cpu.pc == C_IDLE and cpu.nest == 0 for cpu in s.cpus)
    )


def opened(s: State) -> bool:
    return idle_admin(s) and s.devs[0].phase == D_LIVE and any(fl.fd for fl in s.files)


def mapped(s: State) -> bool:
    return idle_admin(s) and s.devs[0].alive and any(v.file >= 0 for v in s.vmas)


# --- one case per invariant: returns (ctx, good state, mutated state) or steps --------------------

StateCase = Callable[[], tuple[Ctx, State, State]]
StepCase = Callable[[], tuple[Ctx, State, Transition, Ctx, State, Transition]]

STATE_CASES: dict[str, StateCase] = {}
STEP_CASES: dict[str, StepCase] = {}


def state_case(name: str) -> Callable[[StateCase], StateCase]:
    def deco(fn: StateCase) -> StateCase:
        STATE_CASES[name] = fn
        return fn

    return deco


def step_case(name: str) -> Callable[[StepCase], StepCase]:
    def deco(fn: StepCase) -> StepCase:
        STEP_CASES[name] = fn
        return fn

    return deco


def dev0(s: State, **changes: Any) -> State:
    return s._replace(devs=set_at(s.devs, 0, s.devs[0]._replace(**changes)))


@state_case("refcount_exact_all")
def _refcount() -> tuple[Ctx, State, State]:
    s = reach(V410, opened)
    # one cdev kobject reference too many: nobody holds it (a leak the release would never see)
    return V410, s, dev0(s, cdev_ref=s.devs[0].cdev_ref + 1)


@state_case("no_use_after_free")
def _uaf() -> tuple[Ctx, State, State]:
    s = reach(V410, mapped)
    # what fault_check records when a fault runs on a released device
    return V410, s, s._replace(oops="uaf: fault on released dax0")


def test_dangling_vm_file_is_a_use_after_free() -> None:
    """The structural half of no_use_after_free: a vma whose file slot is free. (Freeing the file
    also drops a cdev reference, so refcount_exact_all fails with it; that is why the exact case
    above uses the recorded oops.)"""
    s = reach(V410, mapped)
    v = next(i for i, m in enumerate(s.vmas) if m.file >= 0)
    bad = s._replace(files=set_at(s.files, s.vmas[v].file, File()))
    check_fn = INVARIANTS["no_use_after_free"].check
    assert check_fn is not None and check_fn(V410, s) is None
    assert check_fn(V410, bad) == f"vma{v} points at free file{s.vmas[v].file}"


@state_case("no_refcount_underflow")
def _underflow() -> tuple[Ctx, State, State]:
    s = reach(V410, opened)
    return V410, s, s._replace(oops="refcount underflow: cdev kobject of dax0")


@state_case("no_null_deref")
def _null() -> tuple[Ctx, State, State]:
    s = reach(V410, opened)
    return V410, s, s._replace(oops="null deref: dax_mmap -> check_vma(NULL) on file0 of dax0")


REBIND = Ctx.of(Config(profile="modern", files=1, vmas=0, cpus=0, mmaps=(), binds=1))


@state_case("no_list_corruption")
def _list_del() -> tuple[Ctx, State, State]:
    # a file open through the node (its /dev inode linked on the cdev list); the rule itself, F2's
    # re-bind and then the eviction, is tests/model/test_cd_forget.py
    s = reach(REBIND, lambda t: t.files[0].dev >= 0 and t.devs[0].icdev_cached)
    return REBIND, s, s._replace(oops="list_del corruption: cd_forget of dax0's /dev inode")


@state_case("ida_exact")
def _ida() -> tuple[Ctx, State, State]:
    s = reach(V410, opened)
    # a minor bit set in dax_minor_ida that no device holds
    return V410, s, s._replace(minors=s.minors | 0b10)


TWO_DEVS = Ctx.of(Config(devices=2, files=0, vmas=0, cpus=0, mmaps=()))


def both_live(s: State) -> bool:
    return idle_admin(s) and all(d.phase == D_LIVE for d in s.devs)


@state_case("minor_unique")
def _minor_unique() -> tuple[Ctx, State, State]:
    s = reach(TWO_DEVS, both_live)
    m0 = s.devs[0].minor
    # the second instance got the first one's minor (and holds no bit of its own: ida stays exact)
    bad = s._replace(devs=set_at(s.devs, 1, s.devs[1]._replace(minor=m0, minor_held=False)), minors=1 << m0)
    return TWO_DEVS, s, bad


@state_case("minors_in_range")
def _minors_in_range() -> tuple[Ctx, State, State]:
    s = reach(V410, opened)
    n = V410.nr_reserved_minors()
    # minor n is one past the reserved chrdev range; the ida agrees, so only the range is wrong
    return V410, s, dev0(s, minor=n)._replace(minors=1 << n)


@state_case("alive_implies_registered")
def _alive_registered() -> tuple[Ctx, State, State]:
    s = reach(V410, opened)
    return V410, s, dev0(s, registered=False)


@state_case("no_entry_after_kill")
def _entry_after_kill() -> tuple[Ctx, State, State]:
    s = reach(V410, mapped_with_entry)
    # kill marked complete while an entry survives: as if unmap_mapping_range had been skipped
    return V410, s, dev0(s, dead=True, alive=False)


@state_case("removed_region_dead")
def _removed_region_dead() -> tuple[Ctx, State, State]:
    s = reach(V410, opened)
    assert s.regions[0].phase == RG_LIVE
    return V410, s, s._replace(regions=set_at(s.regions, 0, s.regions[0]._replace(phase=RG_GONE)))


@state_case("lock_balanced")
def _lock_balanced() -> tuple[Ctx, State, State]:
    s = reach(V410, mapped_with_entry)
    return V410, s, s._replace(cpus=set_at(s.cpus, 0, s.cpus[0]._replace(nest=1)))


@state_case("vmas_shared")
def _vmas_shared() -> tuple[Ctx, State, State]:
    s = reach(V410, mapped)
    v = next(i for i, m in enumerate(s.vmas) if m.file >= 0)
    return V410, s, s._replace(vmas=set_at(s.vmas, v, s.vmas[v]._replace(shared=False, mayshare=False)))


@state_case("vmas_aligned")
def _vmas_aligned() -> tuple[Ctx, State, State]:
    s = reach(V410, mapped)
    v = next(i for i, m in enumerate(s.vmas) if m.file >= 0)
    return V410, s, s._replace(vmas=set_at(s.vmas, v, s.vmas[v]._replace(end=s.vmas[v].end + PAGE_SIZE)))


@state_case("entries_exact")
def _entries_exact() -> tuple[Ctx, State, State]:
    s = reach(V410, mapped_with_entry)
    (e,) = s.entries
    # the right address and size, the wrong device page: one align unit further on
    return V410, s, s._replace(entries=frozenset({e._replace(phys=e.phys + V410.align)}))


@state_case("entries_naturally_aligned")
def _entries_naturally_aligned() -> tuple[Ctx, State, State]:
    # a two-unit device, so that the same pmd one page further on still lies inside the range: the
    # vma's file offset and the entry move together, pgoff_to_phys agrees, only the alignment breaks
    c = Ctx.of(Config(units=2, files=1, vmas=1, cpus=1, mmaps=(MmapShape("shared-rw"),)))
    s = reach(c, mapped_with_entry)
    (e,) = s.entries
    v = e.vma
    moved = s.vmas[v]._replace(pgoff=s.vmas[v].pgoff + 1)
    bad = s._replace(vmas=set_at(s.vmas, v, moved), entries=frozenset({e._replace(phys=e.phys + PAGE_SIZE)}))
    return c, s, bad


V410_2UNITS = Ctx.of(Config(files=1, vmas=1, cpus=1, units=2, mmaps=(SHARED_RW,)))


def _naturally_aligned() -> tuple[Ctx, State, State]:
    s = reach(V410_2UNITS, mapped_with_entry)
    (e,) = s.entries
    v = s.vmas[e.vma]
    # the mapping starts one page into the device (mmap accepts any page-aligned offset): the entry
    # maps the device page pgoff_to_phys names (entries_exact holds) but that block is not 2M-aligned
    bad = s._replace(
        vmas=set_at(s.vmas, e.vma, v._replace(pgoff=v.pgoff + 1)),
        entries=frozenset({e._replace(phys=e.phys + PAGE_SIZE)}),
    )
    return V410_2UNITS, s, bad


if "entries_naturally_aligned" in INVARIANTS:
    state_case("entries_naturally_aligned")(_naturally_aligned)


def quiescent_after_remove(s: State) -> bool:
    return (
        idle_admin(s)
        and s.admin.generation == 1
        and s.regions[0].phase == RG_GONE
        and all(fl.dev < 0 for fl in s.files)
        and all(m.file < 0 for m in s.vmas)
        and s.devs[0].phase == D_RELEASED
    )


@state_case("no_leak_at_quiescence")
def _leak() -> tuple[Ctx, State, State]:
    s = reach(V410, quiescent_after_remove)
    # the region is never freed (its kref is 0 and nobody holds it, so refcounts stay exact)
    return V410, s, s._replace(regions=set_at(s.regions, 0, s.regions[0]._replace(freed=False)))


@pytest.mark.parametrize("name", sorted(STATE_CASES))
def test_state_invariant_can_fail(name: str) -> None:
    inv = INVARIANTS[name]
    assert inv.kind == "state" and inv.check is not None
    c, good, bad = STATE_CASES[name]()
    all_state_hold(c, good)
    msg = inv.check(c, bad)
    assert isinstance(msg, str) and msg, f"{name} did not notice the mutation"
    # the mutation breaks exactly this property, so the case tests this check and no other
    broken = {i.name for i in state_invariants() if i.check is not None and i.check(c, bad) is not None}
    assert broken == {name}


# --- step properties ---------------------------------------------------------------------------


@step_case("no_map_of_dead_device")
def _no_map_dead() -> tuple[Ctx, State, Transition, Ctx, State, Transition]:
    s, t = reach_step(V410, lambda s, t: t.action == "mmap" and t.outcome == "ok")
    # the same successful mmap from a state where the device was already killed
    return V410, s, t, V410, dev0(s, alive=False), t


@step_case("shared_mmap_allowed")
def _shared_allowed() -> tuple[Ctx, State, Transition, Ctx, State, Transition]:
    s, t = reach_step(V410, lambda s, t: t.action == "mmap" and t.outcome == "ok")
    return V410, s, t, V410, s, t._replace(outcome="EINVAL", state=s)


@step_case("no_sleep_in_rcu")
def _sleep_rcu() -> tuple[Ctx, State, Transition, Ctx, State, Transition]:
    s, t = reach_step(V410, lambda s, t: t.action == "fault_insert")
    # the same insert under a plain rcu_read_lock (the pre-956a4cd2c957 driver)
    rcu = Ctx(V410.cfg, V410.prof.with_(read_lock=ReadLock.RCU), V410.layout)
    return V410, s, t, rcu, s, t


@step_case("fault_size_negotiated")
def _negotiated() -> tuple[Ctx, State, Transition, Ctx, State, Transition]:
    s, t = reach_step(V410, lambda s, t: t.action == "fault_check" and t.outcome.startswith("FALLBACK@pud"))
    # a pud fault on a 2M-aligned device that proceeds instead of falling back (M4)
    return V410, s, t, V410, s, t._replace(outcome="NOPAGE@pud")


@pytest.mark.parametrize("name", sorted(STEP_CASES))
def test_step_property_can_fail(name: str) -> None:
    inv = INVARIANTS[name]
    assert inv.kind == "step" and inv.step is not None
    c, s, t, bc, bs, bt = STEP_CASES[name]()
    assert inv.step(c, s, t) is None, "the real transition must pass"
    msg = inv.step(bc, bs, bt)
    assert isinstance(msg, str) and msg, f"{name} did not notice the mutation"


# --- liveness ---------------------------------------------------------------------------------

LIVENESS = {"teardown_finishes"}


def test_teardown_finishes_can_fail() -> None:
    """M20: a FALLBACK that leaves the read lock held makes synchronize_srcu wait forever; the same
    configuration on the unmodified v4.10 profile finishes every teardown."""
    v = VARIANTS["M20"]
    cfg = variant_config(v)
    bad = check(Ctx.of(cfg), only={"teardown_finishes"})
    assert "teardown_finishes" in bad.violations
    assert bad.violations["teardown_finishes"].trace, "the counterexample leads somewhere"
    good = check(Ctx.of(replace(cfg, variant=None)), only={"teardown_finishes"})
    assert good.complete and not good.violations


# --- meta ------------------------------------------------------------------------------------


def test_every_invariant_has_a_failing_case() -> None:
    tested = set(STATE_CASES) | set(STEP_CASES) | LIVENESS
    assert tested == set(INVARIANTS), {
        "untested": set(INVARIANTS) - tested,
        "unknown": tested - set(INVARIANTS),
    }
    for name in STATE_CASES:
        assert INVARIANTS[name].kind == "state"
    for name in STEP_CASES:
        assert INVARIANTS[name].kind == "step"
    for name in LIVENESS:
        assert INVARIANTS[name].kind == "liveness"
