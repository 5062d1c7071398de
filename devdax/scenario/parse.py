"""Load and validate scenario files: every name against the closed vocabulary of schema.py.

Why a strict loader: the same file is run by the spec, the emulation and a real kernel, and the point
is to compare their outcomes step by step. A typo that one backend tolerates and another rejects
(``"MAP_SHARD"``, ``"lenght"``, a handle that was never created) would show up as a behavioural
disagreement and waste an afternoon. So every name is checked here, once, and backends receive typed,
frozen values with nothing left to interpret.

Errors are :class:`ScenarioError` (a ``ValueError``) and always name the file, the step index (when
there is one) and the field: ``scenario x.json step 3 field 'length': ...``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from devdax.scenario.schema import (
    ALIGNS,
    CURRENT_PROFILE,
    DEFAULT_ALIGN,
    DEFAULT_REGION_SIZE,
    FALLOC_PUNCH_HOLE,
    FORMAT_ID,
    IOCTL_REQUESTS,
    MADVICE,
    MAP_FLAGS,
    MSYNC_FLAGS,
    OK,
    OOPS,
    OPEN_ACCESS_MODES,
    OPEN_FLAGS,
    PROFILES,
    PROT_FLAGS,
    SEEK_WHENCE,
    SKIPPED,
    Access,
    Check,
    Close,
    Device,
    Disable,
    DisableNamespace,
    Enable,
    EnableNamespace,
    Fallocate,
    ForkTouch,
    Fsync,
    HandleKind,
    Ioctl,
    Lseek,
    Madvise,
    Mmap,
    Mprotect,
    Mremap,
    Msync,
    Munmap,
    Open,
    Read,
    Remove,
    Scenario,
    ScenarioError,
    Setup,
    Step,
    Touch,
    Write,
    allowed_outcomes,
    format_size,
    is_outcome,
    parse_size,
)

_TOP_KEYS = frozenset(
    {"format", "name", "source", "region", "devices", "steps", "expect", "profile", "notes"}
)
_REGION_KEYS = frozenset({"size", "align"})
_DEVICE_KEYS = frozenset({"size"})

_T = TypeVar("_T")


class _Where:
    """Error context for one place in one file, so every raise names file, step and field."""

    def __init__(self, file: str, step: int | None = None) -> None:
        self.file = file
        self.step = step

    def error(self, field: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, self.step, field, message)

    def wrap(self, field: str, fn: Callable[[object], _T], value: object) -> _T:
        """Run a field parser, turning its bare ValueError into a located ScenarioError."""
        try:
            return fn(value)
        except ScenarioError:
            raise
        except ValueError as e:
            raise self.error(field, str(e)) from None


def _as_str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _as_byte(value: object) -> int:
    v = _as_int(value)
    if not 0 <= v <= 255:
        raise ValueError(f"a byte value must be 0..255, got {v}")
    return v


def _as_signed_offset(value: object) -> int:
    """lseek offsets may be negative ints; non-negative ones may also use size strings."""
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return value
    return parse_size(value)


def _name_set(vocab: frozenset[str], what: str) -> Callable[[object], frozenset[str]]:
    """Parser for a JSON list of names, each from ``vocab``; duplicates are an error (a typo smell)."""

    def parse_names(value: object) -> frozenset[str]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {what} names, got {value!r}")
        seen: set[str] = set()
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"expected {what} names as strings, got {item!r}")
            if item not in vocab:
                raise ValueError(f"unknown {what} name {item!r}")
            if item in seen:
                raise ValueError(f"{what} name {item!r} given twice")
            seen.add(item)
        return frozenset(seen)

    return parse_names


def _one_name(vocab: frozenset[str], what: str) -> Callable[[object], str]:
    def parse_name(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a {what} name, got {value!r}")
        if value not in vocab:
            raise ValueError(f"unknown {what} name {value!r}")
        return value

    return parse_name


def _open_flags(value: object) -> frozenset[str]:
    """Exactly one access mode: O_RDONLY is 0, so leaving it implicit would hide intent."""
    flags = _name_set(OPEN_FLAGS, "open flag")(value)
    modes = flags & OPEN_ACCESS_MODES
    if len(modes) != 1:
        raise ValueError("need exactly one of O_RDONLY, O_WRONLY, O_RDWR")
    return flags


def _prot(value: object) -> frozenset[str]:
    """PROT_NONE is the value 0: it becomes the empty set and may not be mixed with other bits."""
    prot = _name_set(PROT_FLAGS, "prot")(value)
    if "PROT_NONE" in prot:
        if len(prot) > 1:
            raise ValueError("PROT_NONE cannot be combined with other PROT_ bits")
        return frozenset()
    return prot


def _access(value: object) -> Access:
    if value == "read":
        return "read"
    if value == "write":
        return "write"
    raise ValueError(f"access must be 'read' or 'write', got {value!r}")


def _falloc_mode(value: object) -> frozenset[str]:
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return frozenset()
    if value == "PUNCH_HOLE":
        return FALLOC_PUNCH_HOLE
    raise ValueError(f"mode must be 0 or 'PUNCH_HOLE', got {value!r}")


# Per-op field table: field -> (parser, required). "as" is stored as attribute ``as_``.
_FieldTable = Mapping[str, tuple[Callable[[object], object], bool]]

_HANDLE: Callable[[object], object] = _as_str

_OPS: dict[str, tuple[type[Step], _FieldTable]] = {
    "open": (Open, {"dev": (_as_int, True), "flags": (_open_flags, True), "as": (_HANDLE, False)}),
    "close": (Close, {"fd": (_HANDLE, True)}),
    "mmap": (
        Mmap,
        {
            "fd": (_HANDLE, True),
            "length": (parse_size, True),
            "prot": (_prot, True),
            "flags": (_name_set(MAP_FLAGS, "mmap flag"), True),
            "offset": (parse_size, True),
            "fixed_offset": (parse_size, False),
            "as": (_HANDLE, False),
        },
    ),
    "munmap": (Munmap, {"map": (_HANDLE, True), "offset": (parse_size, True), "length": (parse_size, True)}),
    "mprotect": (
        Mprotect,
        {
            "map": (_HANDLE, True),
            "offset": (parse_size, True),
            "length": (parse_size, True),
            "prot": (_prot, True),
        },
    ),
    "mremap": (
        Mremap,
        {
            "map": (_HANDLE, True),
            "offset": (parse_size, True),
            "old_length": (parse_size, True),
            "new_length": (parse_size, True),
            "move": (_as_bool, False),
        },
    ),
    "touch": (
        Touch,
        {
            "map": (_HANDLE, True),
            "offset": (parse_size, True),
            "access": (_access, True),
            "value": (_as_byte, False),
        },
    ),
    "check": (Check, {"map": (_HANDLE, True), "offset": (parse_size, True), "value": (_as_byte, True)}),
    "fork_touch": (
        ForkTouch,
        {"map": (_HANDLE, True), "offset": (parse_size, True), "access": (_access, True)},
    ),
    "read": (Read, {"fd": (_HANDLE, True), "length": (parse_size, True)}),
    "write": (Write, {"fd": (_HANDLE, True), "length": (parse_size, True)}),
    "fsync": (Fsync, {"fd": (_HANDLE, True)}),
    "lseek": (
        Lseek,
        {
            "fd": (_HANDLE, True),
            "offset": (_as_signed_offset, True),
            "whence": (_one_name(SEEK_WHENCE, "whence"), True),
        },
    ),
    "fallocate": (
        Fallocate,
        {
            "fd": (_HANDLE, True),
            "mode": (_falloc_mode, True),
            "offset": (parse_size, True),
            "length": (parse_size, True),
        },
    ),
    "ioctl": (Ioctl, {"fd": (_HANDLE, True), "request": (_one_name(IOCTL_REQUESTS, "ioctl request"), True)}),
    "madvise": (
        Madvise,
        {
            "map": (_HANDLE, True),
            "offset": (parse_size, True),
            "length": (parse_size, True),
            "advice": (_one_name(MADVICE, "madvise advice"), True),
        },
    ),
    "msync": (
        Msync,
        {
            "map": (_HANDLE, True),
            "offset": (parse_size, True),
            "length": (parse_size, True),
            "flags": (_name_set(MSYNC_FLAGS, "msync flag"), True),
        },
    ),
    "disable": (Disable, {"dev": (_as_int, True)}),
    "enable": (Enable, {"dev": (_as_int, True)}),
    "remove": (Remove, {"dev": (_as_int, True)}),
    "disable_namespace": (DisableNamespace, {"dev": (_as_int, True)}),
    "enable_namespace": (EnableNamespace, {"dev": (_as_int, True)}),
}

#: Every op name the format knows, in table order.
OPS: tuple[str, ...] = tuple(_OPS)


def _parse_step(where: _Where, raw: object) -> Step:
    if not isinstance(raw, dict):
        raise where.error("op", f"a step must be a JSON object, got {raw!r}")
    op = raw.get("op")
    if not isinstance(op, str) or op not in _OPS:
        raise where.error("op", f"unknown op {op!r} (known: {', '.join(OPS)})")
    cls, table = _OPS[op]
    for key in raw:
        if key != "op" and key not in table:
            raise where.error(key, f"op {op!r} has no field {key!r} (fields: {', '.join(table)})")
    kwargs: dict[str, object] = {}
    for field, (parser, required) in table.items():
        if field not in raw:
            if required:
                raise where.error(field, f"op {op!r} needs field {field!r}")
            continue
        kwargs["as_" if field == "as" else field] = where.wrap(field, parser, raw[field])
    step = cls(**kwargs)
    if isinstance(step, Touch) and step.access == "read" and step.value is not None:
        raise where.error("value", "a read touch stores nothing; 'value' is only for access 'write'")
    return step


def _parse_setup(where: _Where, data: Mapping[str, object]) -> Setup:
    region = data.get("region", {})
    if not isinstance(region, dict):
        raise where.error("region", f"expected an object, got {region!r}")
    for key in region:
        if key not in _REGION_KEYS:
            raise where.error(f"region.{key}", "unknown region field")
    size = where.wrap("region.size", parse_size, region.get("size", DEFAULT_REGION_SIZE))
    align = where.wrap("region.align", parse_size, region.get("align", DEFAULT_ALIGN))
    if align not in ALIGNS:
        raise where.error("region.align", f"align must be one of 4K, 2M, 1G, got {format_size(align)}")
    if size == 0 or size % align:
        raise where.error(
            "region.size", f"{format_size(size)} is not a positive multiple of align {format_size(align)}"
        )
    raw_devices = data.get("devices", [{"size": size}])
    if not isinstance(raw_devices, list) or not raw_devices:
        raise where.error("devices", "expected a non-empty list of {'size': ...} objects")
    devices: list[Device] = []
    start = 0
    for i, dev in enumerate(raw_devices):
        field = f"devices[{i}].size"
        if not isinstance(dev, dict):
            raise where.error(f"devices[{i}]", f"expected an object, got {dev!r}")
        for key in dev:
            if key not in _DEVICE_KEYS:
                raise where.error(f"devices[{i}].{key}", "unknown device field")
        if "size" not in dev:
            raise where.error(field, "missing")
        dsize = where.wrap(field, parse_size, dev["size"])
        if dsize == 0 or dsize % align:
            raise where.error(
                field, f"{format_size(dsize)} is not a positive multiple of align {format_size(align)}"
            )
        if start + dsize > size:
            raise where.error(field, f"devices overflow the {format_size(size)} region")
        devices.append(Device(index=i, size=dsize, start=start))
        start += dsize
    return Setup(region_size=size, align=align, devices=tuple(devices))


def _resolve_handles(file: str, steps: Sequence[Step], ndev: int) -> tuple[tuple[int, ...], ...]:
    """Check every handle use against earlier definitions and every dev index against the setup.

    A name may be re-bound by a later ``as`` (reopen after close reads naturally that way) but never
    to the other kind: an fd name later naming a mapping is almost certainly a typo.
    """
    bound: dict[str, tuple[HandleKind, int]] = {}
    kinds: dict[str, HandleKind] = {}
    depends: list[tuple[int, ...]] = []
    for i, step in enumerate(steps):
        where = _Where(file, i)
        if isinstance(step, Open | Disable | Enable | Remove | DisableNamespace | EnableNamespace) and not (
            0 <= step.dev < ndev
        ):
            raise where.error("dev", f"no device {step.dev} (scenario has {ndev})")
        deps: list[int] = []
        for name, kind in step.uses():
            field = "fd" if kind == "fd" else "map"
            if name not in bound:
                raise where.error(field, f"handle {name!r} is not defined by an earlier step")
            have, at = bound[name]
            if have != kind:
                raise where.error(field, f"handle {name!r} is a {have} (step {at}), not a {kind}")
            deps.append(at)
        depends.append(tuple(deps))
        new = step.defines()
        if new is not None:
            name, kind = new
            if kinds.get(name, kind) != kind:
                raise where.error("as", f"handle {name!r} was a {kinds[name]}; cannot re-bind as {kind}")
            kinds[name] = kind
            bound[name] = (kind, i)
    return tuple(depends)


def _check_skips(file: str, expect: Sequence[str], depends: Sequence[tuple[int, ...]]) -> None:
    """``skipped`` is exactly "a handle this step uses was never created" (format doc, Steps).

    So an expectation file is inconsistent if it expects a step to run although one of its handles'
    creating steps is expected to fail, or expects ``skipped`` although all of them succeed. Catching
    this here keeps hand-written ``expect`` lists honest before any backend runs.
    """
    oops = next((i for i, e in enumerate(expect) if e == OOPS), len(expect))
    for i in range(oops + 1, len(expect)):
        if expect[i] != SKIPPED:
            raise ScenarioError(file, i, "expect", f"step {oops} is expected to OOPS; the rest skipped")
    for i, deps in enumerate(depends[: oops + 1]):
        failed = [d for d in deps if expect[d] != OK]
        if failed and expect[i] != SKIPPED:
            d = failed[0]
            raise ScenarioError(
                file,
                i,
                "expect",
                f"step {d} creates a handle used here and is expected {expect[d]!r}; "
                "this step must then be 'skipped'",
            )
        if not failed and expect[i] == SKIPPED:
            raise ScenarioError(
                file, i, "expect", "'skipped' but every handle it uses is created successfully"
            )


def _parse_notes(where: _Where, raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        return tuple(str(n) for n in raw)
    raise where.error("notes", "expected a string or a list of strings")


def parse(data: object, file: str = "<memory>") -> Scenario:
    """Validate already-decoded JSON ``data`` as a scenario; ``file`` is used in error messages."""
    top = _Where(file)
    if not isinstance(data, dict):
        raise top.error("format", "a scenario must be a JSON object")
    for key in data:
        if key not in _TOP_KEYS:
            raise top.error(str(key), f"unknown top-level field (known: {', '.join(sorted(_TOP_KEYS))})")
    if data.get("format") != FORMAT_ID:
        raise top.error("format", f"expected {FORMAT_ID!r}, got {data.get('format')!r}")
    name = top.wrap("name", _as_str, data.get("name"))
    source = top.wrap("source", _as_str, data["source"]) if "source" in data else ""
    profile = data.get("profile", CURRENT_PROFILE)
    if profile not in PROFILES:
        raise top.error("profile", f"expected one of {', '.join(PROFILES)}, got {profile!r}")
    setup = _parse_setup(top, data)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise top.error("steps", "expected a non-empty list of steps")
    steps = tuple(_parse_step(_Where(file, i), raw) for i, raw in enumerate(raw_steps))
    depends = _resolve_handles(file, steps, len(setup.devices))
    expect: tuple[str, ...] | None = None
    if "expect" in data:
        raw_expect = data["expect"]
        if not isinstance(raw_expect, list):
            raise top.error("expect", "expected a list of outcomes")
        if len(raw_expect) != len(steps):
            raise top.error("expect", f"has {len(raw_expect)} outcomes for {len(steps)} steps")
        for i, (word, step) in enumerate(zip(raw_expect, steps, strict=True)):
            if not isinstance(word, str) or not is_outcome(word):
                raise ScenarioError(file, i, "expect", f"unknown outcome {word!r}")
            if word not in allowed_outcomes(step):
                raise ScenarioError(file, i, "expect", f"outcome {word!r} is impossible for op {step.op!r}")
        expect = tuple(raw_expect)
        _check_skips(file, expect, depends)
    notes = _parse_notes(top, data["notes"]) if "notes" in data else ()
    return Scenario(
        file=file,
        name=name,
        source=source,
        profile=str(profile),
        setup=setup,
        steps=steps,
        expect=expect,
        notes=notes,
        depends_on=depends,
    )


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``json`` keeps the last of two equal keys silently; in a hand-written step that hides a typo."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def load(path: str | Path) -> Scenario:
    """Read and validate one scenario file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise ScenarioError(p.name, None, e.key, "key given twice in one JSON object") from None
    except json.JSONDecodeError as e:
        raise ScenarioError(p.name, None, "<json>", f"not valid JSON: {e}") from None
    except RecursionError:
        raise ScenarioError(p.name, None, "<json>", "nested too deeply to be a scenario") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(p.name, None, "<json>", f"not UTF-8 text: {e.reason}") from None
    return parse(data, p.name)


def load_all(directory: str | Path) -> list[Scenario]:
    """Load every ``*.json`` in ``directory`` (not recursive), sorted by file name for stable output.

    Names must be unique across the set, because output records identify a scenario by name.
    """
    scenarios = [load(p) for p in sorted(Path(directory).glob("*.json"))]
    seen: dict[str, str] = {}
    for s in scenarios:
        if s.name in seen:
            raise ScenarioError(s.file, None, "name", f"duplicate scenario name, also in {seen[s.name]}")
        seen[s.name] = s.file
    return scenarios
