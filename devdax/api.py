"""The Python API a driver author's own tests call (docs/api.md): load a profile file, check it,
prove it, run a scenario on it, replay a counterexample.

    from devdax import api

    pf = api.load_profile("my-change.toml")
    report = api.check(pf.path)               # the same run and text as `devdax check --profile ...`
    assert report.passed, report.text
    assert api.check(variant="no-synchronize").caught("no_entry_after_kill")

Every report carries the text the command line prints (counterexamples included, with snippets that
load the profile file they ran on), so a failing assertion reads like the CLI. The pytest plugin
(devdax/plugin.py) wraps these in fixtures. Why a layer over the CLI's functions rather than over
model/ directly: the verdict rules (documented findings, the drift rule, a file against its base)
live in one place, devdax/cli.py, and the API must not judge differently from the command.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devdax import cli
from devdax.model.checker import CheckResult
from devdax.model.render import render_violation
from devdax.model.trace import replay as _replay
from devdax.profile_file import ProfileFile, ProfileFileError, is_profile_file, load_profile, replayable
from devdax.spec.config import Config
from devdax.spec.profiles import DEFAULT_PROFILE
from devdax.spec.state import State

Profile = str | ProfileFile


@dataclass(frozen=True)
class CheckReport:
    """One `devdax check`: its verdict, the printed text and the explored result."""

    profile: str
    variant: str | None
    config: Config
    result: CheckResult
    exit_code: int
    text: str

    @property
    def passed(self) -> bool:
        """The profile's verdict is pass (a variant: it was not caught)."""
        return self.exit_code == cli.EXIT_PASS

    @property
    def violated(self) -> list[str]:
        return sorted(self.result.violations)

    def caught(self, invariant: str) -> bool:
        return invariant in self.result.violations

    def counterexample(self, invariant: str) -> str:
        """The shortest trace that breaks `invariant`, as `devdax check` prints it, with its snippet."""
        v = self.result.violations[invariant]
        text = render_violation(self.config, v, self.variant or self.profile)
        return replayable(text, self.profile) if is_profile_file(self.profile) else text


@dataclass(frozen=True)
class ProveReport:
    profile: str
    variant: str | None
    exit_code: int
    text: str
    statuses: dict[str, str] = field(default_factory=dict)  # obligation -> proved/violated/finding/unknown

    @property
    def passed(self) -> bool:
        return self.exit_code == cli.EXIT_PASS


@dataclass(frozen=True)
class ScenarioReport:
    file: str
    profile: str
    outcomes: list[str]
    expect: list[str] | None
    exit_code: int
    text: str

    @property
    def passed(self) -> bool:
        return self.exit_code == cli.EXIT_PASS


def _name(profile: Profile | None) -> str | None:
    if isinstance(profile, ProfileFile):
        return profile.path
    if profile is not None and is_profile_file(profile):
        load_profile(profile)
    return profile


def _argv(bounds: dict[str, object]) -> list[str]:
    """check's bound options from keyword arguments: files=1 -> --files 1, fork=True -> --fork."""
    out: list[str] = []
    for k, v in bounds.items():
        opt = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out += [opt] if v else []
        elif isinstance(v, tuple | list):
            out += [opt, ",".join(map(str, v))]
        else:
            out += [opt, str(v)]
    return out


def check(profile: Profile | None = None, /, **options: object) -> CheckReport:
    """`devdax check` in-process. Options are check's as keywords (variant="M21", files=1,
    race=True, device_aligns=("2M", "1G"), max_states=10_000, no_symmetry=True). A bad argument
    raises ValueError with the CLI's one-line message."""
    variant = options.pop("variant", None)
    if variant is not None and not isinstance(variant, str):
        raise ValueError(f"variant: expected a variant name, got {variant!r}")
    name = _name(profile)
    argv = ["check"] + (["--profile", name] if name else []) + (["--variant", variant] if variant else [])
    argv += _argv(options)
    try:
        a = cli.parser().parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        cfg, own, res = cli.explore(a, err)
        code = cli.verdict(a, cfg, own, res, out)
    except cli.UsageError as exc:
        raise ValueError(str(exc)) from None
    return CheckReport(cfg.profile, variant, cfg, res, code, out.getvalue())


def prove(
    profile: Profile | None = None,
    *,
    variant: str | None = None,
    timeout: float | None = None,
    only: Sequence[str] = (),
) -> ProveReport:
    """`devdax prove` in-process: every obligation of the profile (a file too), or of a variant."""
    name = _name(profile)
    if name is None and variant is not None:
        name = cli.variant_base(variant)
    out = io.StringIO()
    code, statuses = cli.prove_profile(name or DEFAULT_PROFILE, variant, timeout, list(only), out)
    return ProveReport(name or DEFAULT_PROFILE, variant, code, out.getvalue(), statuses)


def run_scenario(path: str | Path, profile: Profile | None = None, backend: str = "spec") -> ScenarioReport:
    """One scenario file on one backend (spec by default); `profile` replaces the file's own."""
    from devdax.scenario import format as fmt
    from devdax.scenario.cli import backend as make_backend
    from devdax.scenario.cli import mismatch_line, with_profile

    name = _name(profile)
    sc = fmt.load(Path(path))
    if name is not None:
        sc = with_profile(sc, name, backend)
    outs = list(make_backend(backend).run(sc))
    fmt.check_outcomes(sc, outs)
    lines = [mismatch_line(sc, i, o) for i, o in enumerate(outs)]
    text = "\n".join(x for x in lines if x)
    code = cli.EXIT_VIOLATION if any(lines) else cli.EXIT_PASS
    expect = list(sc.expect) if sc.expect is not None else None
    return ScenarioReport(str(path), sc.profile, outs, expect, code, text)


def replay(
    config: Config,
    steps: Sequence[tuple[str, tuple[object, ...], str]],
    *,
    symmetry: bool = True,
    reduce: bool = True,
) -> list[State]:
    """Replay a counterexample's steps (a snippet's `steps`) through the spec; the states it visits.
    A profile file named by config.profile must have been loaded (load_profile) first."""
    return _replay(config, list(steps), symmetry=symmetry, reduce=reduce)


__all__ = [
    "CheckReport",
    "ProfileFile",
    "ProfileFileError",
    "ProveReport",
    "ScenarioReport",
    "check",
    "load_profile",
    "prove",
    "replay",
    "run_scenario",
]
