"""The `devdax` command: a thin layer over spec/ and model/ (and proofs/, scenario/).

    devdax check [--profile P | --variant V] [bounds...] [--json] [--quiet]
    devdax variants [--json]
    devdax explain NAME
    devdax prove ...          (devdax.proofs.cli)
    devdax scenario ...       (devdax.scenario.cli)
    devdax all [--json] [--skip-prove]

Exit status, for every subcommand: 0 pass, 1 violation (or an expectation not met), 2 usage error.
A usage error is one line, compiler style: `devdax: error: --cpus: expected a non-negative integer,
got 'x'`.

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
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import IO, Any, NoReturn

from devdax.model.checker import CheckResult, check
from devdax.model.render import (
    config_brief,
    config_source,
    pack,
    render_violation,
    summary_line,
    variant_report,
)
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import ALIGN_NAMES
from devdax.spec.profiles import DEFAULT_PROFILE, PROFILES
from devdax.spec.variants import VARIANTS, default_config, finding_configs, variant_config

EXIT_PASS, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2


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
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PROFILES)}, got {text!r}")
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
EPILOG = "exit status: 0 pass, 1 violation (or an expectation not met), 2 usage error"


def _option_of(field: str) -> str:
    inverse = {v: k for k, v in FLAGS.items()}
    return "--" + inverse.get(field, field).replace("_", "-")


# ------------------------------------------------------------------------------- parser ----


def parser() -> Parser:
    # Over 50 lines on purpose: one declarative table of every subcommand and option, read top to
    # bottom like --help; split into pieces it would be harder to check against the docs.
    p = Parser(
        prog="devdax",
        description="Executable reference semantics of Linux device-DAX lifetime.",
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)

    c = sub.add_parser(
        "check",
        help="explore every interleaving of a bounded configuration",
        epilog=EPILOG,
        description="Breadth-first exploration of every interleaving; prints the shortest "
        "counterexample of each violated invariant.",
    )
    c.add_argument(
        "--profile", type=_profile, help=f"kernel profile (default {DEFAULT_PROFILE}): " + ", ".join(PROFILES)
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
    c.add_argument("--json", action="store_true", help="one JSON object, traces in ITF")
    c.add_argument("--quiet", action="store_true", help="verdict only, no progress")
    c.add_argument("--svg", metavar="FILE", help="draw the counterexample as a sequence diagram (SVG)")
    c.add_argument("--mermaid", metavar="FILE", help="the same diagram as Mermaid text")

    v = sub.add_parser("variants", help="list the bug variants")
    v.add_argument("--json", action="store_true")

    e = sub.add_parser("explain", help="what an invariant, variant, profile, action or step is")
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
        epilog="exit status: 0 iff every job met its expectation, 1 otherwise",
    )
    a.add_argument("--json", action="store_true")
    a.add_argument("--skip-prove", action="store_true")
    a.add_argument("--quiet", action="store_true", help="no progress lines")
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

    def __call__(self, states: int, frontier: int, depth: int, seconds: float) -> None:
        if not self.enabled:
            return
        rate = states / seconds if seconds > 0 else 0.0
        self.stream.write(
            f"\r\x1b[2K{self.label}  {states:>10,} states  {rate:>9,.0f} states/s  "
            f"frontier {frontier:>9,}  depth {depth:>3}  {seconds:6.1f} s"
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
        f"{res.seconds:.2f} s ({res.states_per_second:,.0f} states/s)"
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
        base = default_config(a.profile or DEFAULT_PROFILE)
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


def run_check(a: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    cfg, own = build_config(a)
    ctx = Ctx.of(cfg)
    show = not (a.json or a.quiet)
    progress = ProgressLine(err) if show else None
    res = check(
        ctx, symmetry=not a.no_symmetry, reduce=not a.no_reduction, max_states=a.max_states, progress=progress
    )
    if progress is not None:
        progress.done()
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
    j = _Judged.of(prof.name, prof.findings, own, res)
    code = EXIT_VIOLATION if j.failed else EXIT_PASS
    if json_out:
        _emit(json.dumps(_profile_json(cfg, prof.name, res, j), indent=1), out)
        return code
    lines = [] if quiet else _profile_header(cfg, own, prof.name, prof.summary)
    lines += _profile_findings(cfg, prof.name, res, j, quiet, symmetry=symmetry, reduce=reduce)
    lines.append(j.verdict_line(res))
    if not quiet:
        lines.append(stats_line(res))
    _emit("\n".join(lines), out)
    return code


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


def run_prove(argv: Sequence[str]) -> int:
    from devdax.proofs.cli import main as prove_main

    return int(prove_main(list(argv)))


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
    from devdax.summary import jobs, render_table, run_jobs, to_json

    live = not (a.json or a.quiet) and hasattr(err, "isatty") and err.isatty()
    t0 = time.perf_counter()

    def started(name: str) -> None:
        if live:
            err.write(f"\r\x1b[2K  running {name} ...")
            err.flush()

    def progress(name: str) -> ProgressLine:
        return ProgressLine(err, force=live, label=name)

    rows = run_jobs(jobs(prove=not a.skip_prove), on_start=started, progress=progress)
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
                return run_prove(args[1:]) if args[0] == "prove" else run_scenario(args[1:])
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
