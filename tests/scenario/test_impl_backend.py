"""The emulation agrees with every shipped scenario's expectations, and with the spec's prediction.

Each scenario runs on a fresh DaxBus (its own fault-handler process) over real memory: the 1G
scenarios get a 2 GiB memfd region, fallocated (a minor fault needs the page in the page cache) but
never written, so it costs page cache, not a copy. Where userfaultfd minor mode is unavailable the
whole module is skipped with the reason (see tests/impl/conftest.py for the same probe).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devdax.impl import sys as dsys
from devdax.scenario import load_all
from devdax.scenario.format import Scenario
from devdax.scenario.spec_backend import SpecBackend

if TYPE_CHECKING:
    from devdax.impl.bus import DaxBus

SCENARIOS = load_all(Path(__file__).parent.parent / "scenarios")


def _memory_for(sc: Scenario) -> str | None:
    """Skip (with the reason) only if the region's memory truly cannot be had."""
    st = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
    need = sc.setup.region_size
    if st is not None and st.f_bavail * st.f_frsize < need + (256 << 20):
        return f"needs {need >> 20} MiB of shmem for the region, /dev/shm has less"
    return None


_REASON = dsys.uffd_unavailable()
pytestmark = [pytest.mark.skipif(_REASON is not None, reason=_REASON or ""), pytest.mark.timeout(180)]


#: Refinement gaps the conformance scenarios exposed (impl and spec disagree); issue 12 closes them.
#: Strict: a fixed gap fails here until its entry is removed.
GAPS_MODERN: set[str] = set()
GAPS_V410 = {"k44_disable_then_remove_one_of_two_4k"}


def _params(scs: list[Scenario], gaps: set[str]) -> list[object]:
    mark = pytest.mark.xfail(strict=True, reason="impl/spec refinement gap found by conformance (issue 12)")
    return [
        pytest.param(s, id=Path(s.file).stem, marks=[mark] if Path(s.file).stem in gaps else []) for s in scs
    ]


@pytest.mark.parametrize("sc", _params(SCENARIOS, GAPS_MODERN))
def test_impl_matches_expectations_and_spec(sc: Scenario) -> None:
    from devdax.scenario.impl_backend import ImplBackend

    reason = _memory_for(sc)
    if reason:
        pytest.skip(reason)
    got = ImplBackend().run(sc)
    if sc.expect is not None:  # files without expect are judged against the kernel recordings
        assert got == list(sc.expect)
    assert got == SpecBackend().run(sc)


def test_cli_run_impl(capsys: pytest.CaptureFixture[str]) -> None:
    from devdax.scenario.cli import main

    f = str(Path(__file__).parent.parent / "scenarios" / "s31b_touch_after_disable_faulted.json")
    assert main(["run", "--backend", "impl", f]) == 0
    out = capsys.readouterr().out.splitlines()
    assert '"outcome": "SIGBUS"' in out[5]


def test_cli_diff_both_backends(capsys: pytest.CaptureFixture[str]) -> None:
    from devdax.scenario.cli import main

    d = Path(__file__).parent.parent / "scenarios"
    files = [
        str(d / n)
        for n in (
            "s22_dontfork_sigsegv.json",
            "s33a_reenable_old_mapping.json",
            "s24_split_misaligned_einval.json",
        )
    ]
    assert main(["diff", *files]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 scenarios, 0 disagreements"


V410 = [s for s in SCENARIOS if s.setup.region_size <= (64 << 20)]


@pytest.fixture(scope="module")
def shared_bus() -> Iterator[DaxBus]:
    from devdax.impl.bus import DaxBus

    b = DaxBus()
    try:
        yield b
    finally:
        b.close()


@pytest.mark.parametrize("sc", _params(V410, GAPS_V410))
def test_impl_matches_spec_under_v410(sc: Scenario, shared_bus: DaxBus) -> None:
    """The same user programs against the v4.10 driver (no bind cycles: disable is the provider's
    removal, enable a new probe; alive from creation): the emulation says what the spec says."""
    from devdax.scenario.impl_backend import ImplBackend

    old = dataclasses.replace(sc, profile="v4.10")
    assert ImplBackend(bus=shared_bus).run(old) == SpecBackend().run(old)


def test_a_fixed_base_has_room_to_grow() -> None:
    """The spec's FIXED_BASE has free address space after it; a runner's base must too, or a
    process's own memory right above a tight reservation (a thread stack) turns mremap's growth in
    place into a move (devdax/scenario/placement.py)."""
    from devdax.impl.vmcore import claim
    from devdax.scenario.placement import fixed_base
    from devdax.spec.config import MM_ROOM as ROOM

    span, align = 4 << 20, 2 << 20
    base = fixed_base(span, align)
    assert base % align == 0
    assert claim(base, span + ROOM)  # all of it free when the step maps there
    dsys.munmap(base, span + ROOM)


def _grown_then_mapped(fixed: bool) -> list[str]:
    """open; m2 2M (at the fixed base, or plain at the window's top); mremap m2 to 4M with
    MREMAP_MAYMOVE; a plain 2M mmap at offset 4096. Returns impl's outcomes after checking the
    spec's."""
    from devdax.scenario import format as fmt
    from devdax.scenario.impl_backend import ImplBackend

    rw, shared = ["PROT_READ", "PROT_WRITE"], ["MAP_SHARED"]
    m2 = {"op": "mmap", "fd": "f0", "length": 2 << 20, "prot": rw, "flags": shared, "offset": 0, "as": "m2"}
    data = {
        "format": "devdax-scenario/1",
        "name": "grow",
        "profile": "modern",
        "region": {"size": 32 << 20, "align": 2 << 20},
        "devices": [{"size": 32 << 20}],
        "steps": [
            {"op": "open", "dev": 0, "flags": ["O_RDWR"], "as": "f0"},
            m2 | ({"fixed_offset": 0} if fixed else {}),
            {"op": "mremap", "map": "m2", "offset": 0, "old_length": 2 << 20, "new_length": 4 << 20}
            | {"move": True},
            {"op": "mmap", "fd": "f0", "length": 2 << 20, "prot": rw, "flags": shared, "offset": 4096}
            | {"as": "m0"},
        ],
    }
    sc = fmt.parse(data, "grow.json")
    assert SpecBackend().run(sc) == ["ok", "ok", "ok", "EINVAL"]
    return ImplBackend().run(sc)


def test_a_fixed_mapping_grown_by_mremap_stays_put_as_in_the_spec() -> None:
    """Found by test_dax_random: the spec grows a fixed mapping in place; impl moved it when its
    base had no room after it, and the move made a later plain mmap at offset 4096 land aligned by
    luck (ok, where the spec says EINVAL)."""
    assert _grown_then_mapped(fixed=True) == ["ok", "ok", "ok", "EINVAL"]


def test_a_mapping_at_the_window_top_moves_when_grown_as_in_the_spec() -> None:
    """Found by test_dax_random: nothing is free above the spec's MM_WINDOW, so a mapping at the
    top moves when mremap grows it; impl grew it in place into free memory above its window."""
    assert _grown_then_mapped(fixed=False) == ["ok", "ok", "ok", "EINVAL"]
