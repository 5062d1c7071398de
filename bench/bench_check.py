"""Measure `devdax check` in-process and write the table into bench/RESULTS.md ("## devdax check").

Workloads (issue 2, section 5):
* each profile's default configuration (spec/variants.py PROFILE_CONFIGS), exhaustive;
* the fault-vs-teardown race, 2..8 CPUs each taking 2 faults, first fault pud and pmd, with both
  reductions (symmetry over CPUs and movers), which is what `devdax check` runs;
* the same race with the reductions switched off one at a time and both at once, for small CPU
  counts, as the baseline the ratios are taken against. A baseline run that would not finish in
  reasonable time stops at --cap states and is reported as a lower bound.

Wall time is the median of --repeat runs in this process (runs above --once-above seconds are made
once: the point of those rows is the order of magnitude). The machine is shared; the table records
nproc and the load average when the run started.

    .venv/bin/python bench/bench_check.py [--repeat 3] [--max-cpus 8] [--baseline-cpus 4] [--no-write]

With --speed it writes "## Checker speed (issue 15)" instead: the current checker against a frozen
copy of the checker at BASE_COMMIT (spec/ and model/ taken from git into a temporary package,
load_baseline), run alternately in this one process on the same workloads, with the ratio of their
medians; each pair must agree on states, transitions, depth and verdicts.

    .venv/bin/python bench/bench_check.py --speed [--repeat 3] [--race-cpus 4,8,12,16] [--no-write]
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import importlib
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from devdax import compiled
from devdax.model.checker import check
from devdax.model.reduction import in_between, reduced_successors
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import Transition, init, successors
from devdax.spec.variants import PROFILE_CONFIGS, VARIANTS, variant_config

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## devdax check"


@dataclass
class Row:
    workload: str
    mode: str
    states: int
    transitions: int
    seconds: float
    cpu: float
    complete: bool
    verdict: str

    @property
    def rate(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


def race(cpus: int, first_fault: str) -> Config:
    return Config(
        profile="v4.10", race=True, cpus=cpus, faults=2, units=2, files=1, vmas=1, first_fault=first_fault
    )


def mode_name(symmetry: bool, reduce: bool) -> str:
    return {
        (True, True): "sym+movers",
        (True, False): "sym",
        (False, True): "movers",
        (False, False): "none",
    }[symmetry, reduce]


def measure(
    workload: str,
    cfg: Config,
    symmetry: bool,
    reduce: bool,
    repeat: int,
    once_above: float,
    cap: int | None = None,
) -> Row:
    c = Ctx.of(cfg)
    times: list[float] = []
    cpus: list[float] = []
    res = None
    for _ in range(repeat):
        t0, p0 = time.perf_counter(), time.process_time()
        res = check(c, symmetry=symmetry, reduce=reduce, max_states=cap)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - p0)
        if times[-1] > once_above:
            break
    assert res is not None
    verdict = ", ".join(sorted(res.violations)) or "pass"
    row = Row(
        workload,
        mode_name(symmetry, reduce),
        res.states,
        res.transitions,
        statistics.median(times),
        statistics.median(cpus),
        res.complete,
        verdict,
    )
    print(
        f"{workload:28} {row.mode:10} {row.states:>9} {row.transitions:>10} {row.seconds:8.2f}s "
        f"{row.rate:9.0f}/s {'' if row.complete else '(capped) '}{verdict}",
        file=sys.stderr,
        flush=True,
    )
    return row


def explore(c: Ctx, nxt: Callable[[Ctx, State], list[Transition]], canon: Callable[[State], State]) -> int:
    s0 = canon(init(c))
    seen = {s0}
    todo = [s0]
    while todo:
        s = todo.pop()
        for t in nxt(c, s):
            ns = canon(t.state)
            if ns not in seen:
                seen.add(ns)
                todo.append(ns)
    return len(seen)


CROSSCHECK: dict[str, Config] = {
    "race 2 CPUs x 2 faults, pud": race(2, "pud"),
    "race 3 CPUs x 1 fault, pmd": Config(
        profile="v4.10", race=True, cpus=3, faults=1, units=2, files=1, vmas=1, first_fault="pmd"
    ),
    "v4.10 files=2 vmas=2 cpus=2": Config(files=2, vmas=2, cpus=2, generations=1),
    "modern binds=1": Config(profile="modern", binds=1),
    **{
        f"variant {n}": variant_config(VARIANTS[n])
        for n in ("no-synchronize", "synchronize-before-clear", "unmap-before-synchronize", "M20", "M22")
    },
}


def crosscheck() -> list[str]:
    """The state counts tests/model/test_reduction.py compares (it asserts the sets, not just sizes)."""
    out = [
        "",
        "### Reductions cross-checked against raw enumeration (tests/model/test_reduction.py)",
        "",
        "Raw: every reachable state; the last column is the raw set projected through canonical() "
        "without the states in_between() names, which the test asserts equal to the sym+movers set.",
        "",
        "| configuration | raw | sym | movers | sym+movers | projected raw | verdict (all 4 modes) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, cfg in CROSSCHECK.items():
        c = Ctx.of(cfg)
        every: set[State] = set()
        s0 = init(c)
        every.add(s0)
        todo = [s0]
        while todo:
            s = todo.pop()
            for t in successors(c, s):
                if t.state not in every:
                    every.add(t.state)
                    todo.append(t.state)
        proj = len({canonical(s) for s in every if not in_between(s)})
        sym = explore(c, successors, canonical)
        mv = explore(c, reduced_successors, lambda s: s)
        both = explore(c, reduced_successors, canonical)
        verdicts = {
            ", ".join(sorted(check(c, symmetry=y, reduce=r).violations)) or "pass"
            for y in (False, True)
            for r in (False, True)
        }
        verdict = verdicts.pop() if len(verdicts) == 1 else "DISAGREE: " + " / ".join(sorted(verdicts))
        out.append(f"| {name} | {len(every):,} | {sym:,} | {mv:,} | {both:,} | {proj:,} | {verdict} |")
        print(out[-1], file=sys.stderr, flush=True)
    return out


def fmt_states(r: Row) -> str:
    return f"{r.states:,}" if r.complete else f">= {r.states:,} (capped)"


def revision() -> str:
    """The tree measured: commit, and whether the working copy differed from it."""
    r = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=RESULTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip() or "unknown"


def render(profiles: list[Row], races: list[Row], base: list[Row], meta: str, cross: list[str]) -> str:
    # Over 50 lines on purpose: the RESULTS.md section as one template, in the order it is read.
    out = [
        SECTION,
        "",
        meta,
        "",
        "### Default configuration of each profile (exhaustive, symmetry + movers)",
        "",
        "CPU s is the process time of the same runs: on a loaded shared machine it is the better "
        "measure of the work; wall s is what a user waits.",
        "",
        "| profile | states | transitions | wall s | CPU s | states/s | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in profiles:
        out.append(
            f"| {r.workload} | {fmt_states(r)} | {r.transitions:,} | {r.seconds:.2f} | {r.cpu:.2f} "
            f"| {r.rate:,.0f} | {r.verdict} |"
        )
    out += [
        "",
        "### Fault-vs-teardown race: N CPUs, 2 faults each (v4.10, race=True, units=2)",
        "",
        "| CPUs | first fault | states | transitions | wall s | CPU s | states/s | verdict |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in races:
        n, ff = r.workload.split("/")
        out.append(
            f"| {n} | {ff} | {r.states:,} | {r.transitions:,} | {r.seconds:.2f} | {r.cpu:.2f} "
            f"| {r.rate:,.0f} | {r.verdict} |"
        )
    out += [
        "",
        "### Baseline: the same race (first fault pud) with reductions off",
        "",
        "Ratio = states (or seconds) of this mode / states (or seconds) with symmetry + movers. "
        '"movers" alone is already partly symmetric: Next lets only the first of several identical '
        'CPUs move (spec/system.py movers), which every mode shares; "sym" additionally '
        "sorts CPUs (and renames files and vmas) in every stored state.",
        "",
        "| CPUs | mode | states | transitions | wall s | states/s | states ratio | time ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    best = {r.workload.split("/")[0]: r for r in races if r.workload.endswith("/pud")}
    for r in base:
        n = r.workload.split("/")[0]
        ref = best[n]
        sr = f"{r.states / ref.states:,.1f}x" + ("+" if not r.complete else "")
        tr = f"{r.seconds / ref.seconds:,.1f}x" if ref.seconds > 0 else "-"
        out.append(
            f"| {n} | {r.mode} | {fmt_states(r)} | {r.transitions:,} | {r.seconds:.2f} "
            f"| {r.rate:,.0f} | {sr} | {tr} |"
        )
    out += [
        "",
        "For scale (issue 2): an explicit-state C checker (SPIN 6.5, -O2, no symmetry) on an equivalent "
        "model of this race stores 7.2 M states for 4 CPUs in 4.8 s and cannot finish 5 CPUs in 16 GB. "
        "The targets are the default configuration exhaustive in under 30 s on 2 cores and 8 CPUs "
        "exhaustive in under 10 s.",
        "",
    ]
    out += targets(profiles, races)
    out += cross
    out.append("")
    return "\n".join(out)


def targets(profiles: list[Row], races: list[Row]) -> list[str]:
    lines = []
    slowest = max(profiles, key=lambda r: r.seconds)
    ok = slowest.seconds < 30 and all(r.complete for r in profiles)
    lines.append(
        f"- default configurations exhaustive in < 30 s: {'met' if ok else 'NOT met'} "
        f"(slowest: {slowest.workload}, {slowest.seconds:.1f} s wall, {slowest.cpu:.1f} s CPU)"
    )
    eight = [r for r in races if r.workload.startswith("8/")]
    if eight:
        worst = max(eight, key=lambda r: r.seconds)
        lines.append(
            f"- 8 CPUs exhaustive in < 10 s: {'met' if worst.seconds < 10 else 'NOT met'} "
            f"({worst.seconds:.1f} s wall, {worst.cpu:.1f} s CPU, {worst.states:,} states)"
        )
    return lines


def publish(text: str, section: str, write: bool) -> None:
    """Print a RESULTS.md section, and replace it there when ``write`` (a benchmark's --no-write
    only prints)."""
    print(text)
    if write:
        write_section(text, section)


def write_section(text: str, section: str = SECTION) -> None:
    """Replace this section of RESULTS.md (up to the next "## " heading), keeping the others."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = text.rstrip("\n") + "\n\n"
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new)


# --------------------------------------------------------------- issue 15: checker speed ----

BASE_COMMIT = "a395383"
SPEED_SECTION = "## Checker speed (issue 15)"


def load_baseline(commit: str = BASE_COMMIT) -> ModuleType:
    """The checker as it was at commit, importable beside today's: spec/ and model/ from
    `git archive`, with their `devdax.spec` / `devdax.model` imports renamed to a private package.
    Nothing else is imported from the past tree, so both checkers share only the standard library."""
    name = f"devdax_base_{commit}"
    if name in sys.modules:
        return sys.modules[name]
    blob = subprocess.run(
        ["git", "archive", "--format=tar", commit, "spec", "model"],
        cwd=RESULTS.parent.parent,
        capture_output=True,
        check=True,
    ).stdout
    root = Path(tempfile.mkdtemp(prefix="devdax-base-"))
    pkg = root / name
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(pkg, filter="data")
    (pkg / "__init__.py").write_text('"""devdax spec and model at a past commit (bench only)."""\n')
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        f.write_text(text.replace("devdax.spec", f"{name}.spec").replace("devdax.model", f"{name}.model"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    sys.path.insert(0, str(root))
    return importlib.import_module(name)


@dataclass
class Side:
    """One checker (today's or the baseline's): its check() and a factory of its own configs."""

    label: str
    check: Callable[..., Any]
    ctx: Callable[[str], Any]


def sides(base: ModuleType) -> tuple[Side, Side]:
    bmods = {m: importlib.import_module(f"{base.__name__}.{m}") for m in ("model.checker", "spec.ctx")}
    bvar = importlib.import_module(f"{base.__name__}.spec.variants")
    bcfg = importlib.import_module(f"{base.__name__}.spec.config")

    def make(cfg_mod: Any, variants: Any, ctx_cls: Any) -> Callable[[str], Any]:
        def ctx(workload: str) -> Any:
            kind, _, arg = workload.partition(":")
            if kind == "race":
                cfg = cfg_mod.Config(
                    profile="v4.10", race=True, cpus=int(arg), faults=2, units=2, files=1, vmas=1
                )
            else:
                cfg = replace(variants.PROFILE_CONFIGS["v4.10"], devices=int(arg or 1))
            return ctx_cls.of(cfg)

        return ctx

    import devdax.spec.config as ncfg
    import devdax.spec.variants as nvar

    new = Side("now", check, make(ncfg, nvar, Ctx))
    old = Side(BASE_COMMIT, bmods["model.checker"].check, make(bcfg, bvar, bmods["spec.ctx"].Ctx))
    return old, new


@dataclass
class Pair:
    workload: str
    states: int
    transitions: int
    complete: bool
    verdict: str
    wall: tuple[float, float]  # medians: baseline, now
    cpu: tuple[float, float]
    compiled: tuple[float, float] = (0.0, 0.0)  # medians of `devdax check --compiled`: wall, CPU

    def ratio(self, which: tuple[float, float]) -> float:
        return which[0] / which[1] if which[1] > 0 else 0.0


def summary(res: Any) -> tuple[int, int, int, bool, str]:
    return res.states, res.transitions, res.depth, res.complete, ", ".join(sorted(res.violations)) or "pass"


def race_pair(old: Side, new: Side, workload: str, repeat: int, cap: int | None, once_above: float) -> Pair:
    """The baseline, today's checker and today's compiled form on one workload, in turn within
    each round (old, new, compiled, old, new, compiled...) so that a change in the machine's
    load falls on all three: on this shared machine the same run varies by 20% over an hour,
    and a compiled ratio taken against baseline runs made minutes earlier carried that drift.
    The medians of each."""
    walls: dict[str, list[float]] = {old.label: [], new.label: []}
    cpus: dict[str, list[float]] = {old.label: [], new.label: []}
    seen: dict[str, tuple[int, int, int, bool, str]] = {}
    cw: list[float] = []
    cc: list[float] = []
    for _ in range(repeat):
        for side in (old, new):
            c = side.ctx(workload)
            t0, p0 = time.perf_counter(), time.process_time()
            res = side.check(c, max_states=cap)
            walls[side.label].append(time.perf_counter() - t0)
            cpus[side.label].append(time.process_time() - p0)
            seen[side.label] = summary(res)
        if seen[old.label] != seen[new.label]:
            raise SystemExit(f"{workload}: baseline {seen[old.label]} != now {seen[new.label]}")
        t0 = time.perf_counter()
        run = compiled.run(new.ctx(workload), max_states=cap)
        cw.append(time.perf_counter() - t0)
        cc.append(run.cpu)
        if summary(run.result) != seen[new.label]:
            raise SystemExit(f"{workload}: compiled {summary(run.result)} != now {seen[new.label]}")
        if walls[old.label][-1] > once_above:
            break
    st, tr, _, complete, verdict = seen[new.label]
    pair = Pair(
        workload,
        st,
        tr,
        complete,
        verdict,
        (statistics.median(walls[old.label]), statistics.median(walls[new.label])),
        (statistics.median(cpus[old.label]), statistics.median(cpus[new.label])),
        (statistics.median(cw), statistics.median(cc)),
    )
    print(
        f"{workload:14} {st:>9,} states  wall {pair.wall[0]:7.2f} -> {pair.wall[1]:7.2f} s "
        f"({pair.ratio(pair.wall):.2f}x)  CPU {pair.cpu[0]:7.2f} -> {pair.cpu[1]:7.2f} s "
        f"({pair.ratio(pair.cpu):.2f}x)  compiled CPU {pair.compiled[1]:7.2f} s  {verdict}",
        file=sys.stderr,
        flush=True,
    )
    return pair


def memory_per_state(side: Side, workload: str, cap: int | None) -> tuple[int, float]:
    """Peak traced bytes of one run divided by its states (tracemalloc: slow, so a run of its own)."""
    c = side.ctx(workload)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    res = side.check(c, max_states=cap)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return res.states, (peak - before) / max(res.states, 1)


def speed_workloads(a: argparse.Namespace) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = [("default:1", None), ("default:2", a.devices2_cap)]
    out += [(f"race:{n}", None) for n in (int(x) for x in a.race_cpus.split(","))]
    if a.only:
        keep = a.only.split(",")
        out = [(w, cap) for w, cap in out if w in keep]
    return out


def render_speed(pairs: list[Pair], mem: list[tuple[str, int, float, float]], meta: str) -> str:
    # Over 50 lines on purpose: the RESULTS.md section as one template, in the order it is read.
    out = [
        SPEED_SECTION,
        "",
        meta,
        "",
        f"Baseline: the checker at {BASE_COMMIT} (before issue 15), its spec/ and model/ taken with "
        "`git archive` into a temporary package whose `devdax.spec`/`devdax.model` imports are "
        "renamed (load_baseline), so that both run in this one process on the same machine load. "
        "A kept reference implementation would drift from the code it measures; the frozen copy "
        "is the code users ran. Ratio = baseline median / current median; the baseline, the "
        "current checker and the compiled one are run in turn in each round; each pair agreed "
        "on states, transitions, depth and verdicts. CPU seconds "
        "(process time) are the better measure on this shared machine.",
        "",
        "What changed (model/checker.py, model/memo.py, spec/symmetry.py, spec/ctx.py; "
        "check(fast=False) keeps the plain forms and tests/model/test_fast_paths.py compares them "
        "state by state): a successor equal to a stored state is a duplicate without "
        "canonicalisation; renamings memoised per (files, vmas, entries) and skipped when a "
        "successor shares them with its parent; step properties only on the actions they judge; "
        "Ctx caches its hash; parent link = (action, args, outcome), not the Transition with its "
        "un-canonical state; stored records and tuples interned; the records' _replace generated "
        "per class with each field a keyword (spec/state.py; the stock one pops a dict through "
        "map and _make). From 3 CPUs on (the race rows "
        "from 4 CPUs) the memo path: each CPU's fault steps run once per (shared part, CPU record) "
        "on a probe whose other CPUs raise when used, the invariants that read no CPU once per "
        "shared part, states keyed by (shared part number, CPU record numbers), a CPU's step "
        "re-sorted by one insertion; and synchronize_start's skip is told without marking every "
        "CPU (spec.admin.SKIPS). The v4.10 default has 2 CPUs and 3.8 states per shared part: "
        "the memo costs more than it saves there, and it keeps the whole-state path.",
        "",
        "Compiled: the same checker with spec/ and the explorer compiled by mypyc "
        "(`devdax check --compiled`, devdax/compiled.py), with the records' _replace, "
        "construction and hash (kept once computed) in C (devdax/native/record.c), the liveness "
        "walk in C (devdax/native/liveness.c) and the hot module constants Final, in a child "
        "process whose own CPU time is counted; it must agree on states, transitions, depth and "
        "verdicts too.",
        "",
        "| workload | states | transitions | wall s base | wall s now | wall ratio | CPU s base "
        "| CPU s now | CPU ratio | wall s compiled | CPU s compiled | CPU ratio compiled "
        "| states/s compiled (CPU) | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    names = {"default:1": "v4.10 default", "default:2": "v4.10 --devices 2"}
    for p in pairs:
        name = names.get(p.workload, p.workload.replace("race:", "race, CPUs = "))
        st = f"{p.states:,}" + ("" if p.complete else " (capped)")
        cw, cc = p.compiled
        rate = p.states / cc if cc > 0 else 0.0
        out.append(
            f"| {name} | {st} | {p.transitions:,} | {p.wall[0]:.2f} | {p.wall[1]:.2f} "
            f"| {p.ratio(p.wall):.2f}x | {p.cpu[0]:.2f} | {p.cpu[1]:.2f} | {p.ratio(p.cpu):.2f}x "
            f"| {cw:.2f} | {cc:.2f} | {p.cpu[0] / cc if cc > 0 else 0.0:.2f}x | {rate:,.0f} | {p.verdict} |"
        )
    out += [
        "",
        "Memory: peak bytes traced by tracemalloc during one run, per stored state.",
        "",
        "| workload | states | bytes/state base | bytes/state now | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for w, n, b, c in mem:
        out.append(f"| {names.get(w, w)} | {n:,} | {b:,.0f} | {c:,.0f} | {b / c:.2f}x |")
    out += ["", "Issue 15 targets, from the rows above:", ""] + speed_targets(pairs, mem) + [""]
    return "\n".join(out)


def speed_targets(pairs: list[Pair], mem: list[tuple[str, int, float, float]]) -> list[str]:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = []
    default = next((p for p in pairs if p.workload == "default:1"), None)
    if default is not None:
        r = default.ratio(default.cpu)
        rc = default.cpu[0] / default.compiled[1]
        out.append(
            f"- 10x states/s on the v4.10 default: {met(max(r, rc) >= 10)} ({r:.2f}x in CPU time, "
            f"{rc:.2f}x compiled)"
        )
    race16 = next((p for p in pairs if p.workload == "race:16"), None)
    if race16 is not None:
        best = min(race16.wall[1], race16.compiled[0])
        out.append(
            f"- the race at 16 CPUs in under 5 s: {met(best < 5)} ({race16.wall[1]:.1f} s wall, "
            f"{race16.cpu[1]:.1f} s CPU; compiled {race16.compiled[0]:.1f} s wall, "
            f"{race16.compiled[1]:.1f} s CPU)"
        )
    worst = min((b / c for _, _, b, c in mem), default=0.0)
    out.append(f"- at least 2x less memory per state: {met(worst >= 2)} (worst ratio {worst:.2f}x)")
    return out


def run_speed(a: argparse.Namespace, meta: str) -> str:
    if compiled.stale() is not None:
        compiled.build()
    old, new = sides(load_baseline())
    pairs = [race_pair(old, new, w, a.repeat, cap, a.once_above) for w, cap in speed_workloads(a)]
    mem = []
    for w, cap in (("default:1", a.mem_cap), ("race:8", None)):
        n, b = memory_per_state(old, w, cap)
        _, c = memory_per_state(new, w, cap)
        mem.append((w, n, b, c))
        print(f"memory {w}: {b:,.0f} -> {c:,.0f} bytes/state", file=sys.stderr, flush=True)
    return render_speed(pairs, mem, meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-cpus", type=int, default=8)
    ap.add_argument("--baseline-cpus", type=int, default=4)
    ap.add_argument("--cap", type=int, default=150_000, help="state cap of a baseline run")
    ap.add_argument("--once-above", type=float, default=20.0, help="run once if a run takes longer")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-crosscheck", action="store_true", help="skip the reduction cross-check table")
    ap.add_argument("--speed", action="store_true", help="issue 15: today's checker against BASE_COMMIT")
    ap.add_argument("--only", default="", help="--speed: these workloads alone (default:1,race:8...)")
    ap.add_argument("--race-cpus", default="4,8,12,16", help="--speed: race sizes, comma-separated")
    ap.add_argument("--devices2-cap", type=int, default=40_000, help="--speed: state cap of --devices 2")
    ap.add_argument("--mem-cap", type=int, default=20_000, help="--speed: state cap of the memory run")
    a = ap.parse_args(argv)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    meta = (
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC at {revision()} on "
        f"{platform.machine()}, "
        f"nproc {os.cpu_count()}, Python {platform.python_version()}, load average {load:.1f} at "
        f"start (shared machine); wall time is the median of {a.repeat} runs in one process "
        f"(single run above {a.once_above:.0f} s). `.venv/bin/python bench/bench_check.py` regenerates "
        "this section."
    )
    if a.speed:
        text = run_speed(a, meta.replace("bench_check.py`", "bench_check.py --speed`"))
        print(text)
        if not a.no_write:
            write_section(text, SPEED_SECTION)
        return 0
    profiles = [measure(p, cfg, True, True, a.repeat, a.once_above) for p, cfg in PROFILE_CONFIGS.items()]
    races = [
        measure(f"{n}/{ff}", race(n, ff), True, True, a.repeat, a.once_above)
        for n in range(2, a.max_cpus + 1)
        for ff in ("pud", "pmd")
    ]
    base = [
        measure(f"{n}/pud", race(n, "pud"), y, r, a.repeat, a.once_above, a.cap)
        for n in range(2, a.baseline_cpus + 1)
        for y, r in ((True, False), (False, True), (False, False))
    ]
    cross = crosscheck() if not a.no_crosscheck else []
    text = render(profiles, races, base, meta, cross)
    print(text)
    if not a.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
