"""What `devdax check` says about its own progress (issue 15): states/s, memory, and an ETA only
where the breadth-first depth profile allows one."""

from __future__ import annotations

import io

from devdax import cli
from devdax.model.checker import Eta, check, peak_rss
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx


def test_eta_only_once_the_levels_shrink() -> None:
    eta = Eta()
    total = 0
    for d in range(6):  # levels 1, 2, 4, ... growing: no estimate
        total += 2**d
        assert eta(total, 2**d, d, 1.0 + d) is None


def test_eta_geometric_tail() -> None:
    """Levels 1000, 500, 250, ... expanded at 100 states/s: what is left is the frontier and a tail
    of about as many states again as the last level."""
    eta = Eta()
    total, level, got = 0, 1000.0, None
    for d in range(6):
        total += int(level)
        done = total - int(level)
        got = eta(total, int(level), d, done / 100)
        level /= 2
    assert got is not None
    frontier, tail = 31, 31 * 0.5 / 0.5
    assert abs(got - (frontier + tail) / 100) < 0.5


def test_stats_and_progress_lines_show_memory() -> None:
    res = check(Ctx.of(Config(profile="v4.10", race=True, cpus=2, faults=1, units=2, files=1, vmas=1)))
    assert res.peak_rss > 0 and peak_rss() >= res.peak_rss
    line = cli.stats_line(res)
    assert " states, " in line and "states/s" in line and "peak RSS" in line and "\n" not in line
    buf = io.StringIO()
    cli.ProgressLine(buf, force=True)(12_345, 10, 3, 2.0)
    assert "6,172 states/s" in buf.getvalue() and " MB" in buf.getvalue() and "ETA" not in buf.getvalue()
