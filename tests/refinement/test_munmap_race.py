"""munmap against a fault in flight, forced by a scripted scheduler, each run's log checked against
the spec (tests/refinement/checker.py).

The spec (spec/vma.py do_munmap) cannot unmap a vma while a CPU is in a fault on it (the fault holds
mmap_lock for read, munmap takes it for write), so a log in which impl's munmap falls between a
fault's read_lock and read_unlock is rejected. race_run's user thread maps the device, its user
toucher touches that mapping, and the user thread unmaps it; the scripted choices here (instead of
the seeded random ones of test_trace_validation.py) make the two meet in a chosen order:

* ``in-flight``: the fault has looked its vma up and is held before ``stage`` (check, insert,
  read_unlock) while the munmap is let through twice (it must find the fault and wait); then all
  goes on. impl's munmap must come after the fault's read_unlock.
* ``before-lookup``: the fault has been raised (the toucher is blocked, a worker has its message)
  but is held before its vma lookup until the munmap has returned: the fault then finds no vma,
  nothing of it is logged, the toucher gets SIGSEGV.

The admin thread is held until the user thread is done (so the device is alive and faults install);
the other threads go in the seeded random order (the user thread may close its fd before the
munmap, which then drops the file's last reference). The last test takes the wait out of impl (munmap
as it was) and shows the checker rejecting the run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from devdax.impl.core import MappingCore
from devdax.impl.dax import DaxBus
from devdax.spec.config import Layout
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import get_profile

from .checker import TraceRejected, check_trace
from .driver import MINOR_BASE, spec_config
from .runner import RunState, close_bus, race_run
from .scheduler import Chooser
from .test_trace_validation import munmap_met_fault, munmap_met_pending_touch
from .trace import Run, TouchRec

pytestmark = pytest.mark.timeout(240)

TOUCHERS = 2
UT = TOUCHERS  # the user toucher's index
USER = f"main{TOUCHERS + 2}"  # the user thread's gate label
ADMIN = f"main{TOUCHERS}"
WORKER = f"worker(toucher{UT})"  # a handler worker serving the user toucher's fault


def spec_ctx(profile: str) -> Ctx:
    cfg = spec_config(profile, cpus=2, generations=2)
    return Ctx(cfg, get_profile(profile), Layout.of(cfg))


def scripted(order: str, stage: str) -> Callable[[RunState], Chooser]:
    """The chooser for one order (see the module docstring); ``stage`` is the point the in-flight
    fault is held before."""

    def make(st: RunState) -> Chooser:
        tries = [0]  # the user's passes through its gate since its munmap began

        def held(label: str) -> bool:
            who, _, what = label.partition(":")
            if who == ADMIN:
                return st.phase != "done"
            if order == "in-flight":
                if who == USER and st.phase == "before-munmap":
                    return not any_waiting(f"{WORKER}:{stage}")
                if who == WORKER and what == stage:
                    return st.phase not in ("unmapped", "done") and tries[0] < 2
            else:
                if who == USER and st.phase == "before-munmap":
                    return not any_waiting(f"{WORKER}:read_lock")
                if who == WORKER and what == "read_lock":
                    return st.phase not in ("unmapped", "done")
            return False

        waiting: list[str] = []

        def any_waiting(label: str) -> bool:
            return label in waiting

        def choose(labels: list[str], rng: random.Random) -> int:
            waiting[:] = labels
            free = [k for k, x in enumerate(labels) if not held(x)]
            # nothing free (only held threads wait): let the first held one go, never stall
            k = free[rng.randrange(len(free))] if free else 0
            if labels[k].startswith(USER + ":") and st.phase == "munmap":
                tries[0] += 1
            return k

        return choose

    return make


def run_forced(bus: DaxBus, profile: str, order: str, stage: str, seed: int) -> Run:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rpartition(" ")[0] or __file__
    return race_run(
        bus,
        profile,
        seed,
        minor_base=MINOR_BASE + (seed % 4096) * 64,
        scheduled=True,
        chooser=scripted(order, stage),
        force_user=True,
        touchers=TOUCHERS,
        script=f"tests/refinement/{test.rpartition('tests/refinement/')[2]}",
    )


def mapped(run: Run) -> bool:
    return any(u.kind == "mmap" and u.outcome == "ok" for u in run.user_ops)


def user_touches(run: Run) -> list[TouchRec]:
    return [r for recs in run.touches for r in recs if isinstance(r, TouchRec) and r.ukey is not None]


@pytest.mark.parametrize("profile", ["modern", "v4.10"])
@pytest.mark.parametrize("stage", ["check", "insert", "read_unlock"])
def test_munmap_with_a_fault_in_flight_is_a_spec_path(profile: str, stage: str) -> None:
    c = spec_ctx(profile)
    bus = DaxBus(workers=2)
    met = 0
    try:
        for seed in range(4):
            run = run_forced(bus, profile, "in-flight", stage, seed)
            check_trace(c, run)
            if not mapped(run):
                continue  # the user's mmap failed: nothing to race
            met += 1
            assert munmap_met_fault(run), f"seed {seed}: the munmap did not meet the fault\n{run.choices}"
            first = user_touches(run)[0]
            assert first.outcome == "ok", "a fault that began before the munmap completes"
    finally:
        close_bus(bus)
    assert met >= 3, "the forced race hardly happened"


@pytest.mark.parametrize("profile", ["modern", "v4.10"])
def test_munmap_before_the_fault_finds_its_vma_is_a_spec_path(profile: str) -> None:
    c = spec_ctx(profile)
    bus = DaxBus(workers=2)
    met = 0
    try:
        for seed in range(4):
            run = run_forced(bus, profile, "before-lookup", "", seed)
            check_trace(c, run)
            if not mapped(run):
                continue
            met += 1
            assert munmap_met_pending_touch(run)
            assert user_touches(run)[0].outcome == "SIGSEGV"
            assert not any(h.ukey is not None for h in run.hrecs.values()), "a fault without a vma was logged"
    finally:
        close_bus(bus)
    assert met >= 3


def test_munmap_that_does_not_wait_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """impl's munmap as it was before the wait (no read side honoured): the fault held before its
    insert is overtaken by the munmap, whose log the spec cannot explain (do_munmap cannot run while
    the CPU is in the fault) -- the checker must say so."""
    monkeypatch.setattr(MappingCore, "_mm_write", lambda self, lo, hi, op: op())
    c = spec_ctx("modern")
    bus = DaxBus(workers=2)
    try:
        run = run_forced(bus, "modern", "in-flight", "insert", 0)
        assert mapped(run)
        with pytest.raises(TraceRejected) as e:
            check_trace(c, run)
        assert "munmap" in str(e.value) and "cannot run here" in str(e.value), str(e.value)
    finally:
        close_bus(bus)
