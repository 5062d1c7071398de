"""bench/bench_targets.py judges issue 15's targets from one run's figures: each verdict must follow
the figures both ways (a report that always says "met" would prove nothing). No timing here: the
figures are made up, the benchmark measures them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not an installed package; the benchmarks run from the root
    sys.path.insert(0, str(ROOT))

from bench.bench_check import Pair  # noqa: E402
from bench.bench_targets import Devices2, RaceRow, judge, render  # noqa: E402


def default(compiled_cpu: float) -> Pair:
    return Pair(
        "default:1",
        47_872,
        395_118,
        True,
        "entries_naturally_aligned",
        (13.0, 5.0),
        (12.0, 5.0),
        (1.3, compiled_cpu),
    )


def rows(slow_at: int = 0, last: float = 2.0) -> list[RaceRow]:
    out = [RaceRow(n, 100 * n, 0.5, 0.4, 3.3, "pass / pass") for n in range(2, 16)]
    out.append(RaceRow(16, 203_180, 5.5, last, 200.0, "pass / pass"))
    if slow_at:
        out[slow_at - 2] = RaceRow(slow_at, 100, 0.5, 4.0, 3.3, "pass / pass")
    return out


GOOD = (default(1.1), Devices2(1_244_837, 33.0, 32.9, 533.0, "pass"), rows(), (20_000, 1126.0, 345.0))


def test_all_met() -> None:
    lines = judge(*GOOD)
    assert len(lines) == 5 and all(": met" in x for x in lines), lines
    assert "10.91x compiled" in lines[0]


@pytest.mark.parametrize(
    "which, args",
    [
        ("10x states/s", (default(1.3), *GOOD[1:])),
        ("--devices 2", (GOOD[0], Devices2(1_244_837, 61.0, 60.0, 533.0, "pass"), *GOOD[2:])),
        ("--devices 2", (GOOD[0], Devices2(1_244_837, 33.0, 32.9, 1100.0, "pass"), *GOOD[2:])),
        ("16 CPUs under 5 s", (*GOOD[:2], rows(last=5.1), GOOD[3])),
        ("no slower than Rumur", (*GOOD[:2], rows(slow_at=7), GOOD[3])),
        ("memory", (*GOOD[:3], (20_000, 600.0, 345.0))),
    ],
)
def test_each_target_can_fail(
    which: str, args: tuple[Pair, Devices2, list[RaceRow], tuple[int, float, float]]
) -> None:
    lines = judge(*args)
    bad = [x for x in lines if "NOT met" in x]
    assert len(bad) == 1 and which in bad[0], lines


def test_the_race_slower_at_names_the_n() -> None:
    line = judge(*GOOD[:2], rows(slow_at=7), GOOD[3])[3]
    assert "N = [7]" in line and "compiled" in line


def test_render_holds_every_row() -> None:
    text = render(*GOOD, "meta")
    assert text.startswith("## Issue 15 targets in one run\n\nmeta\n")
    assert text.count("| pass / pass |") == 15 and "1,244,837" in text
