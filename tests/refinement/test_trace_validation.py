"""Concurrent trace validation: thousands of short racy runs on impl, each accepted only if its log
is a path of the spec (tests/refinement/trace.py says what a run is and how the checker decides).

Per profile the runs go on until DEVDAX_TRACE_RUNS runs (default 1000) or DEVDAX_TRACE_SECONDS
seconds (default 55) are done, on one bus (a new one when a modern re-bind's documented leak has
used up the core's device slots). Run k uses seed k; a rejected run prints its seed, and
DEVDAX_TRACE_SEED=N reruns that schedule (the thread interleaving itself is the OS's: the seed fixes
units, accesses, sleeps and the admin actions, and the rerun repeats it 30 times).
"""

from __future__ import annotations

import os
import time

import pytest

from devdax.impl.dax import IMPL_PROFILES, DaxBus
from devdax.spec.config import Layout
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import get_profile

from .driver import MINOR_BASE, spec_config
from .trace import TraceRejected, check_trace, close_bus, enable_tracing, leaked, race_run

RUNS = int(os.environ.get("DEVDAX_TRACE_RUNS", "1000"))
SECONDS = float(os.environ.get("DEVDAX_TRACE_SECONDS", "55"))
SEED = os.environ.get("DEVDAX_TRACE_SEED")


def spec_ctx(profile: str) -> Ctx:
    cfg = spec_config(profile, cpus=2, generations=2)
    return Ctx(cfg, get_profile(profile), Layout.of(cfg))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("profile", IMPL_PROFILES)
def test_trace_validation(profile: str) -> None:
    c = spec_ctx(profile)
    seeds = [int(SEED)] * 30 if SEED is not None else range(RUNS)
    deadline = time.monotonic() + SECONDS
    bus = DaxBus(workers=2)
    enable_tracing(bus)
    runs = racy = 0
    try:
        for k, seed in enumerate(seeds):
            if SEED is None and time.monotonic() > deadline:
                break
            if leaked(bus) > 40:
                close_bus(bus)
                bus = DaxBus(workers=2)
                enable_tracing(bus)
            run = race_run(bus, profile, seed, minor_base=MINOR_BASE + (k % 4096) * 64)
            try:
                check_trace(c, run)
            except TraceRejected as e:
                pytest.fail(str(e), pytrace=False)
            runs += 1
            steps = [i for i, e in enumerate(run.events) if e.kind == "step" and i >= run.k_start]
            if steps and any(r.k0 <= steps[-1] and r.k1 > steps[0] for recs in run.touches for r in recs):
                racy += 1
    finally:
        close_bus(bus)
    print(f"\n{profile}: {runs} runs accepted, {racy} with a touch overlapping the admin program")
    assert runs >= (30 if SEED is not None else min(RUNS, 200))
    assert SEED is not None or racy > runs // 10, "the runs hardly race: the test would prove little"
