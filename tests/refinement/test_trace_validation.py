"""Concurrent trace validation: thousands of short racy runs on impl, each accepted only if its log
is a path of the spec (tests/refinement/trace.py says what a run is and how the checker decides).

Free-running (``test_trace_validation``, the mass test: real concurrency, the OS interleaves): per
profile the runs go on until DEVDAX_TRACE_RUNS runs (default 1000) or DEVDAX_TRACE_SECONDS seconds
(default 55) are done, on one bus (a new one when a modern re-bind's documented leak has used up
the core's device slots). Run k uses seed k; the seed fixes the plan (units, accesses, sleeps,
admin actions), not the interleaving, so DEVDAX_TRACE_SEED=N repeats that plan 30 times
(DEVDAX_TRACE_VARIANT=name: impl built with that spec variant, checked against its own spec).

Scheduled (``test_scheduled_runs``: a seeded scheduler picks, at every logged point, which thread
goes next): DEVDAX_TRACE_SCHED_RUNS runs per profile (default 40), each reproducible: a rejected
run prints the one-line command that replays it, DEVDAX_TRACE_SEED=N (with DEVDAX_TRACE_VARIANT=name
for a spec variant built into impl, checked against that variant's own spec, so that only a race
can expose it). ``test_same_seed_same_log`` and ``test_scheduled_variant_replays`` show that the
same seed gives the same log, for a correct impl and for a failing one.
"""

from __future__ import annotations

import os
import time

import pytest

from devdax.impl.dax import IMPL_PROFILES, DaxBus
from devdax.spec.config import Layout
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import Profile, get_profile
from devdax.spec.variants import VARIANTS

from .checker import TraceRejected, check_trace
from .driver import MINOR_BASE, spec_config
from .runner import close_bus, enable_tracing, leaked, race_run
from .trace import Run, TouchRec

RUNS = int(os.environ.get("DEVDAX_TRACE_RUNS", "1000"))
SECONDS = float(os.environ.get("DEVDAX_TRACE_SECONDS", "55"))
SEED = os.environ.get("DEVDAX_TRACE_SEED")
SCHED_RUNS = int(os.environ.get("DEVDAX_TRACE_SCHED_RUNS", "40"))
VARIANT = os.environ.get("DEVDAX_TRACE_VARIANT")


def spec_ctx(profile: str, prof: Profile | None = None) -> Ctx:
    """The spec the runs are checked against: ``profile``'s config, ``prof`` (default: the profile)."""
    cfg = spec_config(profile, cpus=2, generations=2)
    return Ctx(cfg, prof or get_profile(profile), Layout.of(cfg))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("profile", IMPL_PROFILES)
def test_trace_validation(profile: str) -> None:
    impl_profile, c = _target(profile)
    seeds = [int(SEED)] * 30 if SEED is not None else range(RUNS)
    deadline = time.monotonic() + SECONDS
    bus = DaxBus(workers=2)
    enable_tracing(bus)
    runs = racy = inside = users = inflight = segv = 0
    try:
        for k, seed in enumerate(seeds):
            if SEED is None and time.monotonic() > deadline:
                break
            if leaked(bus) > 40:
                close_bus(bus)
                bus = DaxBus(workers=2)
                enable_tracing(bus)
            run = race_run(
                bus, profile, seed, impl_profile=impl_profile, minor_base=MINOR_BASE + (k % 4096) * 64
            )
            try:
                check_trace(c, run)
            except TraceRejected as e:
                pytest.fail(str(e), pytrace=False)
            runs += 1
            steps = [i for i, e in enumerate(run.events) if e.kind == "step" and i >= run.k_start]
            if steps and any(r.k0 <= steps[-1] and r.k1 > steps[0] for recs in run.touches for r in recs):
                racy += 1
            # a handler fault step logged strictly inside the admin program (between its first and
            # last step events): the fault really interleaved with the teardown or re-bind
            if steps and any(steps[0] < k < steps[-1] for k in run.hrecs if run.hrecs[k].cpu >= 0):
                inside += 1
            if steps and any(u.k0 <= steps[-1] and u.k1 > steps[0] for u in run.user_ops):
                users += 1
            inflight += munmap_met_fault(run)
            segv += munmap_met_pending_touch(run)
    finally:
        close_bus(bus)
    print(
        f"\n{profile}: {runs} runs accepted, {racy} with a touch overlapping the admin program, {inside} "
        f"with a fault step logged inside it, {users} with a user file operation overlapping it, "
        f"{inflight} with the user's munmap begun while a fault on its mapping was in flight (munmap "
        f"waits), {segv} with a touch of that mapping under way at the munmap and ending SIGSEGV (the "
        "fault found no vma)"
    )
    assert runs >= (30 if SEED is not None else min(RUNS, 200))
    assert SEED is not None or racy > runs // 10, "the runs hardly race: the test would prove little"


def munmap_met_fault(run: Run) -> bool:
    """The user's munmap began while a fault on its mapping was in flight in the handler (between
    its read_lock and read_unlock): the munmap had to wait for it (spec/vma.py do_munmap)."""
    starts = [u.k0 for u in run.user_ops if u.kind == "munmap" and u.outcome == "ok"]
    if not starts:
        return False
    opened: dict[int, int] = {}
    for k in sorted(run.hrecs):
        h = run.hrecs[k]
        if h.ukey is None:
            continue
        if h.kind == "read_lock":
            opened[h.cpu] = k
        elif h.kind == "read_unlock" and h.cpu in opened and opened.pop(h.cpu) < starts[0] <= k:
            return True
    return False


def munmap_met_pending_touch(run: Run) -> bool:
    """A touch of the user's mapping began before the user's munmap ended and ended in SIGSEGV:
    its fault was raised while the vma existed and found none (or the access came after)."""
    ends = [u.k1 for u in run.user_ops if u.kind == "munmap" and u.outcome == "ok"]
    return bool(ends) and any(
        isinstance(r, TouchRec) and r.ukey is not None and r.outcome == "SIGSEGV" and r.k0 < ends[0]
        for recs in run.touches
        for r in recs
    )


def _target(profile: str) -> tuple[Profile | None, Ctx]:
    """impl's profile (None: the reference) and the spec to check against: with DEVDAX_TRACE_VARIANT
    the variant built into impl and its own spec, so that only a race can expose it."""
    if VARIANT is None:
        return None, spec_ctx(profile)
    v = VARIANTS[VARIANT]
    if v.base.name != profile:
        pytest.skip(f"variant {VARIANT} varies {v.base.name}, not {profile}")
    return v.profile(), spec_ctx(profile, v.profile())


def _scheduled(bus: DaxBus, profile: str, seed: int, k: int, impl_profile: Profile | None = None) -> Run:
    return race_run(
        bus, profile, seed, impl_profile=impl_profile, minor_base=MINOR_BASE + (k % 4096) * 64, scheduled=True
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("profile", IMPL_PROFILES)
def test_scheduled_runs(profile: str) -> None:
    """Runs whose interleaving the seeded scheduler chose, each checked; with DEVDAX_TRACE_SEED one
    run, replayed exactly (DEVDAX_TRACE_VARIANT: impl built with that variant, own spec)."""
    impl_profile, c = _target(profile)
    seeds = [int(SEED)] if SEED is not None else list(range(SCHED_RUNS))
    bus = DaxBus(workers=2)
    runs = 0
    try:
        for k, seed in enumerate(seeds):
            if leaked(bus) > 40:
                close_bus(bus)
                bus = DaxBus(workers=2)
            run = _scheduled(bus, profile, seed, k, impl_profile)
            try:
                check_trace(c, run)
            except TraceRejected as e:
                pytest.fail(str(e), pytrace=False)
            runs += 1
    finally:
        close_bus(bus)
    print(f"\n{profile}: {runs} scheduled runs accepted")
    assert runs == len(seeds)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("profile", IMPL_PROFILES)
def test_same_seed_same_log(profile: str) -> None:
    """Scheduled, a seed fixes the whole log (up to the names the bus hands out) and every choice."""
    bus = DaxBus(workers=2)
    try:
        for seed in range(3):
            a = _scheduled(bus, profile, seed, 2 * seed)
            b = _scheduled(bus, profile, seed, 2 * seed + 1)
            assert a.choices and a.choices == b.choices, f"seed {seed}: the scheduler chose differently"
            assert a.canonical() == b.canonical(), f"seed {seed}: two scheduled runs logged differently"
            assert any(e.kind == "read_lock" for e in a.events[a.k_start :]), "no fault was scheduled"
    finally:
        close_bus(bus)


@pytest.mark.timeout(240)
def test_scheduled_variant_replays() -> None:
    """no-synchronize (clear alive, unmap, no grace period) built into impl and checked against its
    own spec: only a race exposes it (a fault checks alive before the clear and inserts after the
    unmap: no_entry_after_kill, or impl's own pagemap check of it). Some seed's schedule is that
    race; its report names the command that replays it, and the replay is rejected with the
    identical log."""
    v = VARIANTS["no-synchronize"]
    profile = v.base.name
    c = spec_ctx(profile, v.profile())
    bus = DaxBus(workers=2)
    try:
        found: tuple[int, str, list[str]] | None = None
        for seed in range(300):
            run = _scheduled(bus, profile, seed, seed, v.profile())
            try:
                check_trace(c, run)
            except TraceRejected as e:
                found = (seed, str(e), run.canonical())
                break
        assert found is not None, "300 scheduled runs of no-synchronize were all accepted by its own spec"
        seed, report, log = found
        print(f"\nno-synchronize rejected under scheduled seed {seed}:\n{report}")
        assert f"DEVDAX_TRACE_SEED={seed} DEVDAX_TRACE_VARIANT=no-synchronize" in report
        assert f"test_scheduled_runs[{profile}]" in report
        # the spec's invariant, or impl's own pagemap check of it at the end of the kill (a stale
        # insert that lands before that check stops the admin program: DaxBus._check_no_entries)
        assert "no_entry_after_kill" in report or "still has an installed entry" in report
        again = _scheduled(bus, profile, seed, seed + 1000, v.profile())
        with pytest.raises(TraceRejected):
            check_trace(c, again)
        assert again.canonical() == log, "the replay of the failing seed logged differently"
    finally:
        close_bus(bus)
