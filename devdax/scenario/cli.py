"""`devdax scenario run|diff`: run scenario files on one backend, or compare backends step by step.

Backends: `spec` (the spec's prediction, devdax.scenario.spec_backend) and `impl` (the emulation,
devdax.scenario.impl_backend, which imports devdax.impl: only the CLI and tests may). Output is one
JSON object per step and a summary line (docs/scenario-format.md, Output); with `expect` present the exit
status is 1 if any outcome differs. Usage errors exit 2 with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from devdax.scenario import format as fmt

BACKENDS = ("spec", "impl", "kernel")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"devdax scenario: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def backend(name: str) -> fmt.Backend:
    if name == "spec":
        from devdax.scenario.spec_backend import SpecBackend

        return SpecBackend()
    if name == "impl":
        mod = importlib.import_module("devdax.scenario.impl_backend")
        b: fmt.Backend = mod.ImplBackend()
        return b
    if name == "kernel":
        from devdax.scenario.kernel_backend import KernelBackend

        return KernelBackend()
    raise ValueError(f"--backend: expected one of {', '.join(BACKENDS)}, got {name!r}")


def _recorded() -> dict[tuple[str, str], dict[int, str]]:
    """(kernel line, file name) -> step -> the recorded kernel outcome."""
    from devdax.conformance import record

    out: dict[tuple[str, str], dict[int, str]] = {}
    for r in record.load():
        out.setdefault((r.linux, r.file), {})[r.step] = r.kernel
    return out


def _files(paths: Sequence[str]) -> list[fmt.Scenario]:
    out: list[fmt.Scenario] = []
    for p in paths:
        path = Path(p)
        out.extend(fmt.load_all(path) if path.is_dir() else [fmt.load(path)])
    return out


RUN_EXAMPLES = """examples:
  devdax scenario run tests/scenarios/                 every scenario, on the spec
  devdax scenario run --backend impl FILE.json         on the emulation
  devdax scenario run --profile ./my-change.toml FILE  the spec of a profile file (docs/profile-files.md)

A step whose outcome differs from `expect` is named on stderr with the expected value.
exit status: 0 as expected (or no expect), 1 a mismatch, 2 usage or a bad file (named with its step),
3 the kernel backend could set up none of the scenarios"""


def with_profile(sc: fmt.Scenario, name: str, backend_name: str) -> fmt.Scenario:
    """The scenario run on another profile (--profile): a name, or a loaded profile file, which only
    the spec backend knows."""
    from devdax.profile_file import is_profile_file, load_profile

    if is_profile_file(name):
        if backend_name != "spec":
            raise ValueError(f"--profile: a profile file runs on the spec backend only, not {backend_name}")
        load_profile(name)
    elif name not in fmt.PROFILES:
        raise ValueError(
            f"--profile: expected one of {', '.join(fmt.PROFILES)} or a .toml file, got {name!r}"
        )
    return dataclasses.replace(sc, profile=name)


def mismatch_line(sc: fmt.Scenario, i: int, got: str) -> str:
    """`FILE step 3 (mmap): got ENXIO, expected OK`, or "" when step i is as expected."""
    if sc.expect is None or sc.expect[i] == got:
        return ""
    return f"{sc.file} step {i} ({sc.steps[i].op}): got {got}, expected {sc.expect[i]}"


def main(argv: Sequence[str]) -> int:
    ap = _Parser(
        prog="devdax scenario", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser(
        "run",
        help="run scenarios on one backend",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--backend", default="spec", choices=BACKENDS)
    run.add_argument(
        "--profile", help="run on this profile (a name or a .toml profile file) instead of the file's"
    )
    run.add_argument("files", nargs="+", help="scenario files or folders")
    diff = sub.add_parser(
        "diff",
        help="run on several backends and show where they disagree",
        epilog="example:\n  devdax scenario diff --backends spec,impl,kernel tests/scenarios/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("--backends", default="spec,impl")
    diff.add_argument("files", nargs="+")
    args = ap.parse_args(list(argv))
    try:
        scenarios = _files(args.files)
        if not scenarios:
            raise ValueError(f"no scenario files in {', '.join(args.files)}")
        if args.cmd == "run":
            if args.profile is not None:
                scenarios = [with_profile(sc, args.profile, args.backend) for sc in scenarios]
            return _run(backend(args.backend), scenarios)
        return _diff(args.backends, scenarios)
    except (OSError, ValueError) as e:
        print(f"devdax scenario: error: {e}", file=sys.stderr)
        return 2


def _outcomes(b: fmt.Backend, sc: fmt.Scenario) -> list[str]:
    """One backend's outcomes; its errors name the file (a ScenarioError names the step too)."""
    try:
        outs = b.run(sc)
    except fmt.ScenarioError:
        raise
    except (OSError, ValueError) as e:
        raise ValueError(f"scenario {sc.file}: {type(b).__name__}: {e}") from None
    fmt.check_outcomes(sc, outs)
    return outs


def _run(b: fmt.Backend, scenarios: Sequence[fmt.Scenario]) -> int:
    """Exit 0/1 as the format says; 3 when the kernel backend could set up none of the scenarios."""
    results = []
    not_run = 0
    for sc in scenarios:
        outs = _outcomes(b, sc)
        reason = getattr(b, "skip_reason", None)
        if reason:
            not_run += 1
            print(f"devdax scenario: {sc.file}: not run: {reason}", file=sys.stderr)
        for i, (st, o) in enumerate(zip(sc.steps, outs, strict=True)):
            print(json.dumps(fmt.step_record(sc, i, st.op, o)))
            if line := mismatch_line(sc, i, o):
                print(f"devdax scenario: {line}", file=sys.stderr)
        results.append((sc, outs))
    print(fmt.summary_line(results))
    return 3 if not_run == len(scenarios) else fmt.exit_status(results)


def _diff(backends: str, scenarios: Sequence[fmt.Scenario]) -> int:
    names = [n.strip() for n in backends.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--backends: name at least one of {', '.join(BACKENDS)}")
    # in a diff, `kernel` means the recorded runs (tests/kernel-results/), one column per kernel
    live = [n for n in names if n != "kernel"]
    bs = [backend(n) for n in live]
    recorded = _recorded() if "kernel" in names else {}
    names = live + [f"kernel-{linux}" for linux in sorted({k[0] for k in recorded})]
    disagreements = 0
    print(f"{'scenario':42} {'step':>4} {'op':10} " + " ".join(f"{n:11}" for n in names))
    for sc in scenarios:
        rows = [_outcomes(b, sc) for b in bs]
        for col in names[len(bs) :]:
            rec = recorded.get((col.removeprefix("kernel-"), Path(sc.file).name), {})
            rows.append([rec.get(i, "-") for i in range(len(sc.steps))])
        for i, st in enumerate(sc.steps):
            outs = [r[i] for r in rows]
            exp = sc.expect[i] if sc.expect else None
            if len(set(outs)) > 1 or (exp is not None and any(o != exp for o in outs)):
                disagreements += 1
                tail = f"  expect {exp}" if exp is not None else ""
                print(
                    f"{Path(sc.file).stem[:42]:42} {i:>4} {st.op:10} "
                    + " ".join(f"{o:11}" for o in outs)
                    + tail
                )
    print(f"{len(scenarios)} scenarios, {disagreements} disagreements")
    return 1 if disagreements else 0
