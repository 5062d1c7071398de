"""The short run of the API fuzz, in every `make test`: a few dozen random programs over the public
device-DAX API with valid and hostile arguments (tests/fuzz/api_machine.py). The long run, with the
same machine and oracle, is `make fuzz` (bench/bench_fuzz.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from devdax.impl import sys as dsys

from . import harness
from .api_machine import ApiMachine

_NO_UFFD = dsys.uffd_unavailable()

#: examples and steps of the short run: about 15 s here (the budget for all of tests/fuzz is 60 s).
#: Shrinking a failure costs a bus (a handler process) per attempt, minutes in all, so `make test`
#: reports the failing program as found; DEVDAX_FUZZ_SHRINK=1 shrinks it to the shortest.
SHORT = settings(
    max_examples=int(os.environ.get("DEVDAX_FUZZ_EXAMPLES", "10")),
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=tuple(Phase)
    if os.environ.get("DEVDAX_FUZZ_SHRINK")
    else tuple(p for p in Phase if p != Phase.shrink),
)


@pytest.mark.skipif(_NO_UFFD is not None, reason=str(_NO_UFFD))
def test_api_fuzz_short_run() -> None:
    tally = harness.Tally(strict=True)
    harness.install(tally)
    with harness.watchdog():
        run_state_machine_as_test(ApiMachine, settings=SHORT)
    assert tally.calls > 0
