"""A driver change as a file: a TOML profile that names a base profile and overrides what the change
touches (docs/profile-files.md).

    base = "modern"                      # v4.7, v4.10 or modern (spec/profiles.py)
    summary = "unbind without the grace period"
    fixed = ["no_null_deref"]            # base findings this change claims to remove

    [programs]                           # create, create_failed, remove, bind, unbind: step lists
    unbind = ["clear_alive", "unmap_mapping_range!", "cdev_del"]

    [switches]                           # any other field of spec/profiles.py Profile
    open_private_null_when_dead = false

    [fault_rules]                        # spec/geometry.py FaultRules
    fallback = true

    [findings]                           # new documented findings: invariant = reason
    no_entry_after_kill = "we accept this, because ..."

    [steps.dax_open_check]               # a step spec/admin.py does not have yet
    guards = "cdev_add"                  # or replaces = "...": it runs as that existing step

    [config]                             # bounds of the default check (spec/config.py Config)
    files = 1

Why a file and not a Python object: a driver author writes down a change to the teardown order in
the kernel's own step names, and every counterexample can name the file so that it replays. The
profile is registered under its path (spec/profiles.py EXTRA_PROFILES), which is what Config.profile
carries: `Config(profile="./my-change.toml")` replays once `load_profile` has read the file.
"""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from devdax.spec.admin import STEPS
from devdax.spec.config import Config
from devdax.spec.geometry import FaultRules
from devdax.spec.invariants import INVARIANTS
from devdax.spec.profiles import EXTRA_PROFILES, PROFILES, Profile
from devdax.spec.variants import default_config

PROGRAMS = ("create", "create_failed", "remove", "bind", "unbind")
#: Profile fields a file may not set as switches: they are the file's own keys, or its identity
NOT_SWITCHES = {"name", "summary", "source", "findings", "fault_rules", *PROGRAMS}
TOP_KEYS = ("base", "summary", "fixed", "programs", "switches", "fault_rules", "findings", "steps", "config")
#: Config fields a file's [config] table may set: the bounds, not the profile or the mmap shapes
CONFIG_KEYS = ("devices", "files", "vmas", "cpus", "faults", "units", "ranges", "generations", "binds")
CONFIG_FLAGS = ("fork", "open_rdonly", "munmap_parts", "add_failure", "race", "syscalls")


class ProfileFileError(ValueError):
    """A bad profile file: one line naming the file, the key and what it allows."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}")
        self.path, self.key = path, key


@dataclass(frozen=True)
class NewStep:
    """A step the change needs and spec/admin.py lacks, modelled as the existing step it stands for."""

    name: str
    relation: str  # "replaces" or "guards"
    existing: str
    why: str


@dataclass(frozen=True)
class ProfileFile:
    """What a profile file says, with the profile built from it (registered under `path`)."""

    path: str
    base: Profile
    profile: Profile
    config: Config
    added: dict[str, str]  # findings the file documents on top of the base's
    fixed: tuple[str, ...]  # base findings the file says the change removes
    new_steps: dict[str, NewStep]


def is_profile_file(name: str) -> bool:
    """`--profile` takes a file when the name ends in .toml or contains a '/' (docs/profile-files.md)."""
    return name.endswith(".toml") or "/" in name


def _one_of(values: Any) -> str:
    names = [str(v) for v in values]
    return f"one of {', '.join(names)}" if len(names) > 1 else names[0]


def _got(v: object) -> str:
    return f"got {v!r}"


def _table(path: str, doc: dict[str, Any], key: str) -> dict[str, Any]:
    t = doc.get(key, {})
    if not isinstance(t, dict):
        raise ProfileFileError(path, key, f"expected a table [{key}], {_got(t)}")
    return t


def _switch(path: str, base: Profile, key: str, value: object) -> object:
    """A switch value, converted to the type of the base profile's field."""
    allowed = [f.name for f in fields(Profile) if f.name not in NOT_SWITCHES]
    if key not in allowed:
        raise ProfileFileError(path, f"switches.{key}", f"unknown switch; expected {_one_of(allowed)}")
    cur = getattr(base, key)
    if isinstance(cur, Enum):
        kinds = [m.value for m in type(cur)]
        if value not in kinds:
            raise ProfileFileError(path, f"switches.{key}", f"expected {_one_of(kinds)}, {_got(value)}")
        return type(cur)(value)
    if isinstance(cur, bool):
        if not isinstance(value, bool):
            raise ProfileFileError(path, f"switches.{key}", f"expected true or false, {_got(value)}")
        return value
    if key == "minor_freed_at" and value not in ("unregister", "release"):
        raise ProfileFileError(path, f"switches.{key}", f"expected one of unregister, release, {_got(value)}")
    return value


def _steps(path: str, doc: dict[str, Any]) -> dict[str, NewStep]:
    out: dict[str, NewStep] = {}
    for name, spec in _table(path, doc, "steps").items():
        key = f"steps.{name}"
        if name in STEPS:
            raise ProfileFileError(path, key, "spec/admin.py has this step already; use it in a program")
        if not isinstance(spec, dict) or len({"replaces", "guards"} & set(spec)) != 1:
            raise ProfileFileError(
                path, key, "expected a table with one of replaces, guards = an existing step"
            )
        rel = "replaces" if "replaces" in spec else "guards"
        existing = spec[rel]
        if existing not in STEPS:
            raise ProfileFileError(path, f"{key}.{rel}", f"expected an existing step, {_got(existing)}")
        unknown = set(spec) - {"replaces", "guards", "why"}
        if unknown:
            raise ProfileFileError(
                path, f"{key}.{sorted(unknown)[0]}", "unknown key; expected replaces, guards, why"
            )
        out[name] = NewStep(name, rel, existing, str(spec.get("why", "")))
    return out


def _program(path: str, key: str, value: object, new: dict[str, NewStep]) -> tuple[str, ...]:
    """A step list in spec/admin.py's names; a new step runs as the existing one it stands for."""
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise ProfileFileError(path, f"programs.{key}", f"expected a list of step names, {_got(value)}")
    out = []
    for e in value:
        bare, bang = e.rstrip("!"), "!" if e.endswith("!") else ""
        if bare in new:
            out.append(new[bare].existing + bang)
        elif bare in STEPS:
            out.append(e)
        else:
            raise ProfileFileError(
                path,
                f"programs.{key}",
                f"unknown step {e!r}; expected {_one_of(sorted(STEPS))} "
                "(or declare it under [steps.NAME] with replaces/guards)",
            )
    return tuple(out)


def _findings(path: str, doc: dict[str, Any], base: Profile) -> tuple[dict[str, str], tuple[str, ...]]:
    added = _table(path, doc, "findings")
    for k, why in added.items():
        if k not in INVARIANTS:
            raise ProfileFileError(
                path, f"findings.{k}", f"unknown invariant; expected {_one_of(INVARIANTS)}"
            )
        if not isinstance(why, str) or not why:
            raise ProfileFileError(path, f"findings.{k}", f"expected the reason as a string, {_got(why)}")
    fixed = doc.get("fixed", [])
    if not isinstance(fixed, list) or any(f not in base.findings for f in fixed):
        raise ProfileFileError(path, "fixed", f"expected a list of {_one_of(base.findings or ['(none)'])}")
    return dict(added), tuple(fixed)


def _config(path: str, doc: dict[str, Any], base_cfg: Config) -> Config:
    t = _table(path, doc, "config")
    for k, v in t.items():
        if k in CONFIG_KEYS and (isinstance(v, bool) or not isinstance(v, int)):
            raise ProfileFileError(path, f"config.{k}", f"expected a non-negative integer, {_got(v)}")
        if k in CONFIG_FLAGS and not isinstance(v, bool):
            raise ProfileFileError(path, f"config.{k}", f"expected true or false, {_got(v)}")
        if k not in CONFIG_KEYS and k not in CONFIG_FLAGS:
            raise ProfileFileError(
                path, f"config.{k}", f"unknown bound; expected {_one_of(CONFIG_KEYS + CONFIG_FLAGS)}"
            )
    try:
        return replace(base_cfg, profile=path, **t)
    except ValueError as exc:
        raise ProfileFileError(path, "config", str(exc)) from None


def parse(path: str, text: str) -> ProfileFile:
    """The profile a file's text describes. Raises ProfileFileError (a ValueError) naming the key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileFileError(path, "syntax", str(exc)) from None
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise ProfileFileError(path, unknown[0], f"unknown key; expected {_one_of(TOP_KEYS)}")
    if doc.get("base") not in PROFILES:
        raise ProfileFileError(path, "base", f"expected {_one_of(PROFILES)}, {_got(doc.get('base'))}")
    base = PROFILES[doc["base"]]
    new = _steps(path, doc)
    changes: dict[str, Any] = {k: _switch(path, base, k, v) for k, v in _table(path, doc, "switches").items()}
    for k, v in _table(path, doc, "programs").items():
        if k not in PROGRAMS:
            raise ProfileFileError(path, f"programs.{k}", f"unknown program; expected {_one_of(PROGRAMS)}")
        changes[k] = _program(path, k, v, new)
    rules = _table(path, doc, "fault_rules")
    names = [f.name for f in fields(FaultRules)]
    for k, v in rules.items():
        if k not in names or not isinstance(v, bool):
            raise ProfileFileError(
                path, f"fault_rules.{k}", f"expected one of {', '.join(names)} = true|false"
            )
    if rules:
        changes["fault_rules"] = replace(base.fault_rules, **rules)
    added, fixed = _findings(path, doc, base)
    findings = {k: v for k, v in base.findings.items() if k not in fixed} | added
    summary = doc.get("summary", f"{base.name} changed by {path}")
    prof = base.with_(
        name=path, summary=str(summary), source=f"{path} (base {base.name})", findings=findings, **changes
    )
    return ProfileFile(path, base, prof, _config(path, doc, default_config(base.name)), added, fixed, new)


def load_profile(path: str | Path) -> ProfileFile:
    """Read, check and register a profile file under `path` as given, so that Config(profile=path)
    and every replay of its counterexamples find it."""
    name = str(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileFileError(name, "file", exc.strerror or str(exc)) from None
    pf = parse(name, text)
    EXTRA_PROFILES[name] = pf.profile
    LOADED[name] = pf
    return pf


#: every file loaded in this process, by the name it was given (the CLI's --profile value)
LOADED: dict[str, ProfileFile] = {}


def loaded(name: str) -> ProfileFile | None:
    return LOADED.get(name)


def replayable(text: str, path: str) -> str:
    """Each pasteable snippet of a rendered report (indented too, as `prove` prints them under their
    obligation) made to load the profile file it ran on first: its Config names the file's path,
    which only a loaded file resolves."""
    from devdax.model.render import SNIPPET_BEGIN, SNIPPET_END

    def fix(m: re.Match[str]) -> str:
        pad, code = m.group(1), textwrap.dedent(m.group(2))
        if "load_profile(" not in code:
            code = code.replace("\n\n\n", "\nfrom devdax.api import load_profile\n\n\n", 1)
            code = re.sub(
                r"(\ndef test_\w+\(\) -> None:\n)", rf"\1    load_profile({json.dumps(path)})\n", code
            )
        body = textwrap.indent(code, pad, lambda line: bool(line.strip()))
        return f"{pad}{SNIPPET_BEGIN}\n{body}\n{pad}{SNIPPET_END}"

    pattern = r"^([ \t]*)" + re.escape(SNIPPET_BEGIN) + r"\n(.*?)\n\1" + re.escape(SNIPPET_END)
    return re.sub(pattern, fix, text, flags=re.S | re.M)


__all__ = [
    "NewStep",
    "ProfileFile",
    "ProfileFileError",
    "is_profile_file",
    "load_profile",
    "loaded",
    "parse",
    "replayable",
]
