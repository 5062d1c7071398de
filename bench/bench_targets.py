"""Issue 15's targets measured in one run: "## Issue 15 targets in one run" in bench/RESULTS.md.

Each of the other issue 15 benchmarks measures one target in depth (bench_check.py --speed against
the baseline, bench_rumur.py against Rumur, bench_floor.py against CPython's floor); their sections
were written at different hours, on a machine whose speed drifts by a fifth within one. Here every
target is measured by one invocation, one after the other, and judged from those figures alone:

* 10x states/s on the v4.10 default: the baseline checker (a395383, bench_check.load_baseline),
  today's interpreted checker and the compiled one (`devdax check --compiled`), in turn within each
  round, CPU seconds, medians (bench_check.race_pair);
* `--devices 2` exhaustive under 60 s and under 1 GB: one compiled process (the child's wall time
  as seen from here, and its own peak RSS);
* the race at 16 CPUs under 5 s, and no slower than Rumur at every N from 2 to 16: for each N the
  interpreted checker, the compiled one and Rumur (bench/race.m, one thread, model to verdict:
  code generation and the C compiler included), which must all find the same states;
* at least 2x less memory per state: tracemalloc's peak per stored state, baseline against today.

    .venv/bin/python -m bench.bench_targets [--repeat 3] [--max-cpus 16] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass, replace

from bench.bench_check import Pair, load_baseline, memory_per_state, publish, race, race_pair, revision, sides
from bench.bench_rumur import murphi_source, rumur_version, run_devdax, run_rumur
from devdax import compiled
from devdax.spec.ctx import Ctx
from devdax.spec.variants import PROFILE_CONFIGS

SECTION = "## Issue 15 targets in one run"
#: the issue's own figures for `--devices 2` at a395383 (not re-run here: six minutes of baseline)
DEVICES2_BASE = "337 s and 1.7 GB"


@dataclass(frozen=True)
class RaceRow:
    """The race at N CPUs, model to verdict in wall seconds: interpreted, compiled, Rumur."""

    cpus: int
    states: int
    interpreted: float
    compiled: float
    rumur: float
    verdict: str


@dataclass(frozen=True)
class Devices2:
    states: int
    wall: float
    cpu: float
    peak_mb: float
    verdict: str


def race_row(n: int) -> RaceRow:
    """One N: the three must agree on the states (the cross-check that they explore one race)."""
    d = run_devdax(n)
    t0 = time.perf_counter()
    cr = compiled.run(Ctx.of(race(n, "pud"))).result
    cwall = time.perf_counter() - t0
    r = run_rumur(murphi_source(n), threads=1)
    if not d.states == cr.states == r.states:
        raise SystemExit(f"race N={n}: states interpreted {d.states}, compiled {cr.states}, Rumur {r.states}")
    row = RaceRow(n, d.states, d.total, cwall, r.total, f"{d.verdict} / {r.verdict}")
    print(
        f"race N={n:2} {row.states:>8,} states  interpreted {row.interpreted:6.2f} s  compiled "
        f"{row.compiled:6.2f} s  Rumur {row.rumur:7.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return row


def devices2() -> Devices2:
    """`devdax check --profile v4.10 --devices 2 --compiled`, exhaustive, in one child process."""
    t0 = time.perf_counter()
    run = compiled.run(Ctx.of(replace(PROFILE_CONFIGS["v4.10"], devices=2)))
    wall = time.perf_counter() - t0
    res = run.result
    verdict = ", ".join(sorted(res.violations)) or "pass"
    d = Devices2(res.states, wall, run.cpu, res.peak_rss / 2**20, verdict)
    print(f"--devices 2: {d.states:,} states, {d.wall:.1f} s wall, {d.peak_mb:.0f} MB", file=sys.stderr)
    return d


def judge(default: Pair, d2: Devices2, rows: list[RaceRow], mem: tuple[int, float, float]) -> list[str]:
    """Each target, met or NOT met, read off this run's figures."""

    def met(ok: bool) -> str:
        return "met" if ok else "**NOT met**"

    rc, ri = default.cpu[0] / default.compiled[1], default.ratio(default.cpu)
    last = rows[-1]
    slow_i = [r.cpus for r in rows if r.interpreted > r.rumur]
    slow_c = [r.cpus for r in rows if r.compiled > r.rumur]
    ns = f"{rows[0].cpus} to {last.cpus}"
    d2_ok = d2.wall < 60 and d2.peak_mb < 1024
    return [
        f"- 10x states/s on the v4.10 default: {met(rc >= 10)} ({rc:.2f}x compiled, {ri:.2f}x "
        "interpreted, CPU time against the baseline in the same rounds)",
        f"- `--devices 2` exhaustive under 60 s and under 1 GB, at once: {met(d2_ok)} "
        f"({d2.wall:.1f} s wall, {d2.peak_mb:.0f} MB, one compiled process; the issue measured "
        f"{DEVICES2_BASE})",
        f"- the race at {last.cpus} CPUs under 5 s: {met(min(last.compiled, last.interpreted) < 5)} "
        f"({last.compiled:.2f} s compiled, {last.interpreted:.2f} s interpreted)",
        f"- no slower than Rumur at every N from {ns}: {met(not slow_c)} compiled, "
        f"{met(not slow_i)} interpreted"
        + (f" (slower at N = {slow_i + slow_c})" if slow_i or slow_c else ""),
        f"- at least 2x less memory per state: {met(mem[1] / mem[2] >= 2)} ({mem[1]:,.0f} -> "
        f"{mem[2]:,.0f} bytes per state, {mem[1] / mem[2]:.2f}x)",
    ]


def render(default: Pair, d2: Devices2, rows: list[RaceRow], mem: tuple[int, float, float], meta: str) -> str:
    out = [
        SECTION,
        "",
        meta,
        "",
        "Every figure below comes from this one invocation (module docstring). Baseline = the "
        "checker at a395383, before issue 15; CPU seconds for the ratio (medians of the rounds, each "
        "round running the baseline, the interpreted checker and the compiled one in turn); wall "
        "seconds, model to verdict, for the race (one run each; Rumur's includes its C compiler, "
        "the compiled checker's its child process and imports).",
        "",
        "| workload | states | CPU s baseline | CPU s interpreted | CPU s compiled | ratio compiled "
        "| verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| v4.10 default | {default.states:,} | {default.cpu[0]:.2f} | {default.cpu[1]:.2f} "
        f"| {default.compiled[1]:.2f} | {default.cpu[0] / default.compiled[1]:.2f}x | {default.verdict} |",
        "",
        "| workload | states | wall s | CPU s | peak RSS MB | verdict |",
        "|---|---:|---:|---:|---:|---|",
        f"| v4.10 `--devices 2`, compiled, exhaustive | {d2.states:,} | {d2.wall:.1f} | {d2.cpu:.1f} "
        f"| {d2.peak_mb:.0f} | {d2.verdict} |",
        "",
        "| N | states (all three) | interpreted s | compiled s | Rumur s | compiled / Rumur | verdict |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    out += [
        f"| {r.cpus} | {r.states:,} | {r.interpreted:.2f} | {r.compiled:.2f} | {r.rumur:.2f} "
        f"| {r.compiled / r.rumur:.2f}x | {r.verdict} |"
        for r in rows
    ]
    out += [
        "",
        f"Memory (v4.10 default, first {mem[0]:,} states): {mem[1]:,.0f} bytes per stored state at "
        f"a395383, {mem[2]:,.0f} today.",
        "",
        "Targets:",
        "",
        *judge(default, d2, rows, mem),
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the v4.10 default")
    ap.add_argument("--min-cpus", type=int, default=2)
    ap.add_argument("--max-cpus", type=int, default=16)
    ap.add_argument("--mem-cap", type=int, default=20_000, help="state cap of the memory run")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    if a.repeat < 1 or a.min_cpus < 2 or a.max_cpus < a.min_cpus:
        ap.error("--repeat >= 1 and 2 <= --min-cpus <= --max-cpus")
    meta = (
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC at {revision()} on "
        f"{platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"{rumur_version()}, load average {os.getloadavg()[0]:.1f} at start (shared machine). "
        "`.venv/bin/python -m bench.bench_targets` regenerates this section."
    )
    if compiled.stale() is not None:
        compiled.build()
    old, new = sides(load_baseline())
    default = race_pair(old, new, "default:1", a.repeat, None, once_above=120.0)
    d2 = devices2()
    rows = [race_row(n) for n in range(a.min_cpus, a.max_cpus + 1)]
    n, b = memory_per_state(old, "default:1", a.mem_cap)
    _, c = memory_per_state(new, "default:1", a.mem_cap)
    publish(render(default, d2, rows, (n, b, c), meta), SECTION, not a.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
