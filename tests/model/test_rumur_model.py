"""bench/race.m against devdax: Rumur must find exactly devdax's states for the race (issue 15).

The Murphi model is written by hand with devdax's atomicity and CPU symmetry, so equal state counts
at each N are the cross-check that both explore the same race; the planted bug must be found by
both. Rumur comes from `make rumur` (CI runs it before `make test`): in CI a missing rumur fails
these tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not an installed package; the benchmarks run from the root
    sys.path.insert(0, str(ROOT))

from bench.bench_rumur import murphi_source, run_devdax, run_rumur  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def rumur_installed() -> None:
    if shutil.which("rumur") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("rumur is not installed: .ci/run must run `make rumur` before `make test`")
        pytest.skip("rumur is not installed (`make rumur`)")


@pytest.mark.parametrize("cpus", [2, 3])
def test_rumur_finds_devdax_states(cpus: int, tmp_path: Path) -> None:
    devdax = run_devdax(cpus)
    rumur = run_rumur(murphi_source(cpus), threads=1, workdir=tmp_path)
    assert (rumur.states, rumur.verdict) == (devdax.states, devdax.verdict) == (rumur.states, "pass")


@pytest.mark.parametrize("variant", ["no-synchronize", "unmap-before-synchronize"])
def test_both_find_the_planted_bug(variant: str, tmp_path: Path) -> None:
    devdax = run_devdax(2, variant)
    rumur = run_rumur(murphi_source(2, variant), threads=1, workdir=tmp_path)
    assert "no_entry_after_kill" in devdax.verdict
    assert rumur.verdict in ("no_entry_after_kill", "no_map_of_dead_device"), rumur.verdict
    assert rumur.verdict in devdax.verdict
    # one thread: Rumur's search is breadth-first, so its trace is as short as devdax's
    assert rumur.trace == devdax.trace > 0
