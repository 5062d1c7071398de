"""The reference's tables for people, each read from the spec: outcomes, references, teardown.

* Outcomes of each call: spec/outcomes.py's rows (checked against the rules by their witnesses in
  tests/test_docs.py), with the kernels that were recorded giving that outcome for that call
  (tests/kernel-results/, matched on call name and outcome).
* Objects and their references: not restated by hand but observed. One device's life is run
  through the spec (probe, open, mmap, a fault, a fork's copy, unbind/bind, remove, munmap, close)
  and every count that a step raises or lowers is listed with that step, so the table follows
  spec/admin.py and spec/kobject.py whenever they change.
* Teardown programs: each profile's programs from spec/profiles.py, a step's reason from
  spec/teardown.py, and the variants that reorder the program.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devdax.spec import admin
from devdax.spec.config import Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.fault import fault_check, fault_insert, fault_lock, fault_unlock
from devdax.spec.file import do_close, do_open
from devdax.spec.mapping import mapping_release
from devdax.spec.outcomes import CALLS, TITLES, Row
from devdax.spec.profiles import PROFILES, Profile
from devdax.spec.state import State
from devdax.spec.system import init
from devdax.spec.teardown import PROGRAMS, WHY
from devdax.spec.variants import VARIANTS
from devdax.spec.vma import do_fork, do_mmap, do_munmap

# ------------------------------------------------------------------------------ outcomes ----


def recorded_outcomes() -> dict[tuple[str, str], set[str]]:
    """(call, outcome) -> the kernels recorded giving it, from tests/kernel-results/ (none when the
    recordings are not there, as in an installed package)."""
    from devdax.conformance import record

    seen: dict[tuple[str, str], set[str]] = {}
    for r in record.load():
        seen.setdefault((r.op, r.kernel), set()).add(r.linux)
    return seen


def _kernels(linuxes: Iterable[str]) -> str:
    return ", ".join(sorted(linuxes, key=lambda k: tuple(int(x) for x in k.split(".")))) or "not recorded"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def outcome_section() -> list[str]:
    """## Outcomes of each call: one table per call, rows in the kernel's check order."""
    seen = recorded_outcomes()
    L = [
        "## Outcomes of each call",
        "",
        "Every way each call on `/dev/daxX.Y` ends, in the order the kernel checks (the first row "
        "whose condition holds decides), from spec/outcomes.py. Each row has a witness, a scenario "
        "whose last step ends that way, which tests/test_docs.py runs through the spec; "
        "`devdax scenario run FILE` runs one of your own. Rows are for `modern` (Linux 6.x) unless "
        "they name a profile. *Recorded on* lists the kernels that were recorded giving this "
        "outcome for this call in the scenario suite (tests/kernel-results/, matched on the call "
        "and the outcome, not on the condition). The reasoning is in "
        "[semantics.md](semantics.md).",
        "",
    ]
    for call, rows in CALLS.items():
        title = TITLES.get(call, f"{call}()")
        L += [
            f"### {title}",
            "",
            "| # | outcome | when | decided in | recorded on |",
            "|---|---|---|---|---|",
        ]
        for i, row in enumerate(rows, 1):
            when = (f"({row.profile}) " if row.profile != "modern" else "") + row.condition
            kernels = (
                _kernels(seen.get((call, row.outcome), ()))
                if row.profile == "modern"
                else f"- ({row.profile} only; the recordings are of 6.x and 7.x)"
            )
            L.append(f"| {i} | `{row.outcome}` | {_md(when)} | `{_md(row.source)}` | {kernels} |")
        extra = sorted(o for (op, o) in seen if op == call and o not in {r.outcome for r in rows} | SKIPS)
        if extra:
            L += [
                "",
                f"Also recorded, where the spec predicts otherwise: {', '.join(extra)} "
                "(tests/kernel-results/disagreements.json).",
            ]
        L.append("")
    return L


#: scenario outcomes that are not the call's own: a step after an oops, or whose handle never was
SKIPS = {"skipped", "mismatch"}


def witness_scenario(call: str, i: int, row: Row) -> dict[str, object]:
    """The scenario a row's witness is, in the format `devdax scenario run` reads."""
    return {
        "format": "devdax-scenario/1",
        "name": f"{call} row {i + 1}: {row.outcome}",
        "source": row.source,
        "profile": row.profile,
        **row.setup,
        "steps": [dict(s) for s in row.witness],
    }


# ---------------------------------------------------------------------------- references ----


@dataclass
class Count:
    """One count of one object, and the steps seen raising or lowering it."""

    obj: str
    what: str
    read: Callable[[State], int]
    up: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)


def _counts() -> list[Count]:
    d0 = 0
    return [
        Count("region", "kref", lambda s: s.regions[0].kref),
        Count("region", "instance ids in its ida", lambda s: bin(s.regions[0].ida).count("1")),
        Count("device", "struct device kobject (dev_ref)", lambda s: s.devs[d0].dev_ref),
        Count("device", "v4.7 dax_dev kref", lambda s: s.devs[d0].kref),
        Count("device", "region reference held", lambda s: int(s.devs[d0].holds_region)),
        Count("device", "minor held in dax_minor_ida", lambda s: int(s.devs[d0].minor_held)),
        Count("device", "pseudo-fs inode (inode_ref)", lambda s: s.devs[d0].inode_ref),
        Count("device", "alive", lambda s: int(s.devs[d0].alive)),
        Count(
            "device",
            "mappingN children (registered + pending release)",
            lambda s: s.devs[d0].children + s.devs[d0].zombies,
        ),
        Count("cdev", "cdev kobject (cdev_ref)", lambda s: s.devs[d0].cdev_ref),
        Count("cdev", "in kobj_map (open can find it)", lambda s: int(s.devs[d0].cdev_mapped)),
        Count("file", "f_count", lambda s: sum(f.f_count for f in s.files)),
        Count("vma", "vmas", lambda s: sum(v.file >= 0 for v in s.vmas)),
        Count("entry", "installed page-table entries", lambda s: len(s.entries)),
    ]


def _admin(c: Ctx, s: State, prog: str, arg: int, seen: Callable[[str, State, State], None]) -> State:
    """Run an admin program step by step as admin.run_program does, reporting every step."""
    a = s.admin
    generation = a.generation + 1 if prog == "probe" else a.generation
    s = admin._finish(c, s._replace(admin=a._replace(prog=prog, dev=arg, pc=0, generation=generation)))
    while s.admin.prog:
        name, _, _, nxt = admin.admin_steps(c, s)[0]
        seen(f"{prog}: {name}", s, nxt)
        s = nxt
    return s


def _user(
    label: str, s: State, res: tuple[str, State] | None, seen: Callable[[str, State, State], None]
) -> State:
    assert res is not None and not res[0].startswith(("E", "OOPS")), (label, res)
    seen(label, s, res[1])
    return res[1]


def _fault(c: Ctx, s: State, seen: Callable[[str, State, State], None]) -> State:
    s = _user("fault (dev_dax_huge_fault)", s, fault_lock(c, s, 0, 0, s.vmas[0].start), lambda *_: None)
    while s.cpus[0].pc:
        for step in (fault_check, fault_insert, fault_unlock):
            res = step(c, s, 0)
            if res is not None:
                s = _user(f"fault: {step.__name__}", s, res, seen)
                break
    return s


def life_of_one_device(profile: str) -> list[Count]:
    """Which step raises and which lowers each count, over one device's whole life in the spec."""
    # Over 50 lines on purpose: the life is one sequence of calls, read top to bottom.
    cfg = Config(
        profile=profile,
        files=2,
        vmas=2,
        cpus=1,
        faults=1,
        first_fault="pmd",
        binds=1,
        mmaps=(MmapShape("shared-rw"),),
    )
    c = Ctx.of(cfg)
    counts = _counts()

    def seen(label: str, before: State, after: State) -> None:
        for k in counts:
            a, b = k.read(before), k.read(after)
            if b > a and label not in k.up:
                k.up.append(label)
            if b < a and label not in k.down:
                k.down.append(label)

    s = _admin(c, init(c), "probe", 0, seen)
    if c.prof.bind_cycles:
        # before any open: a file held across a re-bind is finding F2, and the device then leaks
        s = _admin(c, s, "unbind", 0, seen)
        s = _admin(c, s, "bind", 0, seen)
    s = _user("open", s, do_open(c, s, 0, True), seen)
    s = _user("mmap", s, do_mmap(c, s, 0, cfg.mmaps[0]), seen)
    s = _fault(c, s, seen)
    s = _user("fork (the child's copy of the vma)", s, do_fork(c, s, 0), seen)
    s = _user("munmap (the child exits)", s, do_munmap(c, s, 1, "all"), seen)
    s = _admin(c, s, "remove", 0, seen)
    while (res := mapping_release(c, s, 0)) is not None:
        s = _user("mapping_release (a mappingN child's release)", s, res, seen)
    s = _user("munmap", s, do_munmap(c, s, 0, "all"), seen)
    s = _user("close (the last fput)", s, do_close(c, s, 0), seen)
    return [k for k in counts if k.up or k.down]


def objects_section() -> list[str]:
    L = [
        "## Objects and their references",
        "",
        "For each profile, every count of each object (region, device, cdev, file, vma, entry) with "
        "the steps that raise it and the steps that drop it. The table is not written by hand: one "
        "device's whole life (probe, modern unbind and bind, open, mmap, a fault, a fork's copy of "
        "the vma and its exit, provider removal, munmap, close) is run through the spec and every "
        "change of a count is recorded with the step that made it; `prog: step` is a step of an "
        "admin program (spec/admin.py), the rest are user calls. Why each holder holds what it holds "
        "is in [semantics.md](semantics.md#objects-and-references). (On modern, a file held across "
        "an unbind and bind never lets the device go: finding F2, variant `rebind-cdev-init`.)",
        "",
    ]
    for name in ("v4.7", "v4.10", "modern"):
        L += [f"### {name}", "", "| object | count | taken by | dropped by |", "|---|---|---|---|"]
        for k in life_of_one_device(name):
            up = "; ".join(k.up) or "-"
            down = "; ".join(k.down) or "-"
            L.append(f"| {k.obj} | {_md(k.what)} | {_md(up)} | {_md(down)} |")
        L.append("")
    return L


# ------------------------------------------------------------------------------ teardown ----


def teardown_section() -> list[str]:
    L = [
        "## Teardown programs",
        "",
        "Each profile's teardown programs (spec/profiles.py) step by step, with why each step is "
        "where it is (spec/teardown.py; the argument is [semantics.md](semantics.md#teardown)). `!` "
        "marks the step that completes the kill. Below each program, the variants that reorder it "
        "and what they break: `devdax check --variant NAME` prints the shortest counterexample.",
        "",
    ]
    for p in PROFILES.values():
        if p.name.startswith("linux-"):
            continue
        L += [f"### {p.name}", ""]
        for prog in PROGRAMS:
            body = getattr(p, prog)
            if not body:
                continue
            L += [f"**{prog}**:", ""]
            for i, entry in enumerate(body, 1):
                step = entry.rstrip("!")
                mark = " (completes the kill)" if entry.endswith("!") else ""
                L.append(f"{i}. `{step}`{mark}: {_md(WHY[step])}")
            wrong = [
                v for v in VARIANTS.values() if v.base.name == p.name and v.changes.get(prog, body) != body
            ]
            if wrong:
                L += ["", "Reordered or changed by:"]
                L += [
                    f"- `{v.name}`: {' -> '.join(_steps(v.changes[prog])) or '(nothing)'}; breaks "
                    f"{', '.join(f'`{b}`' for b in v.breaks)} ({_md(v.title)})"
                    for v in wrong
                ]
            L.append("")
    return L


def _steps(program: object) -> tuple[str, ...]:
    assert isinstance(program, tuple)
    return tuple(str(e) for e in program)


# ------------------------------------------------------------------------ counterexamples ----

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"


def _finding_variant(p: Profile, inv: str, text: str) -> str | None:
    """The variant whose trace shows profile p's finding inv: one named in the finding's text, else
    one built on p's design, else any that breaks it."""
    cands = [v for v in VARIANTS.values() if inv in v.breaks or f"  {inv}: " in _golden(v.name)]
    base = p.name if p.name in ("v4.7", "v4.10") else "modern"
    for pick in (
        [v for v in cands if re.search(rf"\b{re.escape(v.name)}\b", text)],
        [v for v in cands if v.base.name == base and not v.changes],
        [v for v in cands if not v.changes],
    ):
        if pick:
            return pick[0].name
    return None


def _golden(name: str) -> str:
    path = GOLDEN / f"{name}.txt"
    return path.read_text() if path.exists() else ""


def counterexamples() -> str:
    """docs/counterexamples.md: per profile what goes wrong, per variant its shortest trace."""
    L = [
        "# What goes wrong, and the shortest counterexample",
        "",
        "Generated from spec/ and tests/golden/ by `python -m devdax.docgen --write`; do not edit by "
        "hand (tests/test_docs.py checks that it is current). Each trace is exactly what `devdax "
        "check --variant NAME` prints (tests/model/test_render.py checks the goldens against the "
        "checker); [reference.md](reference.md#reading-a-counterexample) says how to read one, and "
        "each picture is the same trace drawn (`--svg`, [pictures.md](pictures.md)).",
        "",
        "## Profiles",
        "",
        "A profile passes when `devdax check --profile NAME` finds exactly its documented findings.",
        "",
    ]
    for p in PROFILES.values():
        L += [f"### {p.name}", ""]
        if not p.findings:
            L += ["No documented finding: every invariant holds.", ""]
            continue
        L += ["| invariant | what goes wrong | shortest counterexample |", "|---|---|---|"]
        for inv, text in p.findings.items():
            shown = _finding_variant(p, inv, text)
            where = f"[`{shown}`](#{shown.lower()})" if shown else f"`devdax check --profile {p.name}`"
            L.append(f"| `{inv}` | {_md(text)} | {where} |")
        L.append("")
    L += ["## Variants", ""]
    for v in VARIANTS.values():
        L += [
            f"### {v.name}",
            "",
            f"{v.title}. Source: {_md(v.source)}. Must break one of {', '.join(f'`{b}`' for b in v.breaks)}.",
            "",
            f"![{v.name}](pictures/{v.name}.svg)",
            "",
            "```",
            *(_golden(v.name).rstrip("\n").splitlines() or ["(no golden yet)"]),
            "```",
            "",
        ]
    return "\n".join(L).rstrip("\n") + "\n"
