"""The `devdax` command: a thin layer over spec/ and model/ (and proofs/, scenario/).

    devdax check [--profile P | --variant V] [bounds...] [--workers N [--backend ray]] [--json] [--quiet]
    devdax variants [--json]
    devdax explain NAME
    devdax prove ...          (devdax.proofs.cli)
    devdax scenario ...       (devdax.scenario.cli)
    devdax all [--json] [--skip-prove]

Exit status, for every subcommand: 0 pass, 1 violation (or an expectation not met), 2 usage error,
3 unknown (a solver timeout), 130 interrupted by Ctrl-C after printing what was verified so far
(`devdax --help` lists them). `--profile` takes a profile file too (docs/profile-files.md): a path
ending in .toml or containing '/'. A usage error is one line, compiler style:
`devdax: error: --cpus: expected a non-negative integer, got 'x'`.

`check` verdicts. A profile passes when the invariants it violates are exactly its documented
findings (spec/profiles.py): an undocumented violation prints its full counterexample and exits 1; a
documented finding that is no longer reproduced exits 1 too, but only in the profile's own default
configuration, where the finding is claimed reachable (with other bounds it may simply be out of
reach, and is reported as a note). A variant (`--variant V`) is a bug brought back on purpose: it
prints the counterexample of each property it breaks and exits 1, as any violation does; "variant
not caught" exits 0. `--max-states` makes a run incomplete: it can then find violations but never
claim that an invariant holds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import IO, Any, NoReturn

from devdax.model.checker import CheckResult, Eta, check, peak_rss
from devdax.model.parallel import BACKENDS, parallel_check
from devdax.model.render import (
    config_brief,
    config_source,
    pack,
    render_violation,
    summary_line,
    variant_report,
)
from devdax.profile_file import (
    ProfileFile,
    ProfileFileError,
    is_profile_file,
    load_profile,
    loaded,
    replayable,
)
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import ALIGN_NAMES
from devdax.spec.profiles import DEFAULT_PROFILE, PROFILES
from devdax.spec.variants import VARIANTS, default_config, finding_configs, variant_config

EXIT_PASS, EXIT_VIOLATION, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3
#: Ctrl-C: 128 + SIGINT, as shells report it
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad command line; main() prints it as one line and exits 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one `devdax: error: ...` line instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message.removeprefix("argument "))


# --------------------------------------------------------------------------- value types ----


def _count(text: str) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return n


def _positive(what: str) -> Callable[[str], int]:
    """An argparse type: a positive count of `what` (workers, jobs)."""

    def parse(text: str) -> int:
        try:
            n = int(text, 0)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"expected a positive number of {what}, got {text!r}")
        return n

    return parse


_workers, _jobs = _positive("workers"), _positive("jobs")


def _align(text: str) -> str:
    names = list(ALIGN_NAMES.values())
    if text.upper() not in names:
        raise argparse.ArgumentTypeError(f"expected {', '.join(names[:-1])} or {names[-1]}, got {text!r}")
    return text.upper()


def _aligns(text: str) -> tuple[str, ...]:
    return tuple(_align(t) for t in text.split(","))


def _fault_size(text: str) -> str:
    if text not in ("pte", "pmd", "pud"):
        raise argparse.ArgumentTypeError(f"expected pte, pmd or pud, got {text!r}")
    return text


def _profile(text: str) -> str:
    """A profile name, or a profile file (a name ending in .toml or containing '/'), loaded here so
    that a bad file is one usage line naming its key."""
    if is_profile_file(text):
        try:
            load_profile(text)
        except ProfileFileError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(PROFILES)} or a profile file (.toml), got {text!r}"
        )
    return text


def _variant(text: str) -> str:
    if text not in VARIANTS:
        raise argparse.ArgumentTypeError(f"unknown variant {text!r}; `devdax variants` lists them")
    return text


#: bound options -> Config fields (None: not given, keep the base configuration's value)
BOUNDS = ("devices", "files", "vmas", "cpus", "faults", "units", "ranges", "generations", "binds")
FLAGS = {
    "fork": "fork",
    "rdonly": "open_rdonly",
    "munmap_parts": "munmap_parts",
    "add_failure": "add_failure",
    "race": "race",
    "syscalls": "syscalls",
}


BOUND_HELP = {
    "devices": "device instances per region",
    "files": "open files at once (slots are reused)",
    "vmas": "mappings at once",
    "cpus": "CPUs running the fault handler",
    "faults": "faults each CPU takes",
    "units": "align-sized units per device",
    "ranges": "physical ranges per device (<= units)",
    "generations": "provider probe -> remove rounds (minor reuse)",
    "binds": "modern: unbind/bind cycles per device",
}
EPILOG = """exit status (every subcommand):
  0    pass: exactly the documented findings, every obligation proved, every expectation met
  1    a violation (an undocumented one, or a documented finding no longer reproduced), or an
       expectation not met (a scenario's `expect`, a job of `devdax all`)
  2    usage error: one line `devdax: error: ...` naming the option, file or key
  3    unknown: a solver timeout in `prove`, no kernel could boot in `conformance`
  130  interrupted (Ctrl-C): what was verified so far is printed first"""
CHECK_EXAMPLES = """examples:
  devdax check                                  the default profile (v4.10) in its own bounds
  devdax check --profile modern --binds 2       another profile, other bounds
  devdax check --variant no-synchronize         a historical bug brought back: caught, exit 1
  devdax check --profile ./my-change.toml       your change as a profile file (docs/profile-files.md)
  devdax check --profile ./my-change.toml --generations 2
                                                wider bounds: a pass holds only for the bounds run
  devdax check --profile ./my-change.toml --svg trace.svg
                                                and draw the counterexample (docs/pictures.md)
  devdax check --race --cpus 2 --faults 2       the fault-vs-teardown race alone
  devdax check --devices 2 --workers 4 --backend ray
                                                the same check and report over 4 Ray actors

"""
ALL_EXAMPLES = """examples:
  devdax all                 every check, variant and proof; a line per job as it finishes
  devdax all --skip-prove    without the Z3 proofs
  devdax all --json > all.json
  devdax all --jobs 1        one job at a time, in this process, with a progress line per job

exit status: 0 iff every job met its expectation, 1 otherwise, 130 interrupted"""


def bound_options(cfg: Config, base: Config) -> list[str]:
    """The command-line options that turn `base` into `cfg`, so that a printed replay command runs
    the bounds that were checked, not the profile's default ones."""
    out: list[str] = []
    for f in (*BOUNDS, "align", "first_fault"):
        if getattr(cfg, f) != getattr(base, f):
            out += [_option_of(f), str(getattr(cfg, f))]
    out += [_option_of(f) for f in FLAGS.values() if getattr(cfg, f) and not getattr(base, f)]
    if cfg.device_aligns != base.device_aligns and cfg.device_aligns is not None:
        out += ["--device-aligns", ",".join(cfg.device_aligns)]
    return out


def _option_of(field: str) -> str:
    inverse = {v: k for k, v in FLAGS.items()}
    return "--" + inverse.get(field, field).replace("_", "-")


# ------------------------------------------------------------------------------- parser ----


def parser() -> Parser:
    # Over 50 lines on purpose: one declarative table of every subcommand and option, read top to
    # bottom like --help; split into pieces it would be harder to check against the docs.
    raw = argparse.RawDescriptionHelpFormatter
    p = Parser(
        prog="devdax",
        description="Executable reference semantics of Linux device-DAX lifetime.",
        epilog="examples:\n  devdax check --profile ./my-change.toml\n  devdax prove --variant M21\n"
        "  devdax scenario run tests/scenarios/\n  devdax explain no_entry_after_kill\n"
        "  devdax explain mmap                      every outcome of mmap(), in the kernel's order\n\n"
        "docs: docs/profile-files.md (your change), docs/reference.md (outcomes, references,\n"
        "teardown), docs/pictures.md (--svg), docs/semantics.md (why)\n\n" + EPILOG,
        formatter_class=raw,
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)

    c = sub.add_parser(
        "check",
        help="explore every interleaving of a bounded configuration",
        epilog=CHECK_EXAMPLES + EPILOG,
        formatter_class=raw,
        description="Breadth-first exploration of every interleaving; prints the shortest "
        "counterexample of each violated invariant.",
    )
    c.add_argument(
        "--profile",
        type=_profile,
        help=f"kernel profile (default {DEFAULT_PROFILE}): {', '.join(PROFILES)}, or a profile file "
        "(a path ending in .toml or containing '/')",
    )
    c.add_argument("--variant", type=_variant, help="a named bug variant (see `devdax variants`)")
    g = c.add_argument_group("bounds (override the profile's or the variant's configuration)")
    for b in BOUNDS:
        g.add_argument(f"--{b}", type=_count, metavar="N", help=BOUND_HELP[b])
    g.add_argument("--align", type=_align, metavar="4K|2M|1G", help="the region's alignment")
    g.add_argument(
        "--device-aligns",
        type=_aligns,
        metavar="A,B,..",
        help="modern: each device's own align (dev_dax->align), one per device",
    )
    g.add_argument(
        "--first-fault", type=_fault_size, metavar="pte|pmd|pud", help="the size the mm asks for first"
    )
    g.add_argument("--fork", action="store_true", default=None, help="fork(2) and MADV_DONTFORK")
    g.add_argument("--rdonly", action="store_true", default=None, help="also open O_RDONLY")
    g.add_argument("--munmap-parts", action="store_true", default=None, help="partial munmap (splits)")
    g.add_argument("--add-failure", action="store_true", default=None, help="device_add may fail")
    g.add_argument(
        "--race",
        action="store_true",
        default=None,
        help="the fault-vs-teardown race alone: start probed, opened and mapped",
    )
    g.add_argument("--syscalls", action="store_true", default=None, help="read/ioctl self-loops")
    c.add_argument("--no-symmetry", action="store_true", help="no symmetry reduction")
    c.add_argument("--no-reduction", action="store_true", help="no movers reduction of fault steps")
    c.add_argument("--max-states", type=_count, metavar="N", help="stop after N states (incomplete)")
    c.add_argument(
        "--compiled",
        action="store_true",
        help="run the mypyc-compiled spec and explorer (`make compiled` builds it; ~1.8x faster)",
    )
    c.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="explore with N worker processes, states partitioned by fingerprint (same report)",
    )
    c.add_argument(
        "--backend",
        choices=BACKENDS,
        help="--workers' engine: process (forked, default) or ray (pip install 'devdax[ray]'; "
        "joins the cluster RAY_ADDRESS names, else starts one on this machine)",
    )
    c.add_argument("--json", action="store_true", help="one JSON object, traces in ITF")
    c.add_argument("--quiet", action="store_true", help="verdict only, no progress")
    c.add_argument("--svg", metavar="FILE", help="draw the counterexample as a sequence diagram (SVG)")
    c.add_argument("--mermaid", metavar="FILE", help="the same diagram as Mermaid text")

    v = sub.add_parser(
        "variants",
        help="list the bug variants",
        epilog="examples:\n  devdax variants\n  devdax variants --json | jq '.[].name'\n\nexit status: 0",
        formatter_class=raw,
    )
    v.add_argument("--json", action="store_true", help="a JSON list instead of the table")

    e = sub.add_parser(
        "explain",
        help="what an invariant, variant, profile, action or step is; every outcome of a call",
        epilog="examples:\n  devdax explain mmap              every errno/signal of mmap(), in check order\n"
        "  devdax explain no_entry_after_kill\n  devdax explain M21\n"
        "  devdax explain synchronize_wait\n\nthe same, as tables: docs/reference.md\n"
        "exit status: 0 known, 2 unknown name (with suggestions)",
        formatter_class=raw,
    )
    e.add_argument("name", metavar="NAME")

    from devdax.picture import GRAPH_LIMIT  # `devdax graph`: docs/pictures.md

    gr = sub.add_parser(
        "graph",
        help="draw every reachable state of a small configuration (DOT, SVG)",
        epilog=f"refuses above {GRAPH_LIMIT} states (exit 2). "
        "example: devdax graph --variant no-synchronize --svg graph.svg",
    )
    gr.add_argument("--profile", type=_profile, help="kernel profile")
    gr.add_argument("--variant", type=_variant, help="a named bug variant")
    for b in BOUNDS:
        gr.add_argument(f"--{b}", type=_count, metavar="N", help=BOUND_HELP[b])
    gr.add_argument("--dot", metavar="FILE", help="write DOT here (no file named: DOT on stdout)")
    gr.add_argument("--svg", metavar="FILE", help="write the drawing here")
    gr.set_defaults(align=None, first_fault=None, device_aligns=None, **dict.fromkeys(FLAGS))

    sub.add_parser("prove", help="Z3 proofs (devdax prove --help)", add_help=False)
    sub.add_parser("scenario", help="conformance scenarios (devdax scenario --help)", add_help=False)

    a = sub.add_parser(
        "all",
        help="every model check, variant and proof, with a summary table",
        epilog=ALL_EXAMPLES,
        formatter_class=raw,
    )
    a.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    a.add_argument("--skip-prove", action="store_true", help="leave out the Z3 proof jobs")
    a.add_argument("--quiet", action="store_true", help="no line per job, only the table")
    a.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help="run N jobs at a time, each in a process of its own (default: one per usable CPU)",
    )
    return p


# ------------------------------------------------------------------------------- output ----


class ProgressLine:
    """The live line on stderr while a run explores: states, states/s, frontier and depth. Drawn
    only on a terminal (a log file gets no carriage returns); `force` decides instead (tests, and
    `devdax all`, which has already decided)."""

    def __init__(self, stream: IO[str], force: bool | None = None, label: str = "") -> None:
        self.stream = stream
        tty = hasattr(stream, "isatty") and stream.isatty()
        self.enabled = tty if force is None else force
        self.drawn = False
        self.label = f"  {label}:" if label else ""
        self.eta = Eta()

    def __call__(self, states: int, frontier: int, depth: int, seconds: float) -> None:
        if not self.enabled:
            return
        rate = states / seconds if seconds > 0 else 0.0
        eta = self.eta(states, frontier, depth, seconds)
        self.stream.write(
            f"\r\x1b[2K{self.label}  {states:>10,} states  {rate:>9,.0f} states/s  "
            f"frontier {frontier:>9,}  depth {depth:>3}  {seconds:6.1f} s  {peak_rss() / 2**20:,.0f} MB"
            + (f"  ETA {eta:,.0f} s" if eta is not None else "")
        )
        self.stream.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def stats_line(res: CheckResult) -> str:
    return (
        f"{res.states:,} states, {res.transitions:,} transitions, depth {res.depth}, "
        f"{res.seconds:.2f} s ({res.states_per_second:,.0f} states/s), "
        f"peak RSS {res.peak_rss / 2**20:,.0f} MB"
        + ("" if res.complete else "; INCOMPLETE: --max-states reached")
    )


def _emit(text: str, out: IO[str]) -> None:
    out.write(text if text.endswith("\n") else text + "\n")


# -------------------------------------------------------------------------------- check ----


def build_config(a: argparse.Namespace) -> tuple[Config, bool]:
    """The configuration to check, and whether it is the one the profile/variant names itself."""
    if a.variant is not None:
        v = VARIANTS[a.variant]
        if a.profile is not None and a.profile != v.base.name:
            raise UsageError(f"--profile: variant {v.name} applies to {v.base.name}, not {a.profile}")
        base = variant_config(v)
    else:
        pf = loaded(a.profile) if a.profile else None
        base = pf.config if pf is not None else default_config(a.profile or DEFAULT_PROFILE)
    changes: dict[str, Any] = {b: getattr(a, b) for b in BOUNDS if getattr(a, b) is not None}
    changes.update({f: True for opt, f in FLAGS.items() if getattr(a, opt)})
    if a.align is not None:
        changes["align"] = a.align
    if a.first_fault is not None:
        changes["first_fault"] = a.first_fault
    if a.device_aligns is not None:
        changes["device_aligns"] = a.device_aligns
    try:
        cfg = replace(base, **changes)
    except ValueError as exc:
        msg = str(exc)
        head, sep, rest = msg.partition(": ")
        names = {f.name for f in fields(Config)}
        parts = re.split(r"([*/])", head)
        if sep and all(p in names or p in "*/" for p in parts):
            msg = "".join(_option_of(p) if p in names else f" {p} " for p in parts) + f": {rest}"
        raise UsageError(msg) from None
    return cfg, cfg == base


@dataclass
class _Seen:
    """The last progress report of a run, for the summary of an interrupted one."""

    states: int = 0
    depth: int = 0
    seconds: float = 0.0
    found: set[str] = field(default_factory=set)  # the properties found violated so far


def _interrupted(exc: KeyboardInterrupt, seen: _Seen, err: IO[str]) -> int:
    """What an interrupted check had verified. The violations are the ones the run named into
    ``seen.found`` as it found them (check's, parallel_check's and the compiled child's ``found``).
    How far it got is read from the interrupted frame when it is the interpreted checker's
    (`_Explorer`, whose graph is exact), else from the last progress report."""
    tb, run = exc.__traceback__, None
    while tb is not None:
        cand = tb.tb_frame.f_locals.get("self")
        if isinstance(getattr(cand, "res", None), CheckResult) and hasattr(cand, "g"):
            run = cand
        tb = tb.tb_next
    states, depth = seen.states, seen.depth
    if run is not None:
        states, depth = len(run.g.states), max(run.g.depth, default=0)
    found = sorted(seen.found)
    err.write(
        f"\ndevdax: interrupted: {states:,} states explored to depth {depth} (incomplete: no invariant "
        f"is claimed to hold); violations found so far: {', '.join(found) or 'none'} "
        f"(exit {EXIT_INTERRUPTED})\n"
    )
    return EXIT_INTERRUPTED


def _check_workers(a: argparse.Namespace) -> None:
    """--workers' companions: a backend that is installed, and no --max-states (where a sequential
    run stops inside a level depends on the order it expands it in)."""
    if a.workers is None:
        if a.backend is not None:
            raise UsageError("--backend: needs --workers N")
        return
    if a.max_states is not None:
        raise UsageError("--max-states: not with --workers (a partitioned run explores whole levels)")
    if a.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--backend ray: ray is not installed (pip install 'devdax[ray]')")
    if a.backend == "ray" and a.compiled:
        # Ray's workers are not forked from the compiled child: they import the interpreted spec,
        # whose records the compiled classes do not unpickle into
        raise UsageError("--backend ray: not with --compiled (its workers run the interpreted spec)")


def explore(a: argparse.Namespace, err: IO[str]) -> tuple[Config, bool, CheckResult]:
    """Run the check the namespace asks for: its configuration, whether that is the profile's own,
    and the result. KeyboardInterrupt propagates (with the run's frame, for _interrupted)."""
    cfg, own = build_config(a)
    _check_workers(a)
    show = not (a.json or a.quiet)
    line = ProgressLine(err) if show else None
    seen = a.seen if isinstance(getattr(a, "seen", None), _Seen) else _Seen()

    def progress(states: int, frontier: int, depth: int, seconds: float) -> None:
        seen.states, seen.depth, seen.seconds = states, depth, seconds
        if line is not None:
            line(states, frontier, depth, seconds)

    runner = check
    if a.compiled:
        from devdax import compiled

        why = compiled.stale()
        if why is not None:
            raise UsageError(f"--compiled: {why}")

        def runner(c: Ctx, **kw: Any) -> CheckResult:
            try:
                return compiled.check(c, **kw)
            except compiled.CompiledError as exc:
                raise UsageError(f"--compiled: {exc}") from None

    try:
        common: dict[str, Any] = dict(
            symmetry=not a.no_symmetry, reduce=not a.no_reduction, progress=progress, found=seen.found
        )
        if a.workers is not None:
            pick = dict(workers=a.workers, backend=a.backend or "process")
            try:
                if a.compiled:
                    res = runner(Ctx.of(cfg), **pick, **common)
                else:
                    res = parallel_check(Ctx.of(cfg), a.workers, backend=pick["backend"], **common)
            except ValueError as exc:  # "workers: ...": more Ray actors than the cluster's CPUs
                raise UsageError(f"--{exc}") from None
        else:
            res = runner(Ctx.of(cfg), max_states=a.max_states, **common)
    finally:
        if line is not None:
            line.done()
    return cfg, own, res


def run_check(a: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    a.seen = _Seen()
    try:
        cfg, own, res = explore(a, err)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, a.seen, err)
    return verdict(a, cfg, own, res, out)


def verdict(a: argparse.Namespace, cfg: Config, own: bool, res: CheckResult, out: IO[str]) -> int:
    """Print the verdict of a finished check and return its exit status."""
    if a.variant is not None:
        code = _variant_verdict(a, cfg, res, out)
    else:
        code = _profile_verdict(
            cfg,
            own,
            res,
            out,
            json_out=a.json,
            quiet=a.quiet,
            symmetry=not a.no_symmetry,
            reduce=not a.no_reduction,
        )
    from devdax.picture import write_check_pictures

    problem = write_check_pictures(cfg, res, a.variant, a.svg, a.mermaid)
    if problem is not None:
        raise UsageError(problem)
    return code


def _variant_verdict(a: argparse.Namespace, cfg: Config, res: CheckResult, out: IO[str]) -> int:
    from devdax.model.itf import result_json

    v = VARIANTS[a.variant]
    caught = [n for n in v.breaks if n in res.violations]
    code = EXIT_VIOLATION if res.violations else EXIT_PASS
    if a.json:
        verdict = "violation" if res.violations else ("pass" if res.complete else "incomplete")
        doc = result_json(
            verdict=verdict,
            cfg=cfg,
            res=res,
            profile=v.base.name,
            variant=v.name,
            documented={},
            source=f"devdax check --variant {v.name}",
            extra={"breaks": list(v.breaks), "caught": caught},
        )
        _emit(json.dumps(doc, indent=1), out)
        return code
    if a.quiet:
        _emit(
            f"variant {v.name}: "
            + (
                f"caught: {', '.join(caught)}"
                if caught
                else "violation: " + ", ".join(res.violations)
                if res.violations
                else "not caught"
            ),
            out,
        )
        return code
    _emit(variant_report(v, cfg, res, symmetry=not a.no_symmetry, reduce=not a.no_reduction), out)
    _emit(stats_line(res), out)
    return code


@dataclass(frozen=True)
class _Judged:
    """A profile's check judged against its documented findings (spec/profiles.py): a violation the
    profile does not document fails, and so does a documented one that a complete run of the
    profile's own bounds no longer reproduces (the drift rule)."""

    findings: dict[str, str]
    violated: set[str]
    undocumented: list[str]
    elsewhere: dict[str, Config]  # documented findings reproduced in a configuration of their own
    missing: list[str]
    missing_fails: bool

    @staticmethod
    def of(prof_name: str, findings: dict[str, str], own: bool, res: CheckResult) -> _Judged:
        violated = set(res.violations)
        elsewhere = finding_configs(prof_name) if own else {}
        return _Judged(
            findings=findings,
            violated=violated,
            undocumented=sorted(violated - set(findings)),
            elsewhere=elsewhere,
            missing=sorted(set(findings) - violated - set(elsewhere)),
            missing_fails=own and res.complete,
        )

    @property
    def failed(self) -> bool:
        return bool(self.undocumented) or (bool(self.missing) and self.missing_fails)

    def verdict(self, res: CheckResult) -> str:
        return "violation" if self.failed else ("pass" if res.complete else "incomplete")

    def verdict_line(self, res: CheckResult) -> str:
        reproduced = [n for n in self.findings if n in self.violated]
        if not self.findings:
            passed = "pass"
        elif not self.missing:
            passed = "pass (exactly the documented findings)"
        else:
            passed = (
                f"pass ({len(reproduced)} of {len(self.findings)} documented findings reached, "
                "none undocumented)"
            )
        not_reproduced = f", {len(self.missing)} documented finding(s) not reproduced)"
        what = {
            "pass": passed,
            "violation": f"violation ({len(self.undocumented)} undocumented"
            + (not_reproduced if self.missing_fails and self.missing else ")"),
            "incomplete": "incomplete (no undocumented violation found)",
        }[self.verdict(res)]
        return f"verdict: {what}"


def _profile_verdict(
    cfg: Config,
    own: bool,
    res: CheckResult,
    out: IO[str],
    *,
    json_out: bool,
    quiet: bool,
    symmetry: bool = True,
    reduce: bool = True,
) -> int:
    prof = Ctx.of(cfg).prof
    pf = loaded(prof.name)
    # a profile file's base decides which findings have configurations of their own
    j = _Judged.of(pf.base.name if pf else prof.name, prof.findings, own, res)
    code = EXIT_VIOLATION if j.failed else EXIT_PASS
    if json_out:
        doc = _profile_json(cfg, prof.name, res, j)
        if pf is not None:
            doc["against_base"] = _against_base(pf, j, res)
        _emit(json.dumps(doc, indent=1), out)
        return code
    lines = [] if quiet else _profile_header(cfg, own, prof.name, prof.summary)
    lines += _profile_findings(cfg, prof.name, res, j, quiet, symmetry=symmetry, reduce=reduce)
    if pf is not None:
        lines.append(_against_base_line(pf, j, res))
    lines.append(j.verdict_line(res))
    if not quiet:
        lines.append(stats_line(res))
    text = "\n".join(lines)
    _emit(replayable(text, pf.path) if pf is not None else text, out)
    return code


def _against_base(pf: ProfileFile, j: _Judged, res: CheckResult) -> dict[str, Any]:
    """What the change does to the base profile's verdict: violations the base does not document,
    and base findings no longer reproduced (only a complete run of the file's own bounds says so)."""
    base = set(pf.base.findings) - set(j.elsewhere)
    new = sorted(j.violated - set(pf.base.findings))
    fixed = sorted(base - j.violated) if j.missing_fails else []
    return {
        "base": pf.base.name,
        "new_violations": new,
        "documented_by_file": sorted(set(new) & set(pf.added)),
        "findings_fixed": fixed,
        "declared_fixed": list(pf.fixed),
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _against_base_line(pf: ProfileFile, j: _Judged, res: CheckResult) -> str:
    d = _against_base(pf, j, res)
    new = [n + (" [documented by the file]" if n in pf.added else "") for n in d["new_violations"]]
    text = _against_text(pf.base.name, new, d["findings_fixed"])
    still = sorted(set(pf.fixed) & j.violated)
    if still:
        text += f"; declared fixed but still violated: {', '.join(still)}"
    if not j.missing_fails:
        text += " (fixes are judged only on the file's own bounds, run to the end)"
    return text


def _profile_json(cfg: Config, profile: str, res: CheckResult, j: _Judged) -> Any:
    from devdax.model.itf import result_json

    return result_json(
        verdict=j.verdict(res),
        cfg=cfg,
        res=res,
        profile=profile,
        variant=None,
        documented=j.findings,
        source=f"devdax check --profile {profile}",
        extra={
            "documented_findings": {
                k: {"reason": r, "reproduced": k in j.violated} for k, r in j.findings.items()
            },
            "undocumented": j.undocumented,
            "not_reproduced": j.missing,
        },
    )


def _profile_header(cfg: Config, own: bool, profile: str, summary: str) -> list[str]:
    lines = [f"devdax check: profile {profile}: {summary}", f"  config: {cfg.describe()}"]
    pf = loaded(profile)
    if pf is not None:
        again = " ".join(["devdax check --profile", pf.path, *bound_options(cfg, pf.config)])
        lines.append(f"  file:   {pf.path}, base {pf.base.name}; replay: {again}")
        lines += [
            f"  step {s.name}: not in spec/admin.py; runs as {s.existing}, which it {s.relation}"
            for s in pf.new_steps.values()
        ]
    if not own:
        source = f"  bounds differ from the profile's default; as Python: {config_source(cfg)}"
        lines += pack(source, "", "    ", " ")
    return lines


def _profile_findings(
    cfg: Config, profile: str, res: CheckResult, j: _Judged, quiet: bool, *, symmetry: bool, reduce: bool
) -> list[str]:
    """Each documented finding (reproduced, reproduced elsewhere, or missing), each undocumented
    violation with its shortest trace, and how many invariants hold."""
    lines: list[str] = []
    reproduced = [n for n in j.findings if n in j.violated]
    if reproduced and not quiet:
        lines.append(f"documented findings ({len(reproduced)}), reproduced as expected:")
        for n in reproduced:
            lines += [f"  {n}: {j.findings[n]}", f"    shortest trace: {summary_line(res.violations[n])}"]
    for n, where in j.elsewhere.items():
        if n not in j.violated and not quiet:
            lines.append(
                f"documented finding {n}: out of reach of the default bounds; reproduced with "
                f"{where.describe()} (devdax all checks it)"
            )
    for n in j.missing:
        word = "no longer reproduced" if j.missing_fails else "not reached with these bounds"
        lines.append(f"documented finding {word}: {n} ({j.findings[n]})")
    for n in j.undocumented:
        text = render_violation(cfg, res.violations[n], profile, symmetry=symmetry, reduce=reduce)
        lines += ["", text.rstrip("\n"), ""]
    holding = len([n for n in res.checked if n not in j.violated])
    if res.complete:
        others = "other " if j.violated else ""
        lines.append(f"all {holding} {others}invariants hold over {res.states:,} states")
    else:
        lines.append(
            f"no violation of the {holding} other invariants in the first {res.states:,} states "
            "(--max-states: not exhaustive)"
        )
    return lines


# ----------------------------------------------------------------------------- variants ----


def run_variants(a: argparse.Namespace, out: IO[str]) -> int:
    rows = []
    for v in VARIANTS.values():
        cfg = variant_config(v)
        rows.append(
            {
                "name": v.name,
                "profile": v.base.name,
                "title": v.title,
                "source": v.source,
                "config": config_brief(cfg),
                "breaks": list(v.breaks),
            }
        )
    if a.json:
        _emit(json.dumps(rows, indent=1), out)
        return EXIT_PASS
    from rich.console import Console
    from rich.table import Table

    t = Table(title="devdax variants (devdax check --variant NAME; devdax explain NAME)", show_lines=True)
    for col in ("name", "profile", "title", "source", "config", "breaks"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(
            str(r["name"]),
            str(r["profile"]),
            str(r["title"]),
            str(r["source"]),
            str(r["config"]),
            ", ".join(r["breaks"]),
        )
    Console(file=out, width=160, soft_wrap=False).print(t)
    return EXIT_PASS


# ------------------------------------------------------------------------------ explain ----


def run_explain(a: argparse.Namespace, out: IO[str]) -> int:
    import difflib

    from devdax.docgen import catalog, explain

    text = explain(a.name)
    if text is None:
        near = difflib.get_close_matches(a.name, list(catalog()), n=3)
        hint = (
            f"; did you mean {' or '.join(near)}?"
            if near
            else "; try an invariant, a variant, a profile, an action or an admin step"
        )
        raise UsageError(f"explain: unknown name {a.name!r}{hint}")
    _emit(text, out)
    return EXIT_PASS


# ------------------------------------------------------------------------------ delegates ----


PROVE_EXAMPLES = """examples:
  devdax prove                                  every obligation of the default profile (v4.10)
  devdax prove --profile modern --only proto_no_entry_after_kill
  devdax prove --variant M21                    the variant's base profile (modern) is inferred
  devdax prove --profile ./my-change.toml       a profile file (docs/profile-files.md)

exit status: 0 proved (or a documented finding), 1 a violation or a stale finding, 2 usage error,
3 UNKNOWN (solver timeout), 130 interrupted (Ctrl-C)"""


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in a command line another parser owns."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def _replace_option(argv: Sequence[str], name: str, value: str) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == name and i + 1 < len(out):
            out[i + 1] = value
        elif arg.startswith(name + "="):
            out[i] = f"{name}={value}"
    return out


def variant_base(variant: str) -> str:
    """The profile a variant applies to, as `check --variant` infers it."""
    if variant not in VARIANTS:
        raise UsageError(f"--variant: unknown variant {variant!r}; `devdax variants` lists them")
    return VARIANTS[variant].base.name


def run_prove(argv: Sequence[str], out: IO[str] | None = None) -> int:
    """`devdax prove`: proofs/cli.py parses (and, for --list or a bad value, answers); the run itself
    is prove_profile here, so that a profile file (only this layer reads files) and Ctrl-C are
    handled as `check` handles them. `--variant V` without `--profile` proves on the variant's own
    profile, as `check` does."""
    from devdax.proofs import cli as prove_cli

    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        p = prove_cli.parser()
        p.epilog, p.formatter_class = PROVE_EXAMPLES, argparse.RawDescriptionHelpFormatter
        p.print_help(out or sys.stdout)
        return EXIT_PASS
    prof, var = _option(argv, "--profile"), _option(argv, "--variant")
    if prof is None and var is not None:
        argv = ["--profile", variant_base(var), *argv]
    if prof is not None and not is_profile_file(prof) and prof not in PROFILES:
        raise UsageError(
            f"--profile: expected one of {', '.join(PROFILES)} or a profile file (.toml), got {prof!r}"
        )
    pf = _load(prof) if prof is not None and is_profile_file(prof) else None
    if pf is not None and var is not None:
        raise UsageError("--variant: variants apply to the named profiles, not to a profile file")
    try:
        a = prove_cli.parser().parse_args(_replace_option(argv, "--profile", pf.base.name) if pf else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    bad = (
        a.timeout <= 0
        or (a.bmc is not None and not 0 <= a.bmc <= prove_cli.MAX_BMC_DEPTH)
        or min(a.cpus, a.faults, a.units) < 1
    )
    if pf is None and (bad or a.list):
        return int(prove_cli.main(argv))  # its own listing and its one-line messages
    if bad:
        raise UsageError(
            f"--timeout must be positive, --bmc at most {prove_cli.MAX_BMC_DEPTH}, --cpus, --faults and "
            "--units at least 1"
        )
    code, _ = prove_profile(
        pf.path if pf is not None else a.profile,
        a.variant,
        a.timeout,
        a.only,
        out or sys.stdout,
        json_out=a.json,
        listing=a.list,
        bmc=(a.bmc, a.cpus, a.faults, a.units),
    )
    return code


def _load(path: str) -> ProfileFile:
    try:
        return load_profile(path)
    except ProfileFileError as exc:
        raise UsageError(f"--profile: {exc}") from None


def prove_profile(
    name: str,
    variant: str | None,
    timeout: float | None,
    only: list[str],
    out: IO[str],
    *,
    json_out: bool = False,
    listing: bool = False,
    bmc: tuple[int | None, int, int, int] = (None, 1, 1, 1),
) -> tuple[int, dict[str, str]]:
    """Prove a profile (a loaded file too) and print the checklist, with a file's counterexamples
    naming the file and a line comparing the verdict with the file's base. Returns the exit status
    and each obligation's status."""
    from devdax.proofs import runner
    from devdax.proofs.obligations import VariantError, obligations_for

    try:
        obs = runner.select(obligations_for(name, variant, *bmc), only)
    except (ValueError, VariantError) as exc:
        raise UsageError(str(exc)) from None
    pf, done = loaded(name), list[runner.Result]()
    if listing:
        _emit("\n".join(f"{ob.name}  {ob.statement}  [{ob.source}]" for ob in obs), out)
        return EXIT_PASS, {}
    if not json_out:
        _emit(f"devdax prove: profile {name}" + (f", variant {variant}" if variant else ""), out)
    try:
        with _ctrl_c():
            show = _prove_line(out, pf, done, quiet=json_out)
            results = runner.run(obs, timeout or runner.DEFAULT_TIMEOUT, on_result=show)
    except KeyboardInterrupt:
        counts = ", ".join(f"{n} {st.value}" for st, n in runner.count(done).items() if n)
        _emit(f"interrupted after {len(done)} of {len(obs)} obligations ({counts or 'none checked'})", out)
        return EXIT_INTERRUPTED, {r.obligation.name: r.verdict.status.value for r in done}
    stale = [] if only else runner.stale_findings(results)
    _emit(runner.to_json(results) if json_out else runner.render_total(results, stale), out)
    if json_out and stale:
        sys.stderr.write(f"devdax prove: documented finding no longer reproduced: {', '.join(stale)}\n")
    if pf is not None and not json_out:
        _emit(_prove_against_base(pf, results, stale), out)
    return runner.exit_status(results, stale), {r.obligation.name: r.verdict.status.value for r in results}


#: how an obligation reads when the interrupt reached z3 (its reason unknown) or a callback of it
#: (the runner's "internal error: KeyboardInterrupt") instead of Python
INTERRUPT_WORDS = ("interrupted from keyboard", "canceled", "KeyboardInterrupt")


class _CtrlC:
    """Whether Ctrl-C was pressed during a proof run, even if its KeyboardInterrupt was lost."""

    seen = False


@contextlib.contextmanager
def _ctrl_c() -> Iterator[None]:
    """A Ctrl-C that reaches the proofs, whatever it lands in. z3 catches SIGINT during a check,
    cancels that one query and answers "unknown", which the proofs retry or report as UNKNOWN
    (the interrupt was lost, or ended as exit 3): z3's handler is turned off. A KeyboardInterrupt
    raised in a z3 object's __del__ is printed and dropped by Python: the handler also sets a flag
    that the next obligation's line reads (_prove_line)."""
    import signal

    import z3

    def on_sigint(signum: int, frame: object) -> None:
        _CtrlC.seen = True
        raise KeyboardInterrupt

    z3.set_param("ctrl_c", False)
    _CtrlC.seen = False
    try:
        old = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: no handler of ours, the flag stays False
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _prove_line(
    out: IO[str], pf: ProfileFile | None, done: list[Any], *, quiet: bool
) -> Callable[[Any], None]:
    """The callback that prints each obligation's line as it is decided (a file's snippets load the
    file) and keeps the results for an interrupted run's counts."""
    from devdax.proofs import runner

    def show(r: runner.Result) -> None:
        # a Ctrl-C that reached z3 or a callback of it instead of Python is still the user's
        said = r.verdict.counterexample
        if _CtrlC.seen or (
            r.verdict.status is runner.Status.UNKNOWN and any(w in said for w in INTERRUPT_WORDS)
        ):
            raise KeyboardInterrupt
        done.append(r)
        if not quiet:
            line = runner.render_line(r)
            _emit(replayable(line, pf.path) if pf is not None else line, out)
            out.flush()

    return show


def _prove_against_base(pf: ProfileFile, results: Sequence[Any], stale: Sequence[str]) -> str:
    """The obligations the change breaks (undocumented, or documented by the file itself) and the
    base findings no obligation reproduces any more."""
    from devdax.proofs.runner import Status

    new = [r.obligation.name for r in results if r.verdict.status is Status.VIOLATED]
    new += [
        r.obligation.name
        for r in results
        if r.verdict.status is Status.FINDING and r.obligation.finding in pf.added
    ]
    return _against_text(
        pf.base.name, new, sorted((set(stale) & set(pf.base.findings)) | _proved_fixes(pf, results))
    )


def _proved_fixes(pf: ProfileFile, results: Sequence[Any]) -> set[str]:
    """The file's `fixed` findings whose obligations, those that report the finding for the base, were
    all run and proved here: the file no longer documents them, so their obligations carry no finding
    key of their own and runner.stale_findings cannot see them."""
    from devdax.proofs.obligations import obligations_for
    from devdax.proofs.runner import Status

    serves = {ob.name: ob.finding for ob in obligations_for(pf.base.name, None) if ob.finding}
    status: dict[str, list[Status]] = {}
    for r in results:
        if serves.get(r.obligation.name) in pf.fixed:
            status.setdefault(serves[r.obligation.name], []).append(r.verdict.status)
    return {k for k, seen in status.items() if all(s is Status.PROVED for s in seen)}


def _against_text(base: str, new: Sequence[str], fixed: Sequence[str]) -> str:
    """`against base modern: 2 new violations (a, b), 1 finding fixed (c)`."""
    return (
        f"against base {base}: {_plural(len(new), 'new violation')}"
        + (f" ({', '.join(new)})" if new else "")
        + f", {_plural(len(fixed), 'finding')} fixed"
        + (f" ({', '.join(fixed)})" if fixed else "")
    )


def run_scenario(argv: Sequence[str]) -> int:
    import importlib
    import importlib.util

    try:
        present = importlib.util.find_spec("devdax.scenario.cli") is not None
    except ModuleNotFoundError:
        present = False
    if not present:  # absent, not broken: a broken module should show its traceback
        raise UsageError("scenario: devdax.scenario.cli is not available in this tree")
    mod = importlib.import_module("devdax.scenario.cli")
    return int(mod.main(list(argv)))


# ----------------------------------------------------------------------------------- all ----


def run_all(a: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from devdax.summary import Row, jobs, render_table, run_jobs, to_json

    live = not (a.json or a.quiet) and hasattr(err, "isatty") and err.isatty()
    t0 = time.perf_counter()
    processes = a.jobs if a.jobs is not None else len(os.sched_getaffinity(0))
    running: list[str] = []

    def started(name: str) -> None:
        running.append(name)
        if live:
            err.write(f"\r\x1b[2K  running {', '.join(running)} ...")
            err.flush()

    def progress(name: str) -> ProgressLine:
        return ProgressLine(err, force=live, label=name)

    def done(k: int, n: int, row: Row) -> None:
        running.remove(row.job)
        if _CtrlC.seen:  # pressed during a prove job, where z3 or a __del__ may have eaten it
            raise KeyboardInterrupt
        if a.json or a.quiet:
            return
        if live:
            err.write("\r\x1b[2K")
        states = f"{row.states:,} states, " if row.states is not None else ""
        err.write(
            f"[{k:>{len(str(n))}}/{n}] {'ok  ' if row.ok else 'FAIL'} {row.job}: {row.result} "
            f"({states}{row.seconds:.1f} s; {time.perf_counter() - t0:.0f} s elapsed)\n"
        )
        err.flush()

    try:
        with _ctrl_c():
            todo = jobs(prove=not a.skip_prove)
            rows = run_jobs(todo, on_start=started, progress=progress, on_done=done, processes=processes)
    except KeyboardInterrupt:
        err.write(f"\ndevdax: interrupted after {time.perf_counter() - t0:.0f} s; the rows above are final\n")
        return EXIT_INTERRUPTED
    if live:
        err.write("\r\x1b[2K")
    ok = all(r.ok for r in rows)
    if a.json:
        _emit(json.dumps(to_json(rows, time.perf_counter() - t0), indent=1), out)
    else:
        render_table(rows, time.perf_counter() - t0, out)
    return EXIT_PASS if ok else EXIT_VIOLATION


# ---------------------------------------------------------------------------------- main ----


def _main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        # prove and scenario own their command lines: hand them everything after the subcommand
        if args and args[0] in ("prove", "scenario", "conformance"):
            try:
                if args[0] == "conformance":
                    from devdax.conformance.cli import main as conformance_main

                    return int(conformance_main(args[1:]))
                return run_prove(args[1:], out) if args[0] == "prove" else run_scenario(args[1:])
            except SystemExit as exc:  # their argparse exits on --help
                return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        a = parser().parse_args(args)
        if a.cmd is None:
            parser().print_help(out)
            return EXIT_USAGE
        if a.cmd == "check":
            return run_check(a, out, err)
        if a.cmd == "variants":
            return run_variants(a, out)
        if a.cmd == "explain":
            return run_explain(a, out)
        if a.cmd == "all":
            return run_all(a, out, err)
        if a.cmd == "graph":
            from devdax.picture import run_graph

            try:
                _emit(run_graph(build_config(a)[0], a.dot, a.svg), out)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            return EXIT_PASS
        raise UsageError(f"unknown command {a.cmd!r}")
    except UsageError as exc:
        err.write(f"devdax: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:  # a subcommand with nothing of its own to report (prove: lines so far)
        err.write(f"\ndevdax: interrupted (exit {EXIT_INTERRUPTED})\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_PASS


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """The command line never ends in a traceback: an error no command turned into its own message is
    one line and exit status 2. DEVDAX_TRACEBACK=1 shows the traceback, for a bug report."""
    try:
        return _main(argv, out, err)
    except Exception as exc:  # the last resort, by design
        if os.environ.get("DEVDAX_TRACEBACK"):
            raise
        (err or sys.stderr).write(
            f"devdax: internal error: {type(exc).__name__}: {exc} (DEVDAX_TRACEBACK=1 shows where)\n"
        )
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
