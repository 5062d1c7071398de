"""Time every ``devdax prove`` obligation per profile and print a table (and the totals); with
``--bmc``, the bounded model checker's scaling instead.

    .venv/bin/python bench/bench_prove.py [--profile P ...] [--timeout S] [--markdown]
    .venv/bin/python bench/bench_prove.py --bmc [--depths 6 8 10] [--repeat 3] [--new-cap S]
                                          [--explicit-cap S] [--variant-depth K]

The design target: every obligation of a profile under 60 s in total on 2 cores. Results are recorded
by hand in bench/RESULTS.md; this script only measures.

``--bmc`` measures, on v4.10 races of growing size, BMC (proofs/bmc.py, the per-element encoding) to
each depth with the unfused step relation (median of --repeat runs) and with the fused one, in this
process; beside them the explicit checker on the same configuration in a child process stopped after
--explicit-cap seconds; then each race variant on the largest configuration.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

from devdax.proofs import runner
from devdax.proofs.agreement import protocol_for, universe_for
from devdax.proofs.bmc import bmc, bmc_config, concretize
from devdax.proofs.obligations import obligations_for
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import PROFILES


def main(argv: list[str]) -> int:
    # Over 50 lines on purpose: the options, the run and the table printer of a one-off benchmark
    # script, read top to bottom.
    p = argparse.ArgumentParser(prog="bench_prove")
    p.add_argument("--profile", nargs="+", default=sorted(PROFILES))
    p.add_argument("--timeout", type=float, default=runner.DEFAULT_TIMEOUT)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--bmc", action="store_true", help="the BMC scaling tables instead")
    p.add_argument("--depths", type=int, nargs="+", default=[6, 8, 10])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--new-cap", type=float, default=300.0)
    p.add_argument("--explicit-cap", type=float, default=600.0)
    p.add_argument("--variant-depth", type=int, default=12)
    args = p.parse_args(argv)
    if args.bmc:
        bmc_table(args.depths, args.repeat, args.new_cap, args.explicit_cap)
        cpus, faults, units = BMC_CONFIGS[-1]
        variant_table(cpus, faults, units, args.variant_depth, args.new_cap, args.explicit_cap)
        return 0
    rows: dict[str, dict[str, runner.Result]] = {}
    totals: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for prof in args.profile:
        # CPU seconds beside wall seconds: the machine is shared, wall time depends on the others' load
        start = time.process_time()
        results = runner.run(obligations_for(prof), args.timeout)
        cpu[prof] = time.process_time() - start
        totals[prof] = sum(r.verdict.seconds for r in results)
        for r in results:
            rows.setdefault(r.obligation.name, {})[prof] = r
    word = {
        runner.Status.PROVED: "ok",
        runner.Status.VIOLATED: "FAIL",
        runner.Status.FINDING: "finding",
        runner.Status.UNKNOWN: "UNKNOWN",
    }
    name_w = max(len(n) for n in rows)
    print(
        f"# devdax prove timings: python {platform.python_version()}, {os.cpu_count()} cpus, "
        f"timeout {args.timeout:g}s"
    )
    sep = " | " if args.markdown else "  "
    head = sep.join([f"{'obligation':<{name_w}}", *(f"{p:>16}" for p in args.profile)])
    print(f"| {head} |" if args.markdown else head)
    if args.markdown:
        print("|" + "|".join("-" * (len(c) + 2) for c in head.split(" | ")) + "|")
    for name, by in rows.items():
        cells = []
        for prof in args.profile:
            got = by.get(prof)
            cells.append(
                f"{'-':>16}"
                if got is None
                else f"{word[got.verdict.status] + f' {got.verdict.seconds:7.3f}s':>16}"
            )
        line = sep.join([f"{name:<{name_w}}", *cells])
        print(f"| {line} |" if args.markdown else line)
    tot = sep.join([f"{'total':<{name_w}}", *(f"{totals[p]:15.2f}s" for p in args.profile)])
    print(f"| {tot} |" if args.markdown else tot)
    cpu_line = sep.join([f"{'total CPU':<{name_w}}", *(f"{cpu[p]:15.2f}s" for p in args.profile)])
    print(f"| {cpu_line} |" if args.markdown else cpu_line)
    return 0


# --------------------------------------------------------------------------------------------------
# BMC scaling (--bmc): the unfused and the fused step relation, and the explicit checker
# --------------------------------------------------------------------------------------------------

#: (CPUs, faults per CPU, units) of the v4.10 race configurations the BMC table measures
BMC_CONFIGS = ((2, 1, 1), (2, 2, 2), (4, 2, 4), (4, 2, 6), (6, 3, 6), (8, 3, 8))
#: the race variants (spec/variants.py) BMC must still catch on the largest configuration
BMC_VARIANTS = ("no-synchronize", "synchronize-before-clear", "unmap-before-synchronize", "M20", "M22")

_EXPLICIT = """
import resource, sys, time
from devdax.model.checker import check
from devdax.proofs.bmc import bmc_config
from devdax.spec.ctx import Ctx
cpus, faults, units, stop = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[5] == "1"
variant = sys.argv[4] or None
c = Ctx.of(bmc_config("v4.10", variant, cpus, faults, units))
def report(states, frontier, depth, seconds):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"P {states} {depth} {time.process_time():.1f} {rss}", flush=True)
res = check(c, stop_on_violation=stop, progress=report)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(f"D {res.states} {res.depth} {time.process_time():.1f} {rss} {int(res.complete)} "
      f"{','.join(sorted(res.violations)) or '-'}", flush=True)
"""


def explicit(cpus: int, faults: int, units: int, cap: float, variant: str | None = None) -> str:
    """`devdax check` (symmetry + movers) on the same race, in a child process stopped after ``cap``
    seconds: 'states, BFS depth, CPU s, peak MB', or how far it got."""
    args = [
        sys.executable,
        "-c",
        _EXPLICIT,
        str(cpus),
        str(faults),
        str(units),
        variant or "",
        "1" if variant else "0",
    ]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=cap, check=False).stdout
        done = True
    except subprocess.TimeoutExpired as exc:
        raw = exc.output or b""
        out = raw.decode() if isinstance(raw, bytes) else raw
        done = False
    lines = [ln.split() for ln in out.splitlines() if ln[:2] in ("P ", "D ")]
    if not lines:
        return f"no result within {cap:g} s wall"
    last = lines[-1]
    states, depth, cpu_s, mb = int(last[1]), int(last[2]), float(last[3]), int(last[4])
    if done and last[0] == "D":
        what = "complete" if last[5] == "1" else f"stopped at {last[6]}"
        return f"{states:,} states, BFS depth {depth}, {cpu_s:.1f} CPU s, {mb} MB ({what})"
    return (
        f"NOT finished in {cap:g} s wall: {states:,}+ states, BFS depth {depth}, {cpu_s:.1f} CPU s, {mb} MB"
    )


def timed_bmc(cfg: Config, depth: int, cap: float, fused: bool = False) -> tuple[str, float | None]:
    """(verdict word, seconds or None when the cap ran out) of bmc() from depth 0 to ``depth``."""
    c = Ctx.of(cfg)
    t0 = time.perf_counter()
    status, trace, _ = bmc(c, depth, cap, fused=fused)
    dt = time.perf_counter() - t0
    if status is runner.Status.UNKNOWN:
        return f"timeout {cap:g} s", None
    word = "proved" if status is runner.Status.PROVED else f"violated@{len(trace.steps) if trace else '?'}"
    return word, dt


def full_depth(cfg: Config) -> int:
    """Steps of one complete run with no fault fallback: the admin's protocol steps plus its end, and
    lock, check, insert, unlock per fault."""
    pr = protocol_for(Ctx.of(cfg), universe_for(Ctx.of(cfg)))
    return len(pr.protocol_steps("remove")) + 1 + 4 * cfg.cpus * cfg.faults


def bmc_table(depths: list[int], repeat: int, new_cap: float, explicit_cap: float) -> None:
    print(
        f"# BMC of the v4.10 race (first fault pmd): {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} "
        f"UTC, python {platform.python_version()}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
    )
    print(
        "| CPUs x faults x units | explicit `devdax check` | full run steps | depth | unfused s | fused s |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for cpus, faults, units in BMC_CONFIGS:
        cfg = bmc_config("v4.10", None, cpus, faults, units)
        ex = explicit(cpus, faults, units, explicit_cap)
        for d in depths:
            runs = []
            for _ in range(repeat):
                _word, dt = timed_bmc(cfg, d, new_cap)
                runs.append(dt)
                if dt is None or dt > 20:
                    break
            new = None if None in runs else statistics.median([r for r in runs if r is not None])
            _word, fused = timed_bmc(cfg, d, new_cap, fused=True)
            print(
                f"| {cpus} x {faults} x {units} | {ex} | {full_depth(cfg)} | {d} | "
                f"{f'{new:.2f}' if new is not None else f'> {new_cap:g}'} | "
                f"{f'{fused:.2f}' if fused is not None else f'> {new_cap:g}'} |",
                flush=True,
            )
            ex = '"'
            if new is None or new > new_cap / 2 or fused is None or fused > new_cap / 2:
                break


def variant_table(cpus: int, faults: int, units: int, depth: int, cap: float, explicit_cap: float) -> None:
    print(f"# race variants on {cpus} CPUs x {faults} faults x {units} units, BMC to depth {depth}")
    print("| variant | broken | BMC trace depth | BMC s | replayed spec steps | explicit (stop at first) |")
    print("|---|---|---:|---:|---:|---|")
    for name in BMC_VARIANTS:
        cfg = bmc_config("v4.10", name, cpus, faults, units)
        c = Ctx.of(cfg)
        t0 = time.perf_counter()
        status, trace, note = bmc(c, depth, cap)
        dt = time.perf_counter() - t0
        steps = concretize(c, trace) if trace is not None else None
        print(
            f"| {name} | {trace.invariant if trace else status.name + ' ' + note} | "
            f"{len(trace.steps) if trace else '-'} | {dt:.2f} | {len(steps) if steps else '-'} | "
            f"{explicit(cpus, faults, units, explicit_cap, name)} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
