"""The fault-vs-teardown race in devdax and in Rumur, side by side (issue 15): "## Race against Rumur".

devdax explores bench_check.race(N, "pud") in this process (check(): symmetry + movers, every
property, shortest counterexamples); Rumur (the Debian package, `make rumur`) explores bench/race.m,
a Murphi model of the same race with the same fused steps and the CPUs as a scalarset, through
rumur -> C -> cc -O2 -> run. For each N both must agree on the number of states: the cross-check
that the two models are the same race. Then a planted bug (spec/variants.py) in both.

    .venv/bin/python -m bench.bench_rumur [--max-cpus 16] [--bug-cpus 2,4,8] [--rumur-threads 1]
        [--no-write]

Timings: "total" is model to verdict (devdax: Ctx.of + check, the interpreter and imports already
loaded; Rumur: code generation + C compilation + the verifier's run), "explore" the exploration
alone (devdax: check()'s own clock; Rumur: the verifier's run). CPU s is process time (devdax) or
the children's user + system time (Rumur). One run each: the machine is shared, and the load
average at the start is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.bench_check import publish, race, revision
from devdax.model.checker import check
from devdax.spec.ctx import Ctx
from devdax.spec.variants import get_variant

RACE_M = Path(__file__).resolve().parent / "race.m"
SECTION = "## Race against Rumur (issue 15)"
#: planted bugs: a remove program that breaks no_entry_after_kill in this race
BUGS = ("no-synchronize", "unmap-before-synchronize")
CC = ("cc", "-std=c11", "-O2", "-pthread", "-mcx16")

#: spec/admin.py step names -> the Step enum of race.m
STEP_ENUM = {
    "clear_alive": "S_CLEAR_ALIVE",
    "synchronize_start": "S_SYNCHRONIZE_START",
    "synchronize_wait": "S_SYNCHRONIZE_WAIT",
    "unmap_mapping_range": "S_UNMAP_MAPPING_RANGE",
    "cdev_del": "S_CDEV_DEL",
    "device_del": "S_DEVICE_DEL",
    "put_device": "S_PUT_DEVICE",
    "dax_region_unregister": "S_DAX_REGION_UNREGISTER",
}


def program_block(remove: tuple[str, ...]) -> str:
    """race.m's remove program for a profile's remove steps (spec/admin.py program(): the device's
    steps, then dax_region_unregister); "!" marks the step that completes the kill."""
    steps = [*remove, "dax_region_unregister"]
    cases = "\n".join(f"  case {pc}: return {STEP_ENUM[s.rstrip('!')]};" for pc, s in enumerate(steps))
    kills = [pc for pc, s in enumerate(steps) if s.endswith("!")]
    kill = " | ".join(f"pc = {pc}" for pc in kills) or "false"
    return (
        "-- BEGIN PROGRAM (written by bench/bench_rumur.py)\n"
        "function remove_step(pc: Pc): Step;\nbegin\n  switch pc\n"
        f"{cases}\n  else return S_END;\n  end;\nend;\n\n"
        f"function remove_kill_end(pc: Pc): boolean;\nbegin\n  return {kill};\nend;\n"
        "-- END PROGRAM"
    )


def murphi_source(cpus: int, variant: str | None = None, liveness: bool = True) -> str:
    """race.m for N CPUs (a scalarset's size is a constant), with a variant's remove program, and
    without its liveness property if asked (to see what Rumur's liveness pass costs)."""
    text = RACE_M.read_text()
    if not liveness:
        text, n = re.subn(r"^liveness .*$", "", text, flags=re.M)
        if n != 1:
            raise ValueError("race.m: no liveness line")
    text, n = re.subn(r"^  NCPUS: \d+;  -- @cpus$", f"  NCPUS: {cpus};  -- @cpus", text, flags=re.M)
    if n != 1:
        raise ValueError("race.m: no '  NCPUS: <n>;  -- @cpus' line")
    if variant is not None:
        block = program_block(get_variant(variant).profile().remove)
        text, n = re.subn(r"^-- BEGIN PROGRAM.*?^-- END PROGRAM$", lambda _: block, text, flags=re.S | re.M)
        if n != 1:
            raise ValueError("race.m: no BEGIN PROGRAM ... END PROGRAM block")
    return text


@dataclass
class Run:
    """One checker's run on one workload."""

    states: int
    verdict: str  # "pass" or the failed properties
    total: float  # wall s, model to verdict
    explore: float  # wall s, exploration only
    cpu: float
    transitions: int = 0  # devdax: transitions explored; Rumur: rules fired
    trace: int = 0  # steps of the counterexample (0: none)
    trace1: int = 0  # Rumur with one thread: steps of its counterexample
    explore_safety: float = 0.0  # Rumur without the liveness property: exploration wall s


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def rumur_flags(threads: int) -> list[str]:
    """devdax has no deadlock check (a race ends in states with nothing left to do); scalarset
    schedules only relabel CPUs in traces, and cost a search over N! permutations per state."""
    return ["--deadlock-detection", "off", "--scalarset-schedules", "off", "--threads", str(threads)]


def run_rumur(source: str, threads: int = 0, workdir: Path | None = None) -> Run:
    """rumur -> C -> cc -O2 -> run, timed phase by phase."""
    if shutil.which("rumur") is None:
        raise FileNotFoundError("rumur is not installed: `make rumur`")
    tmp = workdir or Path(tempfile.mkdtemp(prefix="devdax-rumur-"))
    m, c, exe = tmp / "race.m", tmp / "race.c", tmp / "race"
    m.write_text(source)
    t0, p0 = time.perf_counter(), _children_cpu()
    subprocess.run(["rumur", *rumur_flags(threads), "--output", str(c), str(m)], check=True)
    subprocess.run([*CC, "-o", str(exe), str(c)], check=True)
    t1 = time.perf_counter()
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=False).stdout
    t2 = time.perf_counter()
    cpu = _children_cpu() - p0
    if workdir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    found = re.search(r"(\d+) states, (\d+) rules fired", out)
    if found is None:
        raise RuntimeError(f"rumur: no state count in its output:\n{out[-2000:]}")
    trace = len(re.findall(r"^Rule .*fired", out, re.M))
    return Run(int(found[1]), rumur_verdict(out), t2 - t0, t2 - t1, cpu, int(found[2]), trace)


def rumur_verdict(out: str) -> str:
    """ "No error found." is a pass; else the property the error trace is for: an invariant's name
    in quotes, or the message of a failed assert (race.m names the step property it checks)."""
    if "No error found." in out:
        return "pass"
    lines = out.split("error trace for the error:", 1)[-1].strip().splitlines()
    what = lines[0].strip() if lines else "?"
    named = re.search(r'"([^"]+)"', what)
    if named:
        return named[1]
    return what.rsplit(": ", 1)[-1] if what.startswith("Assertion failed") else what


def run_devdax(cpus: int, variant: str | None = None) -> Run:
    t0, p0 = time.perf_counter(), time.process_time()
    res = check(Ctx.of(replace(race(cpus, "pud"), variant=variant)))
    total, cpu = time.perf_counter() - t0, time.process_time() - p0
    verdict = ", ".join(f"{k} ({len(v.trace)} steps)" for k, v in sorted(res.violations.items())) or "pass"
    trace = min((len(v.trace) for v in res.violations.values()), default=0)
    return Run(res.states, verdict, total, res.seconds, cpu, res.transitions, trace)


def side_by_side(cpus: int, variant: str | None, threads: int) -> tuple[Run, Run]:
    d = run_devdax(cpus, variant)
    r = run_rumur(murphi_source(cpus, variant), threads)
    if variant is not None and threads != 1:  # the trace of a single-threaded (strict BFS) run too
        r.trace1 = run_rumur(murphi_source(cpus, variant), 1).trace
    if variant is None:
        safety = run_rumur(murphi_source(cpus, liveness=False), threads)
        assert safety.states == r.states, (safety.states, r.states)
        r.explore_safety = safety.explore
    tag = variant or "race"
    print(
        f"{tag:26} N={cpus:2}  devdax {d.states:>8,} {d.total:8.2f}s {d.verdict:20}  rumur {r.states:>8,} "
        f"{r.total:8.2f}s (explore {r.explore:7.2f}s) {r.verdict}",
        file=sys.stderr,
        flush=True,
    )
    return d, r


def render(
    rows: list[tuple[int, Run, Run]], bugs: list[tuple[str, int, Run, Run]], meta: str, threads: int
) -> str:
    # Over 50 lines on purpose: the RESULTS.md section as one template, in the order it is read.
    out = [
        SECTION,
        "",
        meta,
        "",
        "The race of the table above (v4.10, race=True, N CPUs x 2 faults, units=2, first fault pud) "
        "in devdax (`check()`: symmetry + movers, every property of spec/invariants.py and the "
        "liveness check) and in Rumur on bench/race.m, a Murphi model of the same race written by "
        "hand: the same fused steps (fault_lock+fault_check with the unlock and the FALLBACK retry "
        "one size down; fault_insert+fault_unlock; one admin step), the same grace period "
        "(synchronize_start marks the readers inside, synchronize_wait waits until none is marked), "
        "the remove program's steps in the same order, the same State fields, the CPUs as a "
        "scalarset, and the properties that can fail here (16 state invariants, the step "
        "properties as assertions in the steps, teardown_finishes as a Rumur `liveness`). "
        f"Rumur: `rumur {' '.join(rumur_flags(threads))}` ({THREADS.get(threads, 'threads as given')}), "
        f"`{' '.join(CC)}`. Total = model to verdict (Rumur: code generation and C "
        "compilation included; devdax: in this process, interpreter and imports already loaded); "
        "explore = the exploration alone. Ratio = devdax / Rumur: above 1, devdax is slower.",
        "",
        "| N | states devdax | states Rumur | equal | transitions devdax / rules fired Rumur "
        "| devdax total s | devdax CPU s | devdax states/s | Rumur total s | Rumur explore s "
        "| Rumur CPU s | Rumur states/s (explore) | ratio total | ratio explore "
        "| Rumur explore s without liveness | verdict devdax / Rumur | devdax slower than Rumur? |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for n, d, r in rows:
        out.append(
            f"| {n} | {d.states:,} | {r.states:,} | {'yes' if d.states == r.states else 'NO'} "
            f"| {d.transitions:,} / {r.transitions:,} | {d.total:.2f} | {d.cpu:.2f} "
            f"| {rate(d.states, d.explore)} | {r.total:.2f} "
            f"| {r.explore:.2f} | {r.cpu:.2f} | {rate(r.states, r.explore)} | {ratio(d.total, r.total)} "
            f"| {ratio(d.explore, r.explore)} | {r.explore_safety:.2f} | {d.verdict} / {r.verdict} "
            f"| {'yes' if d.total > r.total else 'no'} |"
        )
    out += (
        [""]
        + NOTES
        + [
            "",
            "### Planted bug: the same race with a wrong remove program (spec/variants.py)",
            "",
            "Trace = steps from the initial state to the error (fused steps, so the two count alike). "
            "devdax reports every broken property, each with a shortest trace (breadth-first); the "
            "verdict column gives the length of each. Rumur stops at its first error and prints the "
            "trace from the start state, one `Rule ... fired.` per step with the variables that changed; its "
            "exploration is breadth-first too, but with several threads a first error need not be at "
            "the least depth, so the last but one column is the same run with `--threads 1`. devdax "
            "goes on after a violation to judge every property, so here it explores more states "
            "than Rumur, which stops at the first error.",
            "",
            "| variant | N | devdax states | devdax verdict | devdax trace | devdax total s | Rumur states "
            "| Rumur verdict | Rumur trace | Rumur trace, 1 thread | Rumur total s |",
            "|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|",
        ]
    )
    for v, n, d, r in bugs:
        out.append(
            f"| {v} | {n} | {d.states:,} | {d.verdict} | {d.trace} | {d.total:.2f} | {r.states:,} "
            f"| {r.verdict} | {r.trace} | {r.trace1 or r.trace} | {r.total:.2f} |"
        )
    out += [""] + summary(rows) + [""]
    return "\n".join(out)


THREADS = {
    0: "0 threads: Rumur's default, every hardware thread",
    1: "one thread, like devdax: on this 2-core machine shared with other jobs Rumur's default of "
    "two threads was slower (ad1d841, the same table with two threads: N = 8 explored in 3.5 s, "
    "N = 16 in 308 s wall, 169 s CPU)",
}

NOTES = [
    "Why the counts are equal: both store one state per orbit of the CPU permutations after the same "
    "atomic steps. devdax sorts the CPU records (spec/symmetry.py); Rumur's heuristic symmetry "
    "reduction sorts the one array its scalarset indexes, and since no other variable holds a CPU "
    "identity, that sort is an exact canonical form too (Rumur's exhaustive mode, which tries "
    "every permutation, gives the same counts at N = 2 and 3). State variables that are "
    "functions of the admin's pc (the device's counts and flags "
    "during removal) add no states in either. The transitions differ: devdax moves only the first "
    "of several identical CPUs (spec/system.py movers) and counts a fused step once, "
    "Rumur fires every CPU's rule, whose successors are then found symmetric.",
    "",
    "Rumur is run with `--scalarset-schedules off`: with its default (on) the verifier numbers the "
    "permutation that canonicalised each state by enumerating permutations (Heap's algorithm, up "
    "to N! per state), only to print CPU names consistently in traces; at N = 8 on one thread that "
    "took 9.4 s against 1.0 s off, and it is out of reach at N = 16. The states and verdicts are "
    "the same either way.",
]


def rate(states: int, seconds: float) -> str:
    return f"{states / seconds:,.0f}" if seconds > 0 else "-"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def summary(rows: list[tuple[int, Run, Run]]) -> list[str]:
    """The issue's target, read off the rows: no slower in wall time at every N, state counts equal."""
    slower = [n for n, d, r in rows if d.total > r.total]
    slower_explore = [n for n, d, r in rows if d.explore > r.explore]
    unequal = [n for n, d, r in rows if d.states != r.states]
    ns = f"{rows[0][0]}..{rows[-1][0]}" if rows else "-"
    n, _, last = rows[-1]
    live = (
        f"- Rumur's liveness pass (teardown_finishes, AG EF) at N = {n}: exploration {last.explore:.1f} s "
        f"with it, {last.explore_safety:.1f} s without it"
    )
    return [
        live,
        f"- state counts equal at every N ({ns}): {'yes' if not unequal else f'NO, at N = {unequal}'}",
        "- devdax no slower than Rumur in wall time, model to verdict, at every N: "
        + ("met" if not slower else f"NOT met: devdax is slower at N = {', '.join(map(str, slower))}"),
        "- the same, exploration alone: "
        + (
            "devdax is never slower"
            if not slower_explore
            else f"devdax is slower at N = {', '.join(map(str, slower_explore))}"
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-cpus", type=int, default=16)
    ap.add_argument("--min-cpus", type=int, default=2)
    ap.add_argument("--bug-cpus", default="2,4,8", help="N of the planted-bug runs, comma-separated")
    ap.add_argument("--rumur-threads", type=int, default=1, help="0: Rumur's default (every hardware thread)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    load = os.getloadavg()[0]
    meta = (
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC at {revision()} on "
        f"{platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"{rumur_version()}, load average {load:.1f} at start (shared machine); one run each. "
        "`.venv/bin/python -m bench.bench_rumur` regenerates this section."
    )
    rows = [(n, *side_by_side(n, None, a.rumur_threads)) for n in range(a.min_cpus, a.max_cpus + 1)]
    bugs = [
        (v, n, *side_by_side(n, v, a.rumur_threads))
        for v in BUGS
        for n in (int(x) for x in a.bug_cpus.split(","))
    ]
    text = render(rows, bugs, meta, a.rumur_threads)
    publish(text, SECTION, not a.no_write)
    return 0


def rumur_version() -> str:
    r = subprocess.run(["rumur", "--version"], capture_output=True, text=True, check=False)
    return "Rumur " + (r.stdout.strip().split()[-1] if r.stdout.strip() else "?")


if __name__ == "__main__":
    raise SystemExit(main())
