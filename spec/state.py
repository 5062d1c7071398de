"""The state of the system: every kernel object device-dax touches, and who points at whom.

Records are NamedTuples: immutable, hashable and cheap to copy with ``_replace``, so the explicit
checker can store millions of them. Field names follow the kernel (docs/semantics.md#objects-and-references):
``dev_ref`` is the struct device kobject count, ``cdev_ref`` the embedded cdev's kobject count,
``kref`` the v4.7 dax_dev kref. Sets of small integers (an ida) are bitmasks.

Reference graph (docs/semantics.md#objects-and-references): open file -> cdev kobject -> device
kobject -> {region kref, pseudo-inode -> minor}; vma -> file. Every count is checked against its holders by
invariants.refcount_exact.
"""

from __future__ import annotations

import importlib
from enum import IntEnum
from typing import Any, Final, NamedTuple, TypeVar

T = TypeVar("T")


class RegionPhase(IntEnum):
    """dax_region lifetime: alloc_dax_region() makes it LIVE, dax_region_unregister() GONE."""

    NONE = 0
    LIVE = 1
    GONE = 2


class DevPhase(IntEnum):
    """dev_dax lifetime: devm_create_dev_dax() runs while CREATING; a failed create ends FAILED; the
    last put_device() of a LIVE or FAILED device makes it RELEASED."""

    NONE = 0
    CREATING = 1
    LIVE = 2
    FAILED = 3
    RELEASED = 4


class CpuPc(IntEnum):
    """Where a CPU is in dev_dax_huge_fault(): before the read lock, holding it, past the checks
    (dax_dev_check_vma, pgoff_to_phys), done inserting."""

    IDLE = 0
    LOCKED = 1
    CHECKED = 2
    DONE = 3


# The module-level spellings every action and encoding uses. IntEnum members are ints (same hash, same
# equality, same z3 coercion), so states built before and after are the same states. Final, so that
# the compiled spec reads them from a C static rather than the module's dict.
RG_NONE: Final = RegionPhase.NONE
RG_LIVE: Final = RegionPhase.LIVE
RG_GONE: Final = RegionPhase.GONE
D_NONE: Final = DevPhase.NONE
D_CREATING: Final = DevPhase.CREATING
D_LIVE: Final = DevPhase.LIVE
D_FAILED: Final = DevPhase.FAILED
D_RELEASED: Final = DevPhase.RELEASED
C_IDLE: Final = CpuPc.IDLE
C_LOCKED: Final = CpuPc.LOCKED
C_CHECKED: Final = CpuPc.CHECKED
C_DONE: Final = CpuPc.DONE
PHASE_NAMES: dict[int, str] = {p: p.name.lower() for p in DevPhase}
CPU_PC_NAMES: dict[int, str] = {p: p.name.lower() for p in CpuPc}
# Cpu.result: a geometry.FaultResult carried from the check to the unlock, as a small int (the state is
# hashed millions of times); R_NONE while no check has run
R_NONE: Final = 0
R_NOPAGE: Final = 1
R_FALLBACK: Final = 2
R_SIGBUS: Final = 3
RESULT_NAMES: Final = {R_NONE: "-", R_NOPAGE: "NOPAGE", R_FALLBACK: "FALLBACK", R_SIGBUS: "SIGBUS"}


class Region(NamedTuple):
    """struct dax_region (docs/semantics.md#objects-and-references)."""

    phase: RegionPhase = RG_NONE
    kref: int = 0
    ida: int = 0  # per-region instance ids in use (bitmask)
    provider_ref: bool = False  # the probe's own reference, dropped once children own the region
    devm_ref: bool = False  # the reference of the devm action dax_region_unregister
    freed: bool = False


class Dev(NamedTuple):
    """struct dax_dev / dev_dax with its embedded struct device and struct cdev
    (docs/semantics.md#creation)."""

    phase: DevPhase = D_NONE
    id: int = -1  # per-region instance id (the Y of daxX.Y)
    minor: int = -1
    id_held: bool = False  # the id bit in region->ida belongs to this instance
    minor_held: bool = False  # the minor bit in dax_minor_ida belongs to this instance
    init_ref: bool = False  # the reference device_initialize()/kref_init() took, not yet put
    dev_ref: int = 0  # struct device kobject count
    kref: int = 0  # v4.7: dax_dev->kref
    cdev_live: bool = False  # cdev_add() done and cdev_del() not yet: the cdev's own reference
    cdev_ref: int = 0  # cdev kobject count
    cdev_mapped: bool = False  # in kobj_map: chrdev_open() can find it by devt
    icdev_cached: bool = False  # some /dev inode caches i_cdev (chrdev_open) until cdev release
    icdev_stale: bool = False  # that inode's i_devices link is into a list cdev_init re-initialised (F2)
    inode_ref: int = 0  # dax pseudo-fs inode
    holds_region: bool = False  # kref_get(&dax_region->kref) taken
    registered: bool = False  # device_add() done, device_del() not yet
    bound: bool = False  # modern: device_dax driver bound
    alive: bool = False
    children: int = 0  # modern: mappingN child devices still registered
    zombies: int = 0  # mappingN children unregistered, release still pending
    dead: bool = False  # ghost: kill completed (cleared by run_dax on re-bind)


class File(NamedTuple):
    """struct file of an open /dev/daxX.Y. Slot is free when dev == -1."""

    dev: int = -1
    writable: bool = False
    fd: bool = False  # the descriptor is still installed
    f_count: int = 0  # the fd plus one per vma
    private_null: bool = False  # modern dax_open stored dax_get_private() == NULL
    readable: bool = True  # FMODE_READ (false only for O_WRONLY)


class Vma(NamedTuple):
    """struct vm_area_struct mapping a device file. Slot is free when file == -1."""

    file: int = -1
    start: int = 0
    end: int = 0
    pgoff: int = 0
    shared: bool = False  # VM_SHARED
    mayshare: bool = False  # VM_MAYSHARE
    write: bool = False  # VM_WRITE
    dontcopy: bool = False  # VM_DONTCOPY (MADV_DONTFORK)
    read: bool = True  # VM_READ (PROT_NONE clears it)
    nohuge: bool = False  # VM_NOHUGEPAGE (MADV_NOHUGEPAGE): the mm asks for pte faults only
    seq_read: bool = False  # VM_SEQ_READ (MADV_SEQUENTIAL)
    rand_read: bool = False  # VM_RAND_READ (MADV_RANDOM)
    dontdump: bool = False  # VM_DONTDUMP (MADV_DONTDUMP)


class Entry(NamedTuple):
    """An installed page-table entry (pte/pmd/pud) of a vma. phys is the address the driver passed
    to vmf_insert_*; the block the hardware maps is geometry.pfn_huge(phys, size)."""

    vma: int
    addr: int
    size: int
    phys: int


class Cpu(NamedTuple):
    """A CPU running the fault handler. CPUs are interchangeable: the checker sorts them."""

    pc: CpuPc = C_IDLE
    left: int = 0  # faults this CPU will still take
    nest: int = 0  # read-side nesting (dax_read_lock / rcu_read_lock)
    pre_gp: bool = False  # its read section began before the grace period in progress
    vma: int = -1
    addr: int = 0
    size: int = 0  # the fault size the mm asked for
    result: int = R_NONE
    phys: int = 0


class Admin(NamedTuple):
    """The one thread that runs probe, bind, unbind and removal programs, step by step."""

    prog: str = ""  # "" when idle
    dev: int = -1
    pc: int = 0
    generation: int = 0  # next provider generation to probe
    binds_left: tuple[int, ...] = ()
    resume: tuple[str, int, int] | None = None  # where probe continues after an error program


class State(NamedTuple):
    regions: tuple[Region, ...]
    devs: tuple[Dev, ...]
    files: tuple[File, ...]
    vmas: tuple[Vma, ...]
    entries: frozenset[Entry]
    cpus: tuple[Cpu, ...]
    minors: int  # dax_minor_ida (bitmask)
    gp: bool  # a grace period is in progress
    admin: Admin
    oops: str  # "" or what the kernel would have crashed on ("uaf: ...")


def _fast_replace(cls: type[tuple[object, ...]]) -> None:
    """Give a record a ``_replace`` with the stock method's meaning at a quarter of its cost.

    A search calls ``_replace`` about 30 times per state it stores (1.55 million calls for the v4.10
    default); the stock method pops a keyword dict through ``map`` and ``_make`` and was a sixth of
    a compiled run. This one takes each field as an optional keyword and builds the tuple in one
    expression: the same record for the same call, and an unknown field is still refused (TypeError
    here, ValueError there). tests/model/test_fast_paths.py compares the two on every record
    class; the compiled form has the same method in C (devdax/native/record.c), compared with the
    stock one in tests/model/test_compiled.py.
    """
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    params = ", ".join(f"{f}=_keep" for f in fields)
    items = ", ".join(f"self[{i}] if {f} is _keep else {f}" for i, f in enumerate(fields))
    code = f"def _replace(self, *, {params}):\n    return _new(_cls, ({items},))\n"
    scope: dict[str, object] = {"_keep": object(), "_new": tuple.__new__, "_cls": cls}
    exec(code, scope)  # the way collections.namedtuple builds its own methods
    replace: Any = scope["_replace"]
    replace.__qualname__ = f"{cls.__name__}._replace"
    replace.__doc__ = f"Return a new {cls.__name__} with the given fields replaced."
    cls._replace = replace  # type: ignore[attr-defined]


try:  # _replace and __new__ in C (devdax/native/record.c), built only with the compiled form
    _native: Any = importlib.import_module("devdax.spec._record")
except ImportError:
    _native = None


def fast_record(cls: type[tuple[object, ...]]) -> None:
    """Give a record class the cheap _replace above; in the compiled form, _replace and __new__ in
    C. The same records either way (tests/model/test_fast_paths.py, tests/model/test_compiled.py)."""
    if _native is None:
        _fast_replace(cls)
    else:
        cls._replace = _native.method(cls)  # type: ignore[attr-defined]
        cls.__new__ = staticmethod(_native.new)  # type: ignore[method-assign]
        _native.cache_hash(cls)
        _native.fast_call(cls)


for _record in (Region, Dev, File, Vma, Entry, Cpu, Admin, State):
    fast_record(_record)


def set_at(seq: tuple[T, ...], i: int, value: T) -> tuple[T, ...]:
    """Functional update of one slot of a tuple."""
    return seq[:i] + (value,) + seq[i + 1 :]


def ida_alloc(mask: int, limit: int | None = None) -> int | None:
    """ida_alloc(): the lowest free id, or None when the (exclusive) limit is reached."""
    free = (~mask) & (mask + 1)
    i = free.bit_length() - 1
    return None if limit is not None and i >= limit else i


#: What an action did: "ok", an errno name ("EINVAL"), a fault result ("SIGBUS") or "OOPS", with the
#: state after it. Every action in spec/ returns ``Outcome | None``: None when its guard is false, so
#: that the action is not enabled in this state (a user call blocks, an admin program waits). The
#: range operations of mm.py are always enabled once called and return a plain Outcome.
Outcome = tuple[str, State]
