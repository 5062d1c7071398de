"""`devdax conformance [--kernel 6.1|6.12|7.2|all] [FILES...] [--json] [--record] [--update-known]`.

Runs the scenario files on real Debian kernels under QEMU and compares the spec and the
emulation (impl) with what each kernel did. Prints a progress line per boot and a table per kernel;
with ``--json`` one object per step instead. ``--record`` writes tests/kernel-results/<release>/,
``--update-known`` rewrites the list of known disagreements from this run (keeping notes).
``--module device_dax.ko --profile FILE.toml`` boots one kernel with a patched device_dax (make
patched-module) and compares it with the spec under the profile file that states the patch; such a
run is labelled <line>+<tag> and recorded under tests/kernel-results/patched/.

Exit status: 0 ran and every disagreement is a known one; 1 a disagreement not in
tests/kernel-results/disagreements.json; 2 usage; 3 no kernel could be fetched and booted.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from devdax.conformance import boot, kernels, record
from devdax.scenario import format as fmt
from devdax.spec.profiles import CURRENT_PROFILE, kernel_profile

SCENARIOS = record.RESULTS.parent / "scenarios"
NEEDS = ("qemu-system-x86_64", "busybox", "ndctl")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"devdax conformance: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _kernel_names(arg: str) -> list[str]:
    names = list(kernels.KERNELS) if arg == "all" else [arg]
    for n in names:
        if n not in kernels.KERNELS:
            raise ValueError(f"--kernel: expected one of {', '.join(kernels.KERNELS)} or all, got {n!r}")
    return names


def _tools_present() -> bool:
    """QEMU, busybox and ndctl, or a line saying which are missing (the caller exits 3)."""
    missing = [t for t in NEEDS if shutil.which(t) is None]
    if missing:
        _say(f"devdax conformance: cannot boot: {', '.join(missing)} not installed (make conformance-setup)")
    return not missing


def predictions(
    scenarios: Sequence[fmt.Scenario], linux: str | None = None, profile: str | None = None
) -> dict[tuple[str, str], list[str]]:
    """spec and impl outcome lists per scenario file; a backend that raises is a visible error. For
    a kernel line, a scenario that names the current profile runs under that kernel's profile
    (spec/profiles.py kernel_profile: linux-6.1, linux-6.12, linux-7.2). A loaded profile file
    (``profile``, a patched kernel's) replaces it, on the spec alone: impl implements only the
    named profiles."""
    from devdax.scenario.cli import backend

    out: dict[tuple[str, str], list[str]] = {}
    for name in ("spec",) if profile else ("spec", "impl"):
        b = backend(name)
        for sc in scenarios:
            if linux is not None and sc.profile == CURRENT_PROFILE:
                sc = dataclasses.replace(sc, profile=profile or kernel_profile(linux))
            out[(name, Path(sc.file).name)] = b.run(sc)
    return out


def compare_kernels(
    rows: Sequence[record.Recorded],
    scenarios: Sequence[fmt.Scenario],
    kernels: Sequence[str],
    profile: str | None = None,
) -> tuple[list[record.Disagreement], dict[str, dict[tuple[str, str], list[str]]]]:
    """Each kernel's recordings against the predictions under its own profile (or ``profile``)."""
    preds = {n: predictions(scenarios, n.split("+")[0], profile) for n in kernels}
    found = [d for n in kernels for d in record.compare([r for r in rows if r.linux == n], preds[n])]
    return found, preds


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="devdax conformance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kernel", default="6.1", help="6.1, 6.12, 7.2 or all (default 6.1)")
    ap.add_argument("files", nargs="*", help="scenario files or folders (default: tests/scenarios)")
    ap.add_argument("--json", action="store_true", help="one JSON object per step")
    ap.add_argument("--record", action="store_true", help="write tests/kernel-results/<release>/")
    ap.add_argument("--update-known", action="store_true", help="rewrite disagreements.json from this run")
    ap.add_argument("--recorded", action="store_true", help="compare with the recordings instead of booting")
    ap.add_argument(
        "--exec",
        metavar="COMMAND",
        help="instead of scenarios: run a shell command on one "
        "carved device ({dev}, {namespace} are substituted); e.g. a reproducer",
    )
    ap.add_argument("--align", default="2M", help="with --exec: the device's alignment (4K, 2M, 1G)")
    ap.add_argument("--size", default="64M", help="with --exec: the device's size")
    ap.add_argument(
        "--module", metavar="KO", help="boot one kernel with this device_dax.ko (make patched-module)"
    )
    ap.add_argument(
        "--profile", metavar="FILE", help="with --module: the profile file the spec predicts with"
    )
    ap.add_argument(
        "--tag", default="fixes", help="with --module: the run's label, <line>+TAG (default fixes)"
    )
    return ap


def _patched(args: argparse.Namespace, names: Sequence[str]) -> tuple[Path, str] | None:
    """--module and --profile, checked: (the module, the loaded profile's name), or None."""
    if args.module is None:
        if args.profile is not None:
            raise ValueError("--profile: only with --module (a patched kernel's predictions)")
        return None
    ko = Path(args.module)
    if args.recorded:
        raise ValueError("--module: not with --recorded (it boots the scenarios with the module)")
    if len(names) != 1 or not ko.is_file() or args.profile is None:
        raise ValueError("--module: one --kernel, an existing .ko file and a --profile file are needed")
    from devdax.conformance.module import vermagic
    from devdax.profile_file import ProfileFileError, load_profile

    release = vermagic(ko).split()[0]
    if not release.startswith(names[0] + "."):
        raise ValueError(f"--module: {ko} is built for {release}, not a {names[0]} kernel")
    try:
        pf = load_profile(args.profile)
    except (ProfileFileError, OSError) as e:
        raise ValueError(f"--profile: {e}") from None
    return ko, pf.profile.name


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if args.exec is not None:
        if args.module is not None:
            print("devdax conformance: error: --module: not with --exec", file=sys.stderr)
            return 2
        return _exec(args)
    try:
        names = _kernel_names(args.kernel)
        paths = [Path(p) for p in args.files] or [SCENARIOS]
        files: list[Path] = []
        for p in paths:
            files += sorted(p.glob("*.json")) if p.is_dir() else [p]
        scenarios = [fmt.load(f) for f in files]
        if not scenarios:
            raise ValueError(f"no scenario files in {', '.join(map(str, paths))}")
        patched = _patched(args, names)
    except (OSError, ValueError) as e:
        print(f"devdax conformance: error: {e}", file=sys.stderr)
        return 2
    if args.recorded:
        rows, booted = _recorded_rows(names, files)
    else:
        if not _tools_present():
            return 3
        module = (patched[0], args.tag) if patched else None
        rows, booted = _live_rows(names, files, len(scenarios), record_them=args.record, module=module)
    if not booted:
        _say("devdax conformance: no kernel could be fetched and booted")
        return 3
    found, preds = compare_kernels(rows, scenarios, booted, patched[1] if patched else None)
    if args.update_known:  # entries of kernels and files this run did not cover are kept
        record.write_known(found, covered={(r.linux, r.file) for r in rows})
    listed = record.known()
    new = [d for d in found if d.key not in listed]
    if args.json:
        _print_json(rows, scenarios, [f.name for f in files], preds, found)
    else:
        _table(booted, rows, found, new)
    return 1 if new else 0


def _print_json(
    rows: Sequence[record.Recorded],
    scenarios: Sequence[fmt.Scenario],
    names: list[str],
    preds: dict[str, dict[tuple[str, str], list[str]]],
    found: Sequence[record.Disagreement],
) -> None:
    """--json: one object per recorded step, with both predictions and whether they agree."""
    by_step = {(d.linux, d.file, d.step, d.backend) for d in found}
    for r in rows:
        sc = scenarios[names.index(r.file)]
        obj: dict[str, object] = {
            "scenario": sc.name,
            "file": r.file,
            "step": r.step,
            "op": r.op,
            "linux": r.linux,
            "kernel": r.kernel,
            "detail": r.detail,
            "spec": preds[r.linux][("spec", r.file)][r.step],
            "impl": preds[r.linux][("impl", r.file)][r.step],
        }
        if sc.expect is not None:
            obj["expect"] = sc.expect[r.step]
        obj["agree"] = not any((r.linux, r.file, r.step, b) in by_step for b in ("spec", "impl"))
        print(json.dumps(obj))


def _live_rows(
    names: Sequence[str],
    files: Sequence[Path],
    count: int,
    record_them: bool,
    module: tuple[Path, str] | None = None,
) -> tuple[list[record.Recorded], list[str]]:
    """Boot each kernel and run the files; returns the rows and the kernels that booted. With
    ``module`` (a device_dax.ko and a tag) the kernel loads that module and its rows are labelled
    <line>+<tag>, recorded under tests/kernel-results/patched/<release>+<tag>/."""
    # Over 50 lines on purpose: one kernel's fetch, boot, run and record in order, each with the
    # one-line reason it was skipped; the loop body is the whole story of a kernel.
    _say(
        f"devdax conformance: {count} scenarios, kernels {', '.join(names)}, "
        f"QEMU accelerator {boot.accelerator().upper()}"
    )
    rows: list[record.Recorded] = []
    booted: list[str] = []
    for n in names:
        try:
            k = kernels.fetch(n)
        except (kernels.FetchError, OSError) as e:
            _say(f"{n}: SKIPPED, could not fetch the kernel: {e}")
            continue
        label = f"{n}+{module[1]}" if module else n
        if module:
            k = dataclasses.replace(k, module=module[0].resolve())
            _say(f"{label}: device_dax from {module[0]} ({record.file_hash(module[0])})")
        _say(f"{label}: {k.package} ({k.release})")
        try:
            work = kernels.cache_dir() / "runs" / label
            runs, _ = boot.run(k, [str(f.resolve()) for f in files], work, _say)
        except (boot.BootError, OSError) as e:
            _say(f"{n}: SKIPPED, {e}")
            continue
        booted.append(label)
        mine = [
            record.Recorded(
                label,
                f.name,
                record.file_hash(f),
                i,
                s.op,
                s.outcome,
                f"{record.SETUP}{r.skip}" if r.skip else s.detail,
            )
            for f, r in zip(files, runs, strict=True)
            for i, s in sorted(r.steps.items())
        ]
        rows += mine
        if record_them:
            _record(label, k, mine, module)
    return rows, booted


def _record(
    label: str, k: kernels.Kernel, rows: Sequence[record.Recorded], module: tuple[Path, str] | None
) -> None:
    """Write one kernel's rows: tests/kernel-results/<release>/, or patched/<release>+<tag>/."""
    meta: dict[str, object] = {
        "kernel": label,
        "release": k.release,
        "package": k.package,
        "recorded": datetime.date.today().isoformat(),
        "accelerator": boot.accelerator(),
    }
    release, where = k.release, record.RESULTS
    if module:
        meta["module"] = f"device_dax.ko {record.file_hash(module[0])} ({module[0].name})"
        release, where = f"{k.release}+{module[1]}", record.PATCHED
    _say(f"{label}: recorded in {record.write(release, meta, rows, where)}")


def _recorded_rows(names: Sequence[str], files: Sequence[Path]) -> tuple[list[record.Recorded], list[str]]:
    """``--recorded``: the recordings stand in for a run (no boot), e.g. to re-check spec and impl."""
    wanted = {f.name for f in files}
    rows = [r for r in record.load() if r.linux in names and r.file in wanted]
    booted = sorted({r.linux for r in rows}, key=list(names).index)
    for n in names:
        if n not in booted:
            _say(f"{n}: SKIPPED, no recording of these files")
    return rows, booted


def _exec(args: argparse.Namespace) -> int:
    """`--exec`: each kernel boots once and runs the command; exit 0 when it exited 0 everywhere
    without an oops, 1 otherwise, 3 when no kernel booted."""
    try:
        names = _kernel_names(args.kernel)
        align, size = fmt.parse_size(args.align), fmt.parse_size(args.size)
        if align not in fmt.ALIGNS:
            raise ValueError(f"--align: expected 4K, 2M or 1G, got {args.align!r}")
    except ValueError as e:
        print(f"devdax conformance: error: {e}", file=sys.stderr)
        return 2
    if not _tools_present():
        return 3
    booted, clean = 0, True
    for n in names:
        try:
            k = kernels.fetch(n)
            res = boot.run_command(
                k, args.exec, align, size, str(Path.cwd()), kernels.cache_dir() / "runs" / n, _say
            )
        except (kernels.FetchError, boot.BootError, OSError) as e:
            _say(f"{n}: SKIPPED, {e}")
            continue
        booted += 1
        print(f"== {n} ({k.package}): {res.command or args.exec}")
        if res.output:
            print(res.output.rstrip())
        where = " during teardown (namespace destroyed)" if res.during_teardown else ""
        print(
            f"-- exit {res.rc if res.rc is not None else '-'}"
            + (f"; OOPS{where}: {res.oops}" if res.oops else "")
        )
        clean = clean and res.rc == 0 and res.oops is None
    if not booted:
        return 3
    return 0 if clean else 1


def _table(
    booted: Sequence[str],
    rows: Sequence[record.Recorded],
    found: Sequence[record.Disagreement],
    new: Sequence[record.Disagreement],
) -> None:
    head = ("kernel", "scenarios", "steps", "OOPS", "spec agrees", "impl agrees", "new")
    print(f"{head[0]:8} {head[1]:>9} {head[2]:>6} {head[3]:>5} {head[4]:>14} {head[5]:>14} {head[6]:>4}")
    for n in booted:
        mine = [r for r in rows if r.linux == n and not record.not_run(r)]
        steps = sum(r.step >= 0 for r in mine)  # teardown rows (step -1) count only as oopses
        cells = []
        for b in ("spec", "impl"):
            bad = sum(1 for d in found if d.linux == n and d.backend == b)
            cells.append(f"{steps - bad}/{steps}" if b == "spec" or "+" not in n else "-")
        print(
            f"{n:8} {len({r.file for r in mine}):>9} {steps:>6} {sum(r.kernel == 'OOPS' for r in mine):>5} "
            f"{cells[0]:>14} {cells[1]:>14} {sum(1 for d in new if d.linux == n):>4}"
        )
    for f in sorted({(r.linux, r.file, r.detail) for r in rows if record.not_run(r)}):
        print(f"NOT RUN {f[0]} {f[1]}: {f[2]}")
    for d in new:
        print(f"NEW {d.linux} {d.file} step {d.step} {d.op}: kernel {d.kernel}, {d.backend} {d.predicted}")
    print(
        f"{len(found)} disagreements, {len(found) - len(new)} known "
        f"(tests/kernel-results/disagreements.json), {len(new)} new"
    )
