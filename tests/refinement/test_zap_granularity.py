"""A zap is atomic per entry, not per vma: the trace checker must accept a log in which a fault
racing a zap kept its entry in one unit of a vma while the zap took the vma's other unit.

The kernel's unmap_mapping_range walks the vmas of the mapping and each vma entry by entry, every
entry under the page table lock that a fault's install takes too (mm/memory.c zap_pmd_range), and
impl's zap is one MADV_DONTNEED per vma, which a handler's UFFDIO_CONTINUE interleaves page by
page. A free-running modern run showed it (CI, seed 458): two faults installed both units of a vma
while core.revive_device's zap of the re-bind ran; the zap took one of them and not the other, and
the checker, which zapped whole vmas, rejected the log.

The run here is a log the lockstep driver makes on impl (the setup, a whole disable, a whole
re-bind) with two faults written into the re-bind's zap window and the end state the race left;
the log and the end state are all the checker reads.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devdax.impl.dax import DaxBus, Event
from devdax.spec.config import Layout
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import SIZE_OF_NAME
from devdax.spec.profiles import get_profile
from devdax.spec.state import Entry

from .abstraction import abstraction
from .checker import TraceRejected, check_trace
from .driver import MINOR_BASE, Driver, spec_config
from .runner import close_bus
from .trace import SHAPE_2, AdminRec, HRec, Run

PROFILE = "modern"
KINDS = ("read_lock", "check", "insert", "read_unlock")


@pytest.fixture(scope="module")
def rebound() -> Iterator[tuple[Ctx, Run]]:
    """One file of device 0 mapped once and both units of the vma touched; then a whole disable
    and a whole re-bind (the race begins after the setup). Nothing faults again: the end state
    has no entry."""
    cfg = spec_config(PROFILE, cpus=2, generations=2)
    c = Ctx(cfg, get_profile(PROFILE), Layout.of(cfg))
    bus = DaxBus(workers=2)
    drv = Driver(cfg, bus=bus, minor_base=MINOR_BASE)
    try:
        drv.open(0, True)
        drv.mmap(0, SHAPE_2)
        drv.touch(0, 0, True)
        drv.touch(0, 1, True)
        k_start, s0 = len(drv.events), drv.s
        files = {f.name: k for f, k in drv.live_files()}
        drv.disable(0)
        k_enable = len(drv.events)
        drv.enable(0)
        events = list(drv.events)
        devs = {d.name: drv.ref.dev_index(drv.c, d) for r in drv.ref.regions for d in r.devices}
        final = abstraction(drv.c, bus, drv.ref, minor_base=MINOR_BASE)
        ops = [
            AdminRec("disable", 0, k_start, k_enable, "ok"),
            AdminRec("enable", 0, k_enable, len(events), "ok"),
        ]
        yield c, Run(0, PROFILE, events, k_start, [], ops, files, devs, s0, final)
    finally:
        drv.close()
        close_bus(bus)


def _setup_entries(run: Run) -> tuple[Entry, Entry]:
    lo, hi = sorted(run.s0.entries, key=lambda e: e.addr)
    assert lo.vma == hi.vma, "the setup maps one vma with two units"
    return lo, hi


def _faults_at(run: Run, at: int, units: list[Entry], kept: list[Entry]) -> Run:
    """The run with one fault per unit (CPU 0, one after the other, each installing the whole
    unit) written into the log at position ``at``, and ``kept`` the entries the race left."""
    points: list[HRec] = []
    for e in units:
        for kind in KINDS:
            size = SIZE_OF_NAME["pmd"] if kind in ("check", "insert") else 0
            points.append(
                HRec(kind, 0, 0, e.vma, e.addr, alive=1, install=kind == "check", size=size, changed=e.size)
            )
    events = run.events[:at] + [Event(h.kind, "cpu0", f"{h.addr:#x}") for h in points] + run.events[at:]
    hrecs = {at + n: h for n, h in enumerate(points)}
    ops = [AdminRec(a.kind, a.node, a.k0, a.k1 + len(points) * (a.k1 > at), a.outcome) for a in run.admin_ops]
    final = run.final._replace(entries=frozenset(kept))
    return Run(run.seed, run.profile, events, run.k_start, [], ops, run.files, run.devs, run.s0, final, hrecs)


def _after_alive_set(run: Run) -> int:
    """The position just after the re-bind's store of alive (run_dax's point): the faults there
    see the device alive, before core.revive_device's zap and the run_dax step event."""
    return next(k for k in range(run.k_start, len(run.events)) if run.events[k].kind == "alive_set") + 1


def test_the_log_alone_is_a_spec_path(rebound: tuple[Ctx, Run]) -> None:
    c, run = rebound
    assert len(run.s0.entries) == 2 and not run.final.entries
    check_trace(c, run)


@pytest.mark.parametrize("kept", ["lower", "upper", "both", "neither"])
def test_a_zap_racing_two_faults_may_take_either_unit(rebound: tuple[Ctx, Run], kept: str) -> None:
    """Both units installed between alive = 1 and the end of the re-bind's zap: the zap may have
    taken any of them, each on its own, whatever the vma."""
    c, run = rebound
    lo, hi = _setup_entries(run)
    left = {"lower": [lo], "upper": [hi], "both": [lo, hi], "neither": []}[kept]
    check_trace(c, _faults_at(run, _after_alive_set(run), [lo, hi], left))


@pytest.mark.parametrize("kept", ["lower", "neither"])
def test_a_fault_after_the_rebind_keeps_its_entry(rebound: tuple[Ctx, Run], kept: str) -> None:
    """The relaxation ends with the re-bind: an entry installed after it stays, and an end state
    without it is rejected."""
    c, run = rebound
    lo, hi = _setup_entries(run)
    left = {"lower": [lo], "neither": []}[kept]
    with pytest.raises(TraceRejected, match="abstraction"):
        check_trace(c, _faults_at(run, len(run.events), [lo, hi], left))
    check_trace(c, _faults_at(run, len(run.events), [lo, hi], [lo, hi]))
