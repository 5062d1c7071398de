"""The catalog of named things in the spec, and docs/reference.md generated from it.

`devdax explain NAME` and the reference page answer the same question ("what is X and where does it
come from in the kernel?"), so both read this one catalog, which reads the spec itself: profiles and
their switches, admin programs, every action (the names spec/system.py gives transitions), every
admin step (spec.admin.STEPS), every invariant and every variant. Nothing is restated by hand; a
docstring changed in spec/ changes the page, and tests/model/test_render.py fails until the
committed page is regenerated (tests/test_docs.py checks every generated doc):

    python -m devdax.docgen --write
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from devdax import reftables
from devdax.spec import admin, fault, file, geometry, kobject, mapping, system, vma
from devdax.spec.admin import STEPS
from devdax.spec.config import Config
from devdax.spec.invariants import INVARIANTS, Invariant
from devdax.spec.outcomes import CALLS, TITLES
from devdax.spec.profiles import DEFAULT_PROFILE, PROFILES, Profile
from devdax.spec.variants import PROFILE_CONFIGS, VARIANTS, Variant, variant_config

#: actions that are not spec functions of the same name
ACTION_FUNCS: dict[str, Callable[..., object]] = {}
_MODULES = (file, vma, fault, mapping)
#: self-loop actions without a function of their own (spec/system.py yields them inline)
INLINE_ACTIONS = {
    "read": "read(2)/write(2) on a device-dax fd: dax_fops has no .read/.write, so -EINVAL. Never "
    "changes state.",
    "ioctl": "ioctl(2): dax_fops has no .unlocked_ioctl, so -ENOTTY. Never changes state.",
    "admin": "One step of the admin program in progress (probe, remove, bind, unbind, create_failed); "
    "see the admin steps.",
}


def action_names() -> list[str]:
    """Every action name spec/system.py gives a transition, in the order it yields them."""
    src = inspect.getsource(system)
    seen: dict[str, None] = {}
    for m in re.finditer(r'Transition\("([a-z_]+)"', src):
        seen.setdefault(m.group(1), None)
    return list(seen)


def action_func(name: str) -> Callable[..., object] | None:
    """The spec function behind an action: `open` -> file.do_open, `fault_lock` -> fault.fault_lock,
    `madvise` -> vma.do_madvise_dontfork."""
    if name in ACTION_FUNCS:
        return ACTION_FUNCS[name]
    for mod in _MODULES:
        for cand in (f"do_{name}", name):
            fn = getattr(mod, cand, None)
            if callable(fn):
                return fn  # type: ignore[no-any-return]
        for attr in dir(mod):
            if attr.startswith(f"do_{name}_") and callable(getattr(mod, attr)):
                return getattr(mod, attr)  # type: ignore[no-any-return]
    return None


def doc_of(obj: object) -> str:
    return " ".join((inspect.getdoc(obj) or "").split())


def where(obj: object, line: bool = True) -> str:
    """`spec/admin.py:123`: where the definition lives, relative to the repository (without the
    line in the generated reference, which must not change whenever code above it moves)."""
    try:
        path = Path(inspect.getsourcefile(obj) or "")  # type: ignore[arg-type]
        lineno = inspect.getsourcelines(obj)[1]  # type: ignore[arg-type]
    except (TypeError, OSError):
        return ""
    parts = path.parts
    for anchor in ("spec", "model", "proofs", "impl"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[i:]) + (f":{lineno}" if line else "")
    return path.name + (f":{lineno}" if line else "")


# ------------------------------------------------------------------------------ entries ----


@dataclass(frozen=True)
class Entry:
    kind: str  # invariant | variant | profile | action | admin step | spec function
    name: str
    text: str  # what `devdax explain` prints


def _switches(p: Profile) -> list[tuple[str, str]]:
    out = []
    for f in dataclasses.fields(p):
        if f.name in (
            "name",
            "summary",
            "source",
            "findings",
            "create",
            "create_failed",
            "remove",
            "bind",
            "unbind",
        ):
            continue
        v = getattr(p, f.name)
        out.append((f.name, v.value if isinstance(v, Enum) else str(v)))
    return out


def _programs(p: Profile) -> list[tuple[str, str]]:
    return [
        (n, " -> ".join(getattr(p, n)) or "-")
        for n in ("create", "create_failed", "remove", "bind", "unbind")
        if getattr(p, n)
    ]


def explain_invariant(inv: Invariant) -> str:
    lines = [f"invariant {inv.name}  ({inv.kind})", f"  source: {inv.source}", *_wrap(inv.doc)]
    fn = inv.check or inv.step
    if fn is not None and where(fn):
        lines.append(f"  defined in {where(fn)}")
    docs = [f"{p.name} ({p.findings[inv.name]})" for p in PROFILES.values() if inv.name in p.findings]
    if docs:
        lines.append("  documented finding of: " + "; ".join(docs))
    breakers = [v.name for v in VARIANTS.values() if inv.name in v.breaks]
    if breakers:
        lines.append("  variants that must break it: " + ", ".join(breakers))
    return "\n".join(lines)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), 100, initial_indent="  ", subsequent_indent="  ")


def config_text(cfg: Config) -> str:
    from devdax.model.render import config_source

    return config_source(cfg)


def explain_variant(v: Variant) -> str:
    from devdax.model.render import change_text

    lines = [
        f"variant {v.name}: {v.title}",
        f"  source:  {v.source}",
        f"  profile: {v.base.name} with {change_text(v)}",
        f"  config:  {config_text(variant_config(v))}",
        f"  breaks:  {', '.join(v.breaks)}  (at least one must be violated)",
    ]
    if v.notes:
        lines.append(f"  notes:   {' '.join(v.notes.split())}")
    lines.append(f"  run:     devdax check --variant {v.name}")
    return "\n".join(lines)


def explain_profile(p: Profile) -> str:
    lines = [f"profile {p.name}: {p.summary}", f"  source: {p.source}", "  switches:"]
    lines += [f"    {k} = {v}" for k, v in _switches(p)]
    lines.append("  admin programs:")
    lines += [f"    {k}: {v}" for k, v in _programs(p)]
    if p.findings:
        lines.append("  documented findings:")
        lines += [f"    {k}: {v}" for k, v in p.findings.items()]
    else:
        lines.append("  documented findings: none (every invariant must hold)")
    if p.name in PROFILE_CONFIGS:
        lines.append(f"  default config: {config_text(PROFILE_CONFIGS[p.name])}")
    return "\n".join(lines)


def explain_func(kind: str, name: str, fn: object) -> str:
    lines = [f"{kind} {name}", *_wrap(doc_of(fn) or "(no docstring)")]
    if where(fn):
        lines.append(f"  defined in {where(fn)}")
    if kind == "admin step":
        users = [
            f"{p.name}.{prog}"
            for p in PROFILES.values()
            for prog, body in (
                ("create", p.create),
                ("create_failed", p.create_failed),
                ("remove", p.remove),
                ("bind", p.bind),
                ("unbind", p.unbind),
            )
            if any(e.rstrip("!") == name for e in body)
        ]
        if users:
            lines.append("  used by: " + ", ".join(users))
    return "\n".join(lines)


def explain_outcomes(call: str) -> str:
    """Every outcome of a user call in check order, as `devdax explain mmap` prints it."""
    title = TITLES.get(call, f"{call}()")
    anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    lines = [f"outcomes of {title}, first matching row decides (docs/reference.md#{anchor}):"]
    for i, row in enumerate(CALLS[call], 1):
        when = (f"({row.profile}) " if row.profile != "modern" else "") + row.condition
        lines += textwrap.wrap(
            f"{i:2}. {row.outcome:<10} {when} [{row.source}]",
            100,
            initial_indent="  ",
            subsequent_indent=" " * 17,
        )
    return "\n".join(lines)


def catalog() -> dict[str, list[Entry]]:
    """Every name `devdax explain` knows, with what it prints (a name may be two things)."""
    out: dict[str, list[Entry]] = {}

    def add(kind: str, name: str, text: str) -> None:
        out.setdefault(name, []).append(Entry(kind, name, text))

    for inv in INVARIANTS.values():
        add("invariant", inv.name, explain_invariant(inv))
    for v in VARIANTS.values():
        add("variant", v.name, explain_variant(v))
    for p in PROFILES.values():
        add("profile", p.name, explain_profile(p))
    for call in CALLS:  # before the action of the same name: what a user asks first
        add("outcomes", call, explain_outcomes(call))
    for a in action_names():
        fn = action_func(a)
        if fn is not None:
            add("action", a, explain_func("action", a, fn))
        elif a in INLINE_ACTIONS:
            add("action", a, f"action {a}\n  {INLINE_ACTIONS[a]}")
    for s, fn in STEPS.items():
        add("admin step", s, explain_func("admin step", s, fn))
    known = set(out)
    for mod in (admin, *_MODULES, geometry, kobject):
        for attr, fn in vars(mod).items():
            if (
                attr.startswith("_")
                or attr in known
                or not inspect.isfunction(fn)
                or fn.__module__ != mod.__name__
                or not inspect.getdoc(fn)
            ):
                continue
            add("spec function", attr, explain_func("spec function", attr, fn))
    return out


def explain(name: str) -> str | None:
    """The text for NAME (several entries if it names several things), or None. A fused action
    ("fault_lock+fault_check") is explained part by part."""
    cat = catalog()
    if name in cat:
        return "\n\n".join(e.text for e in cat[name])
    if "+" in name and all(p in cat for p in name.split("+")):
        return "\n\n".join(e.text for p in name.split("+") for e in cat[p])
    return None


# ----------------------------------------------------------------------------- reference ----


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    """docs/reference.md: every profile, program, action, step, invariant and variant."""
    # Over 50 lines on purpose: the document's outline, section by section in reading order; each
    # section's content comes from a helper or straight from spec/.
    L: list[str] = [
        "# devdax reference",
        "",
        "Generated from spec/ by `python -m devdax.docgen --write`; do not edit by hand "
        "(tests/test_docs.py checks that this file is current). `devdax explain NAME` prints any "
        "entry below. Contents: [profiles](#profiles), [actions](#actions), "
        "[outcomes of each call](#outcomes-of-each-call) (what errno `mmap` gives, and why), "
        "[objects and their references](#objects-and-their-references), "
        "[teardown programs](#teardown-programs), [admin steps](#admin-steps), "
        "[invariants](#invariants), [reading a counterexample](#reading-a-counterexample), "
        "[variants](#variants); each variant's and each profile finding's shortest trace is in "
        "[counterexamples.md](counterexamples.md), the reasoning in [semantics.md](semantics.md).",
        "",
        "## Profiles",
        "",
        f"The default profile is `{DEFAULT_PROFILE}`.",
    ]
    for p in PROFILES.values():
        L += [
            "",
            f"### {p.name}",
            "",
            p.summary + ".",
            "",
            f"Source: {p.source}.",
            "",
            "| switch | value |",
            "|---|---|",
        ]
        L += [f"| `{k}` | {_md(v)} |" for k, v in _switches(p)]
        L += ["", "Admin programs (`!` marks the step that completes the kill):", ""]
        L += [f"- **{k}**: {v}" for k, v in _programs(p)]
        none = "Documented findings: none; every invariant holds."
        L += ["", "Documented findings:" if p.findings else none, ""]
        L += [f"- `{k}`: {_md(v)}" for k, v in p.findings.items()]
        if p.name in PROFILE_CONFIGS:
            L += [
                "",
                f"Default configuration of `devdax check --profile {p.name}`: "
                f"`{config_text(PROFILE_CONFIGS[p.name])}`.",
            ]
    L += [
        "",
        "## Actions",
        "",
        "Each transition of the state machine is one of these (spec/system.py). The "
        "explorer fuses adjacent fault steps of one CPU (model/reduction.py), so a trace may show "
        "`fault_lock+fault_check`.",
        "",
    ]
    for a in action_names():
        fn = action_func(a)
        text = doc_of(fn) if fn is not None else INLINE_ACTIONS.get(a, "")
        loc = f" ({where(fn, False)})" if fn is not None and where(fn) else ""
        L.append(f"- **`{a}`**{loc}: {_md(text)}")
    L += ["", *reftables.outcome_section(), *reftables.objects_section(), *reftables.teardown_section()]
    L += ["## Admin steps", "", "The steps the admin programs above are made of (spec/admin.py).", ""]
    for s, fn in STEPS.items():
        L.append(f"- **`{s}`** ({where(fn, False)}): {_md(doc_of(fn))}")
    L += ["", "## Invariants", "", "| name | kind | source | statement |", "|---|---|---|---|"]
    for inv in INVARIANTS.values():
        L.append(f"| `{inv.name}` | {inv.kind} | {_md(inv.source)} | {_md(' '.join(inv.doc.split()))} |")
    L += ["", *_reading_section()]
    L += [
        "",
        "## Variants",
        "",
        "Each is caught by `devdax check --variant NAME`; its expected "
        "counterexample is tests/golden/NAME.txt.",
        "",
    ]
    from devdax.model.render import change_text

    for v in VARIANTS.values():
        L += [
            f"### {v.name}",
            "",
            f"{v.title}.",
            "",
            f"- source: {v.source}",
            f"- profile: `{v.base.name}` with {_md(change_text(v))}",
            f"- configuration: `{config_text(variant_config(v))}`",
            f"- must break one of: {', '.join(f'`{b}`' for b in v.breaks)}",
            f"- shortest counterexample and its picture: "
            f"[counterexamples.md](counterexamples.md#{v.name.lower()})",
        ]
        if v.notes:
            L.append(f"- notes: {_md(' '.join(v.notes.split()))}")
        L.append("")
    return "\n".join(L).rstrip("\n") + "\n"


EXAMPLE_VARIANT = "no-synchronize"


def _reading_section() -> list[str]:
    """How to read what `devdax check` prints, shown on the shortest variant's real output."""
    from devdax.model.checker import check
    from devdax.model.render import variant_report
    from devdax.spec.ctx import Ctx

    v = VARIANTS[EXAMPLE_VARIANT]
    cfg = variant_config(v)
    report = variant_report(v, cfg, check(Ctx.of(cfg)))
    return [
        "## Reading a counterexample",
        "",
        f"`devdax check --variant {v.name}` prints the variant, then for each property it breaks the "
        "shortest trace: numbered steps (the actor, the spec function with its arguments, `->` its "
        "outcome; fused fault steps read `fault_lock+fault_check` with outcomes joined by `/`), under "
        "each step only what changed (`dax0` is device instance 0 as the invariants name it; the line "
        "that allocates its id names its node, `/dev/dax0.0`), then the invariant's message, its "
        "statement, and a pytest test that replays the trace (`devdax.model.trace.replay`) and asserts "
        "that the invariant still breaks. `--json` gives the same traces in Apalache's ITF.",
        "",
        "Exit status of every command: 0 pass, 1 violation (or an expectation not met), 2 usage error "
        "(one line: `devdax: error: --cpus: expected a non-negative integer, got 'x'`).",
        "",
        "```",
        *report.rstrip("\n").splitlines(),
        "```",
    ]


#: every generated doc, by its path in the repository, and the function that writes it
GENERATED: dict[str, Callable[[], str]] = {
    "docs/reference.md": reference,
    "docs/counterexamples.md": reftables.counterexamples,
}


def main(argv: list[str] | None = None) -> int:
    """`python -m devdax.docgen` prints docs/reference.md; `--write` rewrites every generated doc."""
    if argv and argv[0] == "--write":
        root = Path(__file__).resolve().parents[1]
        for name, make in GENERATED.items():
            (root / name).write_text(make())
        return 0
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
