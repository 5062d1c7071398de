"""`devdax all`: the main job of the README, as a list of jobs each with its expectation.

One table answers "does the whole reference semantics still say what it claims?":
* each profile in its default configuration reports exactly its documented findings;
* the fault-vs-teardown race (v4.10, 2..8 CPUs taking 2 faults each over a 2-unit device) passes;
* fork (v4.10 default configuration with fork and MADV_DONTFORK, one generation) passes;
* every variant is caught: at least one of the properties it claims to break is violated;
* `devdax prove` (the Z3 obligations of v4.10 and modern) exits 0: every obligation proved or a
  documented finding of the profile (status FINDING), and every documented finding still reproduced.

A job is data plus a function returning a Row, so tests can run a subset and the table code never
knows what a job does.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import IO, Any

from devdax.model.checker import Progress, check
from devdax.proofs import runner
from devdax.proofs.obligations import obligations_for
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import DEFAULT_PROFILE, PROFILES
from devdax.spec.variants import VARIANTS, default_config, finding_configs, variant_config

RACE_CPUS = range(2, 9)


@dataclass(frozen=True)
class Row:
    job: str
    expectation: str
    result: str
    ok: bool
    states: int | None
    seconds: float


@dataclass(frozen=True)
class Job:
    name: str
    expectation: str
    #: given a progress callback (the checker's), returns the result text, met?, states
    run: Callable[[Progress | None], tuple[str, bool, int | None]]
    #: one of the long jobs (10-25 s, the proofs), which processes start first: left to the end
    #: they would run alone while the other processes sit idle (60 s against 66 s on 2 CPUs)
    slow: bool = False


def _findings(n: int) -> str:
    return f"{n} documented finding{'' if n == 1 else 's'}"


def _mismatch(extra: list[str], missing: list[str]) -> str:
    """What a check job saw against the profile's documented findings, in one line."""
    parts = [f"undocumented: {', '.join(extra)}"] if extra else []
    parts += [f"not reproduced: {', '.join(missing)}"] if missing else []
    return "; ".join(parts)


def _profile_job(p: str) -> Job:
    findings = set(PROFILES[p].findings) - set(finding_configs(p))

    def run(progress: Progress | None = None) -> tuple[str, bool, int | None]:
        res = check(Ctx.of(default_config(p)), progress=progress)
        got = set(res.violations)
        extra, missing = sorted(got - findings), sorted(findings - got)
        if not extra and not missing and res.complete:
            text = _findings(len(got)) if got else "all invariants hold"
            return text, True, res.states
        return _mismatch(extra, missing) or "incomplete", False, res.states

    expect = f"exactly {_findings(len(findings))}" if findings else "pass"
    return Job(f"check {p}", expect, run)


def _finding_job(p: str, name: str, cfg: Config) -> Job:
    """A documented finding out of reach of the profile's default bounds, in its own configuration:
    it must be reproduced, and nothing undocumented may show up beside it."""
    findings = set(PROFILES[p].findings)

    def run(progress: Progress | None = None) -> tuple[str, bool, int | None]:
        res = check(Ctx.of(cfg), progress=progress)
        got = set(res.violations)
        extra = sorted(got - findings)
        if name in got and not extra:
            return f"reproduced ({len(res.violations[name].trace)} steps)", True, res.states
        return _mismatch(extra, [] if name in got else [name]), False, res.states

    return Job(f"check {p} finding {name}", "reproduced", run)


def _pass_job(name: str, cfg: Config) -> Job:
    def run(progress: Progress | None = None) -> tuple[str, bool, int | None]:
        res = check(Ctx.of(cfg), progress=progress)
        if res.violations:
            return "violated: " + ", ".join(sorted(res.violations)), False, res.states
        return "all invariants hold", res.complete, res.states

    return Job(name, "pass", run)


def race_config(cpus: int) -> Config:
    return Config(profile="v4.10", race=True, cpus=cpus, faults=2, units=2, files=1, vmas=1)


def fork_config() -> Config:
    """The v4.10 default with fork and MADV_DONTFORK. The unaligned-offset mmap shape is left out:
    its finding (F3) belongs to the profile job and its own variant, not to fork semantics."""
    base = default_config("v4.10")
    mmaps = tuple(m for m in base.mmaps if m.name != "fixed-unaligned-offset")
    return replace(base, fork=True, generations=1, mmaps=mmaps)


def _variant_job(name: str) -> Job:
    v = VARIANTS[name]

    def run(progress: Progress | None = None) -> tuple[str, bool, int | None]:
        res = check(Ctx.of(variant_config(v)), progress=progress)
        caught = [b for b in v.breaks if b in res.violations]
        if caught:
            steps = min(len(res.violations[b].trace) for b in caught)
            return f"caught: {', '.join(caught)} ({steps} steps)", True, res.states
        return "NOT CAUGHT", False, res.states

    return Job(f"variant {name}", "caught: " + " or ".join(v.breaks), run)


def _prove_job(p: str) -> Job:
    def run(progress: Progress | None = None) -> tuple[str, bool, int | None]:
        results = runner.run(obligations_for(p, None))
        stale = runner.stale_findings(results)
        counts = runner.count(results)
        text = f"{counts[runner.Status.PROVED]}/{len(results)} proved"
        if counts[runner.Status.FINDING]:
            text += f", {_findings(counts[runner.Status.FINDING])}"
        bad = [
            f"{r.obligation.name} {r.verdict.status.value}"
            for r in results
            if r.verdict.status in (runner.Status.VIOLATED, runner.Status.UNKNOWN)
        ]
        bad += [f"finding {k} no longer reproduced" for k in stale]
        if bad:
            text += "; " + ", ".join(bad)
        return text, runner.exit_status(results, stale) == runner.EXIT_PROVED, None

    return Job(f"prove {p}", "proved (or a documented finding)", run, slow=True)


def jobs(*, prove: bool = True) -> list[Job]:
    out = [_profile_job(p) for p in PROFILES]
    out += [_finding_job(p, n, cfg) for p in PROFILES for n, cfg in finding_configs(p).items()]
    out += [_pass_job(f"race v4.10, {n} cpus x 2 faults", race_config(n)) for n in RACE_CPUS]
    out.append(_pass_job("fork v4.10", fork_config()))
    out += [_variant_job(v) for v in VARIANTS]
    if prove:
        # issue 3: every obligation proved for the default profile and for modern; issue 12: and for
        # each kernel profile
        out.extend(_prove_job(p) for p in (DEFAULT_PROFILE, "modern", "linux-6.1", "linux-6.12", "linux-7.2"))
    return out


def run_jobs(
    todo: list[Job],
    on_start: Callable[[str], None] | None = None,
    progress: Callable[[str], Progress] | None = None,
    on_done: Callable[[int, int, Row], None] | None = None,
    processes: int = 1,
) -> list[Row]:
    """Run every job; on_start(name) before each, progress(name) gives the callback the checker
    reports states/frontier/depth to while that job explores, and on_done(k, n, row) sees each row
    as soon as its job finishes (`devdax all` streams them). With processes > 1 the jobs run that
    many at a time, each in a forked process of its own (no progress callback then); the rows
    come back in todo's order all the same."""
    if processes > 1 and len(todo) > 1:
        return _run_forked(todo, processes, on_start, on_done)
    rows: list[Row] = []
    for j in todo:
        if on_start is not None:
            on_start(j.name)
        rows.append(_run(j, progress(j.name) if progress is not None else None))
        if on_done is not None:
            on_done(len(rows), len(todo), rows[-1])
    return rows


def _run(j: Job, progress: Progress | None) -> Row:
    t0 = time.perf_counter()
    try:
        text, ok, states = j.run(progress)
    except Exception as exc:  # a crashing job is a failed job, not a crashed table
        text, ok, states = f"error: {type(exc).__name__}: {exc}", False, None
    return Row(j.name, j.expectation, text, ok, states, time.perf_counter() - t0)


def _run_forked(
    todo: list[Job],
    processes: int,
    on_start: Callable[[str], None] | None,
    on_done: Callable[[int, int, Row], None] | None,
) -> list[Row]:
    """run_jobs over forked processes, one per job and at most `processes` at once. A process per
    job rather than a pool: the parent owns every child, so Ctrl-C (which the children ignore)
    ends them all at once, and a child that dies (the OOM killer, a crash in z3) fails its own
    row instead of hanging the run or breaking the jobs after it."""
    rows: list[Row | None] = [None] * len(todo)
    waiting = sorted(range(len(todo)), key=lambda k: not todo[k].slow)
    running: dict[int, tuple[BaseProcess, Connection]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < processes:
                k = waiting.pop(0)
                if on_start is not None:
                    on_start(todo[k].name)
                running[k] = _start(todo[k])
            ready = wait([r for _, r in running.values()])
            for k in [k for k, (_, r) in running.items() if r in ready]:
                rows[k] = row = _collect(todo[k], *running.pop(k))
                if on_done is not None:
                    on_done(len(todo) - len(waiting) - len(running), len(todo), row)
    finally:
        for proc, r in running.values():
            proc.terminate()
            proc.join()
            r.close()
    return [row for row in rows if row is not None]


def _start(j: Job) -> tuple[BaseProcess, Connection]:
    """Fork a process running j, and the end of the pipe its row comes back on."""
    ctx = multiprocessing.get_context("fork")  # the jobs are closures: a forked child inherits them
    r, w = ctx.Pipe(duplex=False)
    proc: BaseProcess = ctx.Process(target=_child, args=(j, w), name=f"devdax all: {j.name}")
    # SIGINT held off while forking: a child takes its SIG_IGN before it can see one
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    w.close()  # the child's copy is the only writer left: its exit is our EOF
    return proc, r


def _collect(j: Job, proc: BaseProcess, r: Connection) -> Row:
    """The row of j's finished process: the one it sent, or a failure if it died first."""
    try:
        row: Row | None = r.recv()
    except EOFError:
        row = None
    proc.join()
    r.close()
    if row is None:
        return Row(
            j.name, j.expectation, f"error: its process died (exit code {proc.exitcode})", False, None, 0.0
        )
    return row


def _child(j: Job, w: Connection) -> None:
    """One job in its own process: Ctrl-C is the parent's to handle (it ends the children)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    w.send(_run(j, None))
    w.close()


def render_table(rows: list[Row], seconds: float, out: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="devdax all")
    t.add_column("job")
    t.add_column("expectation", overflow="fold")
    t.add_column("result", overflow="fold")
    t.add_column("ok")
    t.add_column("states", justify="right")
    t.add_column("seconds", justify="right")
    for r in rows:
        t.add_row(
            r.job,
            r.expectation,
            r.result,
            "ok" if r.ok else "FAIL",
            f"{r.states:,}" if r.states is not None else "-",
            f"{r.seconds:.2f}",
        )
    con = Console(file=out, width=160)
    con.print(t)
    met = sum(r.ok for r in rows)
    verdict = "all ok!" if met == len(rows) else f"{len(rows) - met} FAILED"
    con.print(f"{verdict} {met}/{len(rows)} jobs met their expectation in {seconds:.1f} s", highlight=False)


def to_json(rows: list[Row], seconds: float) -> dict[str, Any]:
    return {
        "result": "pass" if all(r.ok for r in rows) else "fail",
        "seconds": round(seconds, 2),
        "jobs": [
            {
                "job": r.job,
                "expectation": r.expectation,
                "result": r.result,
                "ok": r.ok,
                "states": r.states,
                "seconds": round(r.seconds, 3),
            }
            for r in rows
        ],
    }
