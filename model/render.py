"""Counterexamples for people: numbered steps, only what changed, the broken invariant with its
source, and a pytest snippet that replays the trace (model/trace.py).

The explorer stores whole states; a person wants to see what one step did. Each step is printed as
the actor and the spec function with its arguments (`cpu0 fault_lock+fault_check(vma0 @0x7f..,
pmd) -> ok/NOPAGE@pmd`), then one line per object that changed, in the kernel's words (field names
follow spec/state.py, which follows the kernel). Slots are named as the spec's own messages name them
(dax0 is device instance 0, file1 the second open-file slot), so the sentence of the broken invariant
talks about the same objects as the steps above it. Files, vmas and CPUs are renamed by the
explorer's symmetry reduction between steps; a step that only renames shows that as ordinary changes.

Rendering reads records field by field, so a field added to spec/state.py shows up without a change
here; only how a value is spelled (hex addresses, phase names) is special-cased.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable
from dataclasses import MISSING, fields, replace
from typing import Any, NamedTuple

from devdax.model.checker import CheckResult, Step, Violation
from devdax.model.trace import steps_of
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import SIZE_NAMES
from devdax.spec.state import C_IDLE, CPU_PC_NAMES, PHASE_NAMES, RESULT_NAMES, Cpu, Entry, State
from devdax.spec.symmetry import canonical
from devdax.spec.system import init
from devdax.spec.variants import Variant

REGION_PHASES = {0: "none", 1: "live", 2: "gone"}
WIDTH = 100

# ------------------------------------------------------------------------------ values ----


def _hex(v: object) -> str:
    return f"{v:#x}" if isinstance(v, int) else repr(v)


def _bits(mask: int) -> str:
    return "{" + ",".join(str(i) for i in range(mask.bit_length()) if mask >> i & 1) + "}"


def _value(kind: str, name: str, v: object) -> str:
    """One field's value, spelled as a driver author reads it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if name in ("addr", "start", "end", "phys"):
        return _hex(v)
    if name == "phase" and isinstance(v, int):
        return (REGION_PHASES if kind == "region" else PHASE_NAMES).get(v, str(v))
    if name == "pc" and isinstance(v, int):
        return CPU_PC_NAMES.get(v, str(v))
    if name == "result" and isinstance(v, int):
        return RESULT_NAMES.get(v, str(v))
    if name == "size" and isinstance(v, int):
        return SIZE_NAMES.get(v, _hex(v)) if v else "-"
    if name in ("ida", "minors") and isinstance(v, int):
        return _bits(v)
    if name == "vma" and isinstance(v, int):
        return f"vma{v}" if v >= 0 else "-"
    if name in ("file", "dev") and isinstance(v, int):
        return (f"file{v}" if name == "file" else f"dax{v}") if v >= 0 else "-"
    return str(v)


#: ghost fields (not kernel state, bookkeeping of the spec) get words instead of true/false
GHOSTS = {"dead": ("kill undone (re-bound)", "kill complete (ghost)")}


def _changes(kind: str, a: NamedTuple, b: NamedTuple, skip: Iterable[str] = ()) -> list[str]:
    out = []
    for name in b._fields:
        if name in skip:
            continue
        x, y = getattr(a, name, None), getattr(b, name)
        if x == y:
            continue
        if name in GHOSTS and isinstance(y, bool):
            out.append(GHOSTS[name][y])
        else:
            out.append(f"{name} {_value(kind, name, x)} -> {_value(kind, name, y)}")
    return out


def _mode(f: NamedTuple) -> str:
    readable, writable = getattr(f, "readable", True), getattr(f, "writable", False)
    return "O_RDWR" if readable and writable else "O_WRONLY" if writable else "O_RDONLY"


def _vma_text(v: NamedTuple) -> str:
    flags = [
        f
        for f, on in (
            ("VM_SHARED", getattr(v, "shared", False)),
            ("VM_MAYSHARE", getattr(v, "mayshare", False)),
            ("VM_WRITE", getattr(v, "write", False)),
            ("VM_DONTCOPY", getattr(v, "dontcopy", False)),
        )
        if on
    ]
    start, end = getattr(v, "start", 0), getattr(v, "end", 0)
    return (
        f"mapped file{getattr(v, 'file', -1)} [{start:#x}, {end:#x}) pgoff {getattr(v, 'pgoff', 0)} "
        f"{'|'.join(flags) or 'private'}"
    )


def _entry_text(e: Entry) -> str:
    return f"vma{e.vma} {e.addr:#x} {SIZE_NAMES.get(e.size, _hex(e.size))} -> phys {e.phys:#x}"


def _cpu_change(x: Cpu, y: Cpu) -> str:
    """`idle -> checked on vma0 @0x7f0000200000 pmd, nest 0 -> 1, ...`: the fault's target once, and
    no list of fields reset to their defaults when the handler returns to idle."""
    head = f"{_value('cpu', 'pc', x.pc)} -> {_value('cpu', 'pc', y.pc)}" if x.pc != y.pc else ""
    skip = {"pc"}
    if y.vma >= 0 and (x.vma, x.addr, x.size) != (y.vma, y.addr, y.size):
        head += f" on vma{y.vma} @{y.addr:#x} {_value('cpu', 'size', y.size)}"
        skip |= {"vma", "addr", "size"}
    if y.pc == C_IDLE and y.vma < 0:
        head += " (fault handled)" if x.pc != C_IDLE else ""
        skip |= {"vma", "addr", "size", "result", "phys"}
    return ", ".join(([head.strip()] if head else []) + _changes("cpu", x, y, skip=skip))


def diff(a: State, b: State, devices_per_region: int = 0) -> list[str]:
    """What changed from a to b, one line per object, in the order a reader expects: the admin's
    objects (regions, devices), then files, vmas, entries, CPUs, and global state. Given the devices
    per region, the line that gives a device its id also names its node (/dev/daxX.Y)."""
    out: list[str] = []
    for r, (rx, ry) in enumerate(zip(a.regions, b.regions, strict=False)):
        if rx != ry:
            out.append(f"region{r}: " + ", ".join(_changes("region", rx, ry)))
    for d, (dx, dy) in enumerate(zip(a.devs, b.devs, strict=False)):
        if dx != dy:
            ch = _changes("dev", dx, dy)
            if devices_per_region and dx.id < 0 <= dy.id:
                ch = [
                    f"{c} (/dev/dax{d // devices_per_region}.{dy.id})" if c.startswith("id ") else c
                    for c in ch
                ]
            out.append(f"dax{d}: " + ", ".join(ch))
    out += _file_lines(a, b) + _vma_lines(a, b)
    added = sorted(b.entries - a.entries)
    gone = sorted(a.entries - b.entries)
    out += [f"entries: + {_entry_text(e)}" for e in added]
    out += [f"entries: - {_entry_text(e)}" for e in gone]
    for i, (cx, cy) in enumerate(zip(a.cpus, b.cpus, strict=False)):
        if cx != cy:
            out.append(f"cpu{i}: {_cpu_change(cx, cy)}")
    if a.minors != b.minors:
        out.append(f"dax_minor_ida: {_bits(a.minors)} -> {_bits(b.minors)}")
    if a.gp != b.gp:
        out.append("grace period: " + ("started" if b.gp else "ended"))
    if a.admin.prog and not b.admin.prog:
        out.append("admin: idle")
    if a.oops != b.oops:
        out.append(f"oops: {b.oops}")
    return out


def _file_lines(a: State, b: State) -> list[str]:
    out: list[str] = []
    for f, (x, y) in enumerate(zip(a.files, b.files, strict=False)):
        if x == y:
            continue
        if x.dev < 0:
            rest = _changes("file", type(y)(), y, skip=("dev", "writable", "readable", "fd"))
            out.append(f"file{f}: opened (dax{y.dev}, {_mode(y)})" + (", " + ", ".join(rest) if rest else ""))
        elif y.dev < 0:
            out.append(f"file{f}: released (last fput of dax{x.dev})")
        else:
            ch = ["fd closed" if c == "fd true -> false" else c for c in _changes("file", x, y)]
            out.append(f"file{f}: " + ", ".join(ch))
    return out


def _vma_lines(a: State, b: State) -> list[str]:
    out: list[str] = []
    for v, (vx, vy) in enumerate(zip(a.vmas, b.vmas, strict=False)):
        if vx == vy:
            continue
        if vx.file < 0:
            out.append(f"vma{v}: {_vma_text(vy)}")
        elif vy.file < 0:
            out.append(f"vma{v}: unmapped")
        else:
            out.append(f"vma{v}: " + ", ".join(_changes("vma", vx, vy)))
    return out


# ------------------------------------------------------------------------------- steps ----

REGION_STEPS = ("alloc_dax_region", "provider_put", "dax_region_unregister")
USER_ACTIONS = ("open", "close", "mmap", "munmap", "fork", "madvise", "read", "write", "ioctl")


def _arg(a: object) -> str:
    return a if isinstance(a, str) else repr(a)


def step_call(action: str, args: tuple[object, ...]) -> str:
    """The actor and the call: `admin remove(region0): clear_alive(dax0)`, `user mmap(file0,
    shared-rw)`, `cpu1 fault_lock+fault_check(vma0 @0x7f0000200000, pmd)`."""
    first = action.split("+")[0]
    if action == "admin" and len(args) == 4:
        prog, parg, name, sarg = args
        pname = f"region{parg}" if prog in ("probe", "remove") else f"dax{parg}"
        sname = f"region{sarg}" if name in REGION_STEPS else f"dax{sarg}"
        return f"admin {prog}({pname}): {name}({sname})"
    if first.startswith("fault_") and args:
        cpu = f"cpu{args[0]}"
        if first == "fault_lock" and len(args) == 4:
            _, v, addr, size = args
            sz = SIZE_NAMES.get(size, _hex(size)) if isinstance(size, int) else _arg(size)
            return f"{cpu} {action}(vma{v} @{_hex(addr)}, {sz})"
        return f"{cpu} {action}()"
    if first in USER_ACTIONS and args:
        kind = {
            "open": "dax",
            "mmap": "file",
            "close": "file",
            "read": "file",
            "write": "file",
            "ioctl": "file",
        }.get(first, "vma")
        return f"user {action}({kind}{args[0]}" + "".join(f", {_arg(a)}" for a in args[1:]) + ")"
    if action == "mapping_release" and args:
        return f"kernel mapping_release(dax{args[0]})"
    return f"{action}({', '.join(_arg(a) for a in args)})"


def pack(text: str, indent: str, more: str, sep: str = ", ") -> list[str]:
    """Wrap a list of changes at its separators only, so that `phys 0x0 -> 0x1000000000` is never cut
    in half."""
    parts = text.split(sep)
    lines, cur = [], indent + parts[0]
    for p in parts[1:]:
        if len(cur) + len(sep) + len(p) > WIDTH:
            lines.append(cur + sep.rstrip())
            cur = more + p
        else:
            cur += sep + p
    return [*lines, cur]


def render_steps(cfg: Config, trace: list[Step], *, symmetry: bool = True) -> list[str]:
    c = Ctx.of(cfg)
    prev = canonical(init(c)) if symmetry else init(c)
    lines: list[str] = []
    if cfg.race:
        # the race starts with devices probed, opened and mapped: say what exists at step 0
        empty = init(Ctx.of(replace(cfg, race=False)))
        lines.append("   0. initial state (--race: probed, opened and mapped by the spec's own steps)")
        for d in diff(empty, prev, cfg.devices):
            lines += pack(d, " " * 8, " " * 12)
    width = len(str(len(trace)))
    pad = " " * (width + 7)
    for n, st in enumerate(trace, start=1):
        lines.append(f"  {n:>{width + 1}}. {step_call(st.action, st.args)}  -> {st.outcome}")
        for d in diff(prev, st.state, cfg.devices):
            lines += pack(d, pad, pad + "    ")
        prev = st.state
    return lines


# ------------------------------------------------------------------------------ snippet ----


def py(x: object) -> str:
    """Python source for a trace value: addresses in hex, strings in double quotes (as ruff's
    formatter writes them), tuples with their trailing comma."""
    if isinstance(x, bool) or x is None:
        return repr(x)
    if isinstance(x, int):
        return f"{x:#x}" if x >= 0x10000 else str(x)
    if isinstance(x, str):
        return json.dumps(x)
    if isinstance(x, tuple):
        return "(" + ", ".join(py(y) for y in x) + ("," if len(x) == 1 else "") + ")"
    return repr(x)


def _repr_dc(obj: Any, cls_name: str) -> str:
    """A dataclass as a constructor call naming only the fields that differ from the default."""
    parts = []
    for f in fields(obj):
        if not f.init or f.name == "extra":
            continue
        v = getattr(obj, f.name)
        default = (
            f.default
            if f.default is not MISSING
            else (f.default_factory() if f.default_factory is not MISSING else MISSING)
        )
        if f.name == "name" and cls_name == "MmapShape":
            parts.append(py(v))
            continue
        if v == default:
            continue
        if f.name == "mmaps":
            inner = ", ".join(_repr_dc(m, "MmapShape") for m in v)
            parts.append(f"mmaps=({inner}{',' if len(v) == 1 else ''})")
        else:
            parts.append(f"{f.name}={py(v) if not isinstance(v, dict) else repr(v)}")
    return f"{cls_name}({', '.join(parts)})"


def config_brief(cfg: Config, skip: tuple[str, ...] = ("profile", "variant")) -> str:
    """`files=0 vmas=0 mmaps=shared-rw,private-rw`: the fields that differ from Config(), for
    tables (mmap shapes by name)."""
    out = []
    base = Config()
    for f in fields(cfg):
        if f.name in skip or f.name == "extra" or not f.init:
            continue
        v = getattr(cfg, f.name)
        if v == getattr(base, f.name):
            continue
        if f.name == "mmaps":
            out.append("mmaps=" + (",".join(m.name for m in v) or "none"))
        elif isinstance(v, tuple):
            out.append(f"{f.name}=" + ",".join(map(str, v)))
        else:
            out.append(f"{f.name}={_value('config', f.name, v)}")
    return " ".join(out) or "defaults"


def config_source(cfg: Config) -> str:
    """Python source that rebuilds cfg: Config(...) with only the non-default fields."""
    return _repr_dc(cfg, "Config")


def test_name(label: str, invariant: str) -> str:
    return "test_" + re.sub(r"\W+", "_", f"{label}_{invariant}").strip("_")


def snippet(cfg: Config, v: Violation, label: str, *, symmetry: bool = True, reduce: bool = True) -> str:
    """A pytest test that replays the counterexample and asserts that the invariant still breaks:
    the regression test a person pastes after reading the trace. A trace found without symmetry or
    reduction is replayed the same way (its arguments name raw slots and unfused steps)."""
    inv = v.invariant
    opts = ("" if symmetry else ", symmetry=False") + ("" if reduce else ", reduce=False")
    steps = ",\n".join(f"        {py(s)}" for s in steps_of(v))
    uses_mmap = "MmapShape(" in config_source(cfg)
    imports = [
        "from devdax.model.trace import "
        + (
            "can_finish, replay"
            if inv.kind == "liveness"
            else "replay, replay_transitions"
            if inv.kind == "step"
            else "replay"
        ),
        "from devdax.spec.config import Config" + (", MmapShape" if uses_mmap else ""),
    ]
    if inv.kind != "liveness":
        imports += ["from devdax.spec.ctx import Ctx", "from devdax.spec.invariants import INVARIANTS"]
    body = [
        f"def {test_name(label, inv.name)}() -> None:",
        f"    cfg = {config_source(cfg)}",
        f"    steps = [\n{steps},\n    ]",
        f"    states = replay(cfg, steps{opts})",
    ]
    if inv.kind == "state":
        body.append(f"    assert INVARIANTS[{py(inv.name)}].check(Ctx.of(cfg), states[-1]) is not None")
    elif inv.kind == "step":
        body += [
            f"    last = replay_transitions(cfg, steps{opts})[-1]",
            f"    assert INVARIANTS[{py(inv.name)}].step(Ctx.of(cfg), states[-2], last) is not None",
        ]
    else:
        body.append(f"    assert not can_finish(cfg, states[-1]{', reduce=False' if not reduce else ''})")
    return "\n".join(imports) + "\n\n\n" + "\n".join(body) + "\n"


# ------------------------------------------------------------------------------- whole ----


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), WIDTH, initial_indent=indent, subsequent_indent=indent)


SNIPPET_BEGIN = "# --- paste as a test ---"
SNIPPET_END = "# --- end ---"


def render_violation(
    cfg: Config, v: Violation, label: str, *, symmetry: bool = True, reduce: bool = True
) -> str:
    """The whole counterexample: header, numbered steps, the broken invariant, the snippet."""
    inv = v.invariant
    kind = {"step": "step property", "liveness": "liveness"}.get(inv.kind, "invariant")
    lines = [f"violation: {inv.name}  ({inv.source})", *render_steps(cfg, v.trace, symmetry=symmetry)]
    if inv.kind == "step":
        lines.append(f"  the last step breaks the {kind}: {v.message}")
    elif inv.kind == "liveness":
        lines.append(f"  from the last state on: {v.message}")
    else:
        lines.append(f"  the {kind} fails in the last state: {v.message}")
    lines += _wrap(f"{inv.name}: {inv.doc}", "  ")
    code = snippet(cfg, v, label, symmetry=symmetry, reduce=reduce)
    lines += ["", SNIPPET_BEGIN, code.rstrip("\n"), SNIPPET_END]
    return "\n".join(lines) + "\n"


def summary_line(v: Violation) -> str:
    """One line per violation, for lists: `name: message  [N steps]`."""
    return f"{v.invariant.name}: {v.message}  [{len(v.trace)} steps]"


def change_text(v: Variant) -> str:
    out = []
    for k, val in v.changes.items():
        text = (
            "(" + ", ".join(map(str, val)) + ")"
            if isinstance(val, tuple)
            else getattr(val, "value", None) or str(val)
        )
        out.append(f"{k}={text}")
    return "; ".join(out) or "none (the profile itself)"


def variant_report(
    v: Variant, cfg: Config, res: CheckResult, *, symmetry: bool = True, reduce: bool = True
) -> str:
    """What `devdax check --variant V` prints before its statistics line: the variant, then the
    counterexample of each of its `breaks` properties that was violated, then any other violated
    property in one line. Deterministic (no timings): tests/golden/ holds one per variant."""
    caught = [n for n in v.breaks if n in res.violations]
    lines = [
        f"variant {v.name}: {v.title}",
        f"  source:  {v.source}",
        *pack(f"  profile: {v.base.name} with {change_text(v)}", "", " " * 11),
        *pack(f"  config:  {cfg.describe()}", "", " " * 11, " "),
    ]
    lines += _wrap(f"notes: {v.notes}", "  ") if v.notes else []
    if caught:
        lines.append(f"caught: {', '.join(caught)} over {res.states:,} states")
    else:
        lines.append(
            f"variant not caught: all {len(res.checked)} invariants hold over {res.states:,} states"
            if not res.violations
            else f"variant not caught: none of {', '.join(v.breaks)} is violated"
        )
    for name in caught:
        text = render_violation(cfg, res.violations[name], v.name, symmetry=symmetry, reduce=reduce)
        lines += ["", text.rstrip("\n")]
    others = [x for n, x in sorted(res.violations.items()) if n not in caught]
    if others:
        lines += ["", "also violated:"] + [f"  {summary_line(x)}" for x in others]
    return "\n".join(lines) + "\n"


def extract_snippets(text: str) -> list[str]:
    """The pasteable snippets of a rendered report (what a person would copy)."""
    return re.findall(re.escape(SNIPPET_BEGIN) + r"\n(.*?)\n" + re.escape(SNIPPET_END), text, re.S)


__all__ = [
    "config_brief",
    "config_source",
    "diff",
    "extract_snippets",
    "pack",
    "py",
    "render_steps",
    "render_violation",
    "snippet",
    "step_call",
    "summary_line",
    "variant_report",
]
