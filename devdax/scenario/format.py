"""Load and validate ``devdax-scenario/1`` files (docs/scenario-format.md).

Why a strict loader: the same file is run by the spec, the emulation and a real kernel, and the point
is to compare their outcomes step by step. A typo that one backend tolerates and another rejects
(``"MAP_SHARD"``, ``"lenght"``, a handle that was never created) would show up as a behavioural
disagreement and waste an afternoon. So every name is checked against a closed vocabulary here, once,
and backends receive typed, frozen values with nothing left to interpret.

Errors are :class:`ScenarioError` (a ``ValueError``) and always name the file, the step index (when
there is one) and the field: ``scenario x.json step 3 field 'length': ...``.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

FORMAT_ID = "devdax-scenario/1"

K = 1024
M = 1024 * K
G = 1024 * M

#: Device alignments the kernel supports for device-dax (PAGE_SIZE, PMD_SIZE, PUD_SIZE on x86-64).
ALIGNS: frozenset[int] = frozenset({4 * K, 2 * M, 1 * G})

#: Kernel behaviour profiles. ``modern`` is the default target; the older ones exist because
#: device-dax changed user-visible behaviour (private mappings in 4.7, teardown in 4.10).
PROFILES: tuple[str, ...] = ("v4.7", "v4.10", "modern")
DEFAULT_PROFILE = "modern"

DEFAULT_REGION_SIZE = 64 * M
DEFAULT_ALIGN = 2 * M

# --------------------------------------------------------------------------------------------------
# Vocabularies. Closed sets on purpose: an unknown name is an error, not a silently ignored flag.
# --------------------------------------------------------------------------------------------------

OPEN_ACCESS_MODES: frozenset[str] = frozenset({"O_RDONLY", "O_WRONLY", "O_RDWR"})
OPEN_FLAGS: frozenset[str] = OPEN_ACCESS_MODES | frozenset(
    {
        "O_SYNC",
        "O_DSYNC",
        "O_DIRECT",
        "O_EXCL",
        "O_CLOEXEC",
        "O_NONBLOCK",
        "O_NOATIME",
        "O_NOCTTY",
        "O_TRUNC",
        "O_APPEND",
        "O_CREAT",
        "O_LARGEFILE",
        "O_PATH",
    }
)
PROT_FLAGS: frozenset[str] = frozenset({"PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC"})
MAP_FLAGS: frozenset[str] = frozenset(
    {
        "MAP_SHARED",
        "MAP_PRIVATE",
        "MAP_SHARED_VALIDATE",
        "MAP_SYNC",
        "MAP_POPULATE",
        "MAP_FIXED",
        "MAP_FIXED_NOREPLACE",
        "MAP_NORESERVE",
        "MAP_LOCKED",
        "MAP_HUGETLB",
        "MAP_NONBLOCK",
        "MAP_STACK",
        "MAP_GROWSDOWN",
        "MAP_HUGE_2MB",
        "MAP_HUGE_1GB",
    }
)
MADVICE: frozenset[str] = frozenset(
    {
        "MADV_NORMAL",
        "MADV_RANDOM",
        "MADV_SEQUENTIAL",
        "MADV_WILLNEED",
        "MADV_DONTNEED",
        "MADV_DONTNEED_LOCKED",
        "MADV_FREE",
        "MADV_REMOVE",
        "MADV_DONTFORK",
        "MADV_DOFORK",
        "MADV_MERGEABLE",
        "MADV_UNMERGEABLE",
        "MADV_HUGEPAGE",
        "MADV_NOHUGEPAGE",
        "MADV_COLLAPSE",
        "MADV_DONTDUMP",
        "MADV_DODUMP",
        "MADV_WIPEONFORK",
        "MADV_KEEPONFORK",
        "MADV_COLD",
        "MADV_PAGEOUT",
        "MADV_POPULATE_READ",
        "MADV_POPULATE_WRITE",
        "MADV_HWPOISON",
        "MADV_SOFT_OFFLINE",
    }
)
MSYNC_FLAGS: frozenset[str] = frozenset({"MS_SYNC", "MS_ASYNC", "MS_INVALIDATE"})
SEEK_WHENCE: frozenset[str] = frozenset({"SEEK_SET", "SEEK_CUR", "SEEK_END", "SEEK_DATA", "SEEK_HOLE"})
IOCTL_REQUESTS: frozenset[str] = frozenset({"FIONREAD", "BLKGETSIZE64"})
FALLOC_PUNCH_HOLE: frozenset[str] = frozenset({"FALLOC_FL_PUNCH_HOLE", "FALLOC_FL_KEEP_SIZE"})

#: Errno names as Linux spells them. Taken from the host's ``errno`` module because the project
#: targets Linux only; aliases (``EOPNOTSUPP``/``ENOTSUP``, ``EAGAIN``/``EWOULDBLOCK``) are all valid.
ERRNO_NAMES: frozenset[str] = frozenset(
    n for n in dir(errno) if n.startswith("E") and isinstance(getattr(errno, n), int)
)

SIGNALS: frozenset[str] = frozenset({"SIGBUS", "SIGSEGV"})
OK = "ok"
SKIPPED = "skipped"
MISMATCH = "mismatch"
#: The kernel oopsed or hit a BUG during the step (a real kernel stops there; the spec and the
#: emulation predict it, e.g. F1's NULL ``private_data`` in check_vma). Steps after it are skipped.
OOPS = "OOPS"

#: Non-errno outcome words. ``skipped`` is what a backend reports for a step whose handle's creating
#: step failed, so it is also a legitimate *expected* outcome.
OUTCOME_WORDS: frozenset[str] = frozenset({OK, SKIPPED, MISMATCH, OOPS}) | SIGNALS

Outcome: TypeAlias = str
Access: TypeAlias = Literal["read", "write"]
HandleKind: TypeAlias = Literal["fd", "map"]


def is_outcome(word: str) -> bool:
    """True for any word of the outcome vocabulary: ok, an errno name, a signal, mismatch, skipped."""
    return word in OUTCOME_WORDS or word in ERRNO_NAMES


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ScenarioError(ValueError):
    """A scenario file is malformed. Carries where, so tests and tools can assert on it."""

    def __init__(self, file: str, step: int | None, field: str, message: str) -> None:
        where = f"scenario {file}" + (f" step {step}" if step is not None else "")
        super().__init__(f"{where} field '{field}': {message}")
        self.file = file
        self.step = step
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^([0-9]+)([KMG]?)$")
_SUFFIX = {"": 1, "K": K, "M": M, "G": G}


def parse_size(value: object) -> int:
    """Parse a size: a non-negative int, or a decimal string with an optional K/M/G suffix (x1024).

    Strings exist because "2M" is what the research notes and ndctl say; ints exist for odd values
    like 4M-1 that no suffix can spell. ``bool`` is rejected although it is an ``int`` in Python,
    because ``true`` in a length field is always a mistake.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got boolean {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m is None:
            raise ValueError(f"bad size string {value!r} (want digits with optional K, M or G)")
        return int(m.group(1)) * _SUFFIX[m.group(2)]
    raise ValueError(f"expected a size (int or string like '2M'), got {type(value).__name__}")


def format_size(n: int) -> str:
    """Inverse of :func:`parse_size` for display: the largest exact suffix, so 2097152 -> '2M'."""
    for suffix, unit in (("G", G), ("M", M), ("K", K)):
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


# --------------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One device carved from the region, in order: ``dax0.<index>`` at ``start`` within the region."""

    index: int
    size: int
    start: int

    @property
    def name(self) -> str:
        """The kernel name; region id is always 0 in a scenario."""
        return f"dax0.{self.index}"


@dataclass(frozen=True)
class Setup:
    """Region geometry plus its devices. Backends build exactly this before step 0."""

    region_size: int
    align: int
    devices: tuple[Device, ...]


# --------------------------------------------------------------------------------------------------
# Steps: one frozen dataclass per op, holding exactly that op's fields.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Base of every step. ``op`` is the JSON op name; subclasses say which handles they use."""

    op: ClassVar[str] = ""

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        """Handles this step reads, with the kind each must have. Empty for device-level steps."""
        return ()

    def defines(self) -> tuple[str, HandleKind] | None:
        """The handle this step creates on success (``as``), if any."""
        return None

    def signal_capable(self) -> bool:
        """Whether the step touches memory, so SIGBUS/SIGSEGV are possible outcomes."""
        return False


@dataclass(frozen=True)
class Open(Step):
    """open("/dev/dax0.<dev>", flags)."""

    op: ClassVar[str] = "open"
    dev: int
    flags: frozenset[str]
    as_: str | None = None

    def defines(self) -> tuple[str, HandleKind] | None:
        return (self.as_, "fd") if self.as_ is not None else None


@dataclass(frozen=True)
class Close(Step):
    """close(fd)."""

    op: ClassVar[str] = "close"
    fd: str

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)


@dataclass(frozen=True)
class Mmap(Step):
    """mmap(addr, length, prot, flags, fd, offset).

    ``prot`` never contains PROT_NONE: it is the empty set, since PROT_NONE is the value 0.
    ``fixed_offset`` is added to an align-aligned base the runner picks; with MAP_FIXED or
    MAP_FIXED_NOREPLACE that is the address, otherwise it is passed as a hint. ``None`` means addr=NULL.
    """

    op: ClassVar[str] = "mmap"
    fd: str
    length: int
    prot: frozenset[str]
    flags: frozenset[str]
    offset: int
    fixed_offset: int | None = None
    as_: str | None = None

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)

    def defines(self) -> tuple[str, HandleKind] | None:
        return (self.as_, "map") if self.as_ is not None else None


@dataclass(frozen=True)
class Munmap(Step):
    """munmap(map + offset, length)."""

    op: ClassVar[str] = "munmap"
    map: str
    offset: int
    length: int

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)


@dataclass(frozen=True)
class Mprotect(Step):
    """mprotect(map + offset, length, prot)."""

    op: ClassVar[str] = "mprotect"
    map: str
    offset: int
    length: int
    prot: frozenset[str]

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)


@dataclass(frozen=True)
class Mremap(Step):
    """mremap(map + offset, old_length, new_length, move ? MREMAP_MAYMOVE : 0).

    On success the ``map`` handle names the remapped range (it may have moved).
    """

    op: ClassVar[str] = "mremap"
    map: str
    offset: int
    old_length: int
    new_length: int
    move: bool = False

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)


@dataclass(frozen=True)
class Touch(Step):
    """A one-byte load or store at map + offset. ``value`` is the stored byte (None: any byte)."""

    op: ClassVar[str] = "touch"
    map: str
    offset: int
    access: Access
    value: int | None = None

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)

    def signal_capable(self) -> bool:
        return True


@dataclass(frozen=True)
class Check(Step):
    """Load the byte at map + offset and compare with ``value``: ok or mismatch."""

    op: ClassVar[str] = "check"
    map: str
    offset: int
    value: int

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)

    def signal_capable(self) -> bool:
        return True


@dataclass(frozen=True)
class ForkTouch(Step):
    """fork(); the child does one access at map + offset and exits. Outcome is the child's."""

    op: ClassVar[str] = "fork_touch"
    map: str
    offset: int
    access: Access

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)

    def signal_capable(self) -> bool:
        return True


@dataclass(frozen=True)
class Read(Step):
    """read(fd, buf, length) on the device node itself."""

    op: ClassVar[str] = "read"
    fd: str
    length: int

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)


@dataclass(frozen=True)
class Write(Step):
    """write(fd, buf, length) on the device node itself."""

    op: ClassVar[str] = "write"
    fd: str
    length: int

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)


@dataclass(frozen=True)
class Fsync(Step):
    """fsync(fd)."""

    op: ClassVar[str] = "fsync"
    fd: str

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)


@dataclass(frozen=True)
class Lseek(Step):
    """lseek(fd, offset, whence). ``offset`` may be negative (SEEK_CUR/SEEK_END)."""

    op: ClassVar[str] = "lseek"
    fd: str
    offset: int
    whence: str

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)


@dataclass(frozen=True)
class Fallocate(Step):
    """fallocate(fd, mode, offset, length). ``mode`` is a set of FALLOC_FL_* names; empty means 0."""

    op: ClassVar[str] = "fallocate"
    fd: str
    mode: frozenset[str]
    offset: int
    length: int

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)


@dataclass(frozen=True)
class Ioctl(Step):
    """ioctl(fd, request, &buf) with a small, named set of requests."""

    op: ClassVar[str] = "ioctl"
    fd: str
    request: str

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.fd, "fd"),)


@dataclass(frozen=True)
class Madvise(Step):
    """madvise(map + offset, length, advice)."""

    op: ClassVar[str] = "madvise"
    map: str
    offset: int
    length: int
    advice: str

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)


@dataclass(frozen=True)
class Msync(Step):
    """msync(map + offset, length, flags)."""

    op: ClassVar[str] = "msync"
    map: str
    offset: int
    length: int
    flags: frozenset[str]

    def uses(self) -> tuple[tuple[str, HandleKind], ...]:
        return ((self.map, "map"),)


@dataclass(frozen=True)
class Disable(Step):
    """Unbind device ``dev`` from its driver: killed and torn down; existing handles stay."""

    op: ClassVar[str] = "disable"
    dev: int


@dataclass(frozen=True)
class Remove(Step):
    """The device goes away for good with handles still open: its namespace is destroyed (a real
    kernel: ``ndctl destroy-namespace``, unregister_dev_dax) or its provider removed (spec, impl)."""

    op: ClassVar[str] = "remove"
    dev: int


@dataclass(frozen=True)
class Enable(Step):
    """Bind device ``dev`` again: a new live instance over the same range."""

    op: ClassVar[str] = "enable"
    dev: int


# --------------------------------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A validated scenario.

    ``depends_on[i]`` lists the steps whose handles step ``i`` uses (the most recent definition of
    each name before ``i``), so a backend can report ``skipped`` without re-deriving handle scoping.
    """

    file: str
    name: str
    source: str
    profile: str
    setup: Setup
    steps: tuple[Step, ...]
    expect: tuple[Outcome, ...] | None
    notes: tuple[str, ...]
    depends_on: tuple[tuple[int, ...], ...]


@runtime_checkable
class Backend(Protocol):
    """Something that can run a scenario: the spec, the emulation, or a real kernel.

    ``run`` returns one outcome word per step, in step order (see :func:`check_outcomes`).
    """

    def run(self, scenario: Scenario) -> list[str]: ...


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

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
}

#: Every op name the format knows, in table order.
OPS: tuple[str, ...] = tuple(_OPS)


def allowed_outcomes(step: Step) -> frozenset[str]:
    """Outcome words that make sense for ``step`` (errno names are implied for syscalls).

    Memory accesses end in ok or a signal; ``check`` may also be ``mismatch`` and may fault too
    (reading a revoked mapping SIGBUSes whatever the format table's happy path says). Syscalls end
    in ok or an errno. Anything can be ``skipped``.
    """
    if isinstance(step, Check):
        return frozenset({OK, MISMATCH, SKIPPED, OOPS}) | SIGNALS
    if step.signal_capable():
        return frozenset({OK, SKIPPED, OOPS}) | SIGNALS
    return frozenset({OK, SKIPPED, OOPS}) | ERRNO_NAMES


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
        if isinstance(step, Open | Disable | Enable | Remove) and not 0 <= step.dev < ndev:
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
    for i, deps in enumerate(depends[:oops + 1]):
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
    profile = data.get("profile", DEFAULT_PROFILE)
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


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def check_outcomes(scenario: Scenario, outcomes: Sequence[str]) -> None:
    """Reject a backend result that is not one valid outcome word per step.

    Called on every backend's answer so that a backend bug (a missing step, a made-up word) is
    reported as such and not as a semantic disagreement between backends.
    """
    if len(outcomes) != len(scenario.steps):
        raise ValueError(
            f"scenario {scenario.file}: backend gave {len(outcomes)} outcomes for {len(scenario.steps)} steps"
        )
    for i, (word, step) in enumerate(zip(outcomes, scenario.steps, strict=True)):
        if word not in allowed_outcomes(step):
            raise ValueError(
                f"scenario {scenario.file} step {i}: outcome {word!r} invalid for op {step.op!r}"
            )


def step_record(scenario: Scenario, i: int, op: str, outcome: str) -> dict[str, object]:
    """One output line's object: ``{"scenario", "step", "op", "outcome"}`` as the format doc fixes."""
    if not 0 <= i < len(scenario.steps):
        raise ValueError(f"scenario {scenario.file}: no step {i}")
    if op != scenario.steps[i].op:
        raise ValueError(f"scenario {scenario.file} step {i}: op is {scenario.steps[i].op!r}, not {op!r}")
    if not is_outcome(outcome):
        raise ValueError(f"scenario {scenario.file} step {i}: unknown outcome {outcome!r}")
    return {"scenario": scenario.name, "step": i, "op": op, "outcome": outcome}


def mismatches(scenario: Scenario, outcomes: Sequence[str]) -> list[int]:
    """Indices of steps whose outcome differs from ``expect`` (empty when there is no ``expect``)."""
    if scenario.expect is None:
        return []
    return [i for i, (got, want) in enumerate(zip(outcomes, scenario.expect, strict=True)) if got != want]


def summary_record(scenario: Scenario, outcomes: Sequence[str]) -> dict[str, object]:
    """Per-scenario verdict: ``pass``/``fail`` against ``expect``, or ``unchecked`` without one."""
    bad = mismatches(scenario, outcomes)
    status = "unchecked" if scenario.expect is None else ("fail" if bad else "pass")
    return {
        "scenario": scenario.name,
        "steps": len(scenario.steps),
        "status": status,
        "mismatches": [
            {"step": i, "op": scenario.steps[i].op, "expected": scenario.expect[i], "got": outcomes[i]}
            for i in bad
            if scenario.expect is not None
        ],
    }


def summary_line(results: Sequence[tuple[Scenario, Sequence[str]]]) -> str:
    """The closing line of a run: one JSON object with totals and the names of failing scenarios."""
    records = [summary_record(s, o) for s, o in results]
    summary = {
        "summary": {
            "scenarios": len(records),
            "steps": sum(len(s.steps) for s, _ in results),
            "passed": sum(r["status"] == "pass" for r in records),
            "failed": [r["scenario"] for r in records if r["status"] == "fail"],
            "unchecked": [r["scenario"] for r in records if r["status"] == "unchecked"],
            "mismatched_steps": sum(len(mismatches(s, o)) for s, o in results),
        }
    }
    return json.dumps(summary, sort_keys=True)


def exit_status(results: Sequence[tuple[Scenario, Sequence[str]]]) -> int:
    """1 if any scenario with ``expect`` disagrees with its outcomes, else 0 (format doc, Output)."""
    return 1 if any(mismatches(s, o) for s, o in results) else 0
