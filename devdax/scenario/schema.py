"""The ``devdax-scenario/1`` vocabulary and data model (docs/scenario-format.md): names, steps, outcomes.

What every backend shares: the closed sets of flag and outcome words, one frozen dataclass per op, the
validated :class:`Scenario` and the :class:`Backend` protocol. Parsing is in parse.py, output in
report.py; format.py gathers all three under the one name the backends import.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, TypeAlias, runtime_checkable

from devdax.spec import abi
from devdax.spec.profiles import CURRENT_PROFILE as CURRENT_PROFILE
from devdax.spec.profiles import PROFILES as SPEC_PROFILES

FORMAT_ID = "devdax-scenario/1"

K = 1024
M = 1024 * K
G = 1024 * M

#: Device alignments the kernel supports for device-dax (PAGE_SIZE, PMD_SIZE, PUD_SIZE on x86-64).
ALIGNS: frozenset[int] = frozenset({4 * K, 2 * M, 1 * G})

#: Kernel behaviour profiles, spec/profiles.py's. A file that names none runs under CURRENT_PROFILE; the
#: older ones exist because device-dax changed user-visible behaviour (private mappings in 4.7,
#: teardown in 4.10).
PROFILES: tuple[str, ...] = tuple(SPEC_PROFILES)

DEFAULT_REGION_SIZE = 64 * M
DEFAULT_ALIGN = 2 * M

# --------------------------------------------------------------------------------------------------
# Vocabularies. Closed sets on purpose: an unknown name is an error, not a silently ignored flag.
# --------------------------------------------------------------------------------------------------

# The names are the uapi tables' (spec/abi.py), so the loader, the emulation and the kernel backend
# can never disagree on what a flag is called or whether it exists.
OPEN_ACCESS_MODES: frozenset[str] = frozenset({"O_RDONLY", "O_WRONLY", "O_RDWR"})
OPEN_FLAGS: frozenset[str] = frozenset(abi.O_FLAGS)
PROT_FLAGS: frozenset[str] = frozenset(abi.PROT)
#: every mmap flag but MAP_ANONYMOUS: a scenario maps the device, never anonymous memory
MAP_FLAGS: frozenset[str] = frozenset(abi.MAP) - {"MAP_ANONYMOUS"}
MADVICE: frozenset[str] = frozenset(abi.MADV)
MSYNC_FLAGS: frozenset[str] = frozenset(abi.MS)
SEEK_WHENCE: frozenset[str] = frozenset(abi.SEEK)
IOCTL_REQUESTS: frozenset[str] = frozenset(abi.IOCTL)
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
#: The byte a fork_touch store writes: the child's store reaches the device through a shared vma.
FORK_STORE = 0x5A

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
class DisableNamespace(Step):
    """The provider lets go of the device and may probe it again: ``ndctl disable-namespace`` on a
    kernel (the dax_pmem driver unbinds, unregister_dev_dax), provider removal in spec and impl."""

    op: ClassVar[str] = "disable_namespace"
    dev: int


@dataclass(frozen=True)
class EnableNamespace(Step):
    """The provider probes again over the same memory: a new device instance, same bytes
    (``ndctl enable-namespace``; a new probe in spec and impl)."""

    op: ClassVar[str] = "enable_namespace"
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


#: errno aliases spelled the way the spec and the files spell them (errno.errorcode picks ENOTSUP)
_SPELLING = {errno.EOPNOTSUPP: "EOPNOTSUPP", errno.EAGAIN: "EAGAIN", errno.EDEADLK: "EDEADLK"}


def errno_name(e: OSError) -> str:
    """The outcome word of a failed call: its errno's name (EIO when it has none)."""
    code = e.errno or 0
    return _SPELLING.get(code) or errno.errorcode.get(code, "EIO")


def run_steps(
    scenario: Scenario, step: Callable[[int, Step], str], after: Callable[[int, str], None] | None = None
) -> list[str]:
    """Every backend's step loop, so the skip rule has one home: a step that uses a handle whose
    creating step did not succeed, and every step after an ``OOPS``, is ``skipped`` without running.
    ``step(i, st)`` runs one step and gives its outcome; ``after(i, outcome)`` sees every outcome."""
    failed: set[int] = set()
    out: list[str] = []
    for i, st in enumerate(scenario.steps):
        blocked = OOPS in out or any(j in failed for j in scenario.depends_on[i])
        outcome = SKIPPED if blocked else step(i, st)
        if outcome == SKIPPED or (st.defines() and outcome != OK):
            failed.add(i)
        out.append(outcome)
        if after is not None:
            after(i, outcome)
    return out


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
