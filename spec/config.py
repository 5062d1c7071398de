"""Bounds of one model-checking run, and the fixed physical layout they imply.

The state machine is finite because every population is bounded here: file and vma slots are reused
once released, so "files=2" means "at most two open files at once", not "two opens in all". The layout
(physical ranges, alignment) is immutable during a run, so it lives here and not in the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from devdax.spec.geometry import (
    PAGE_SIZE,
    SIZE_OF_NAME,
    Range,
    make_ranges,
    parse_align,
)

#: physical base of region 0; generations sit side by side, each in its own 64 GiB window
REGION_BASE = 1 << 36
GENERATION_STRIDE = 1 << 36
#: where the model's mm->get_unmapped_area puts every new mapping (page- but not huge-aligned, so
#: dax_get_unmapped_area's congruence fix-up is exercised); fixed mappings use FIXED_BASE
MM_WINDOW = (0x7F00 << 32) + PAGE_SIZE
FIXED_BASE = 0x7E00 << 32
#: The model's mm holds only the scenario's own mappings: after a mapping at FIXED_BASE the address
#: space is free, above MM_WINDOW it is taken (the kernel's libraries and stack), which decides
#: mremap's vma_expandable (mm.mremap_path). Runners that place real mappings (devdax/scenario/
#: placement.py, impl/vma.py Placement) reproduce that much of it: more than any scenario grows a
#: mapping, and only address space (PROT_NONE, MAP_NORESERVE).
MM_ROOM = 1 << 34


#: Upper bounds of the sizes the state is built from: a slot tuple per file, vma and CPU, an entry
#: per unit. Far past anything a check can finish, and small enough that a typo (`--cpus 10**20`)
#: is refused with a ValueError naming the field instead of an OverflowError or an hour of allocation.
_LIMITS: dict[str, int] = {"cpus": 64, "files": 64, "vmas": 64, "units": 1 << 16, "ranges": 64}


@dataclass(frozen=True)
class MmapShape:
    """One argument vector of mmap(2) the checker may try; lengths and offsets are in align units
    unless marked as bytes, so one menu serves every alignment."""

    name: str
    units: int = 1  # length = units * align (+ extra_bytes)
    extra_bytes: int = 0
    offset_units: int = 0  # offset = offset_units * align (+ offset_bytes)
    offset_bytes: int = 0
    shared: bool = True
    write: bool = True
    noreserve: bool = False
    fixed_bytes: int | None = None  # MAP_FIXED at FIXED_BASE + this
    hint: bool = False  # fixed_bytes is a hint (no MAP_FIXED): geometry.mmap_addr page-masks it
    growsdown: bool = False  # MAP_GROWSDOWN (VM_GROWSDOWN)
    stack: bool = False  # MAP_STACK (VM_NOHUGEPAGE where the profile's map_stack_nohuge says so)
    sync: bool = False  # MAP_SHARED_VALIDATE | MAP_SYNC
    read: bool = True  # PROT_READ (False for PROT_NONE or PROT_WRITE alone: x86 has no
    # write-only pages, so only PROT_NONE really drops it)


DEFAULT_MMAPS = (
    MmapShape("shared-rw"),
    MmapShape("private-rw", shared=False),
    MmapShape("misaligned-len", extra_bytes=PAGE_SIZE),
)


@dataclass(frozen=True)
class Config:
    profile: str = "v4.10"
    variant: str | None = None
    align: str = "2M"
    #: modern: per-device align (dev_dax->align, writable while unbound), one name per device;
    #: None = every device uses the region's align
    device_aligns: tuple[str, ...] | None = None
    #: devices carved from each region, each `units` align-units long, in `ranges` ranges
    devices: int = 1
    units: int = 1
    ranges: int = 1
    #: provider generations: probe -> remove -> probe again (a new region and new devices on the
    #: same minors), so that minor reuse is reachable
    generations: int = 1
    files: int = 1
    vmas: int = 1
    cpus: int = 1
    faults: int = 1
    #: the size the mm asks for first; it falls back from there (pud -> pmd -> pte)
    first_fault: str = "pud"
    mmaps: tuple[MmapShape, ...] = DEFAULT_MMAPS
    open_rdonly: bool = False
    fork: bool = False
    munmap_parts: bool = False
    #: modern: how many unbind/bind cycles the admin may run per device
    binds: int = 0
    #: device_add may fail (duplicate name, ENOMEM): explores the creation error path
    add_failure: bool = False
    #: reserved chrdev minors (nr_dax); None = large enough for every device
    nr_minors: int | None = None
    #: read()/write()/ioctl()/lseek() outcomes (self-loops: they never change state)
    syscalls: bool = False
    #: the fault-vs-teardown race alone: devices exist and are mapped from the start
    race: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        parse_align(self.align)
        for f in ("devices", "units", "ranges", "generations", "files", "vmas", "cpus"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < (0 if f in ("files", "vmas", "cpus") else 1):
                raise ValueError(f"{f}: expected a positive integer, got {v!r}")
        for f, hi in _LIMITS.items():
            if getattr(self, f) > hi:
                raise ValueError(f"{f}: at most {hi} (the state holds one slot each), got {getattr(self, f)}")
        for f in ("faults", "binds"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 0:
                raise ValueError(f"{f}: expected a non-negative integer, got {getattr(self, f)!r}")
        if self.ranges > self.units:
            raise ValueError(f"ranges: a device of {self.units} units cannot have {self.ranges} ranges")
        if self.first_fault not in ("pte", "pmd", "pud"):
            raise ValueError(f"first_fault: expected pte, pmd or pud, got {self.first_fault!r}")
        if self.device_aligns is not None:
            if len(self.device_aligns) != self.devices:
                raise ValueError(
                    f"device_aligns: expected {self.devices} entries, got {len(self.device_aligns)}"
                )
            for a in self.device_aligns:
                if parse_align(a) < parse_align(self.align):
                    raise ValueError(f"device_aligns: {a} is smaller than the region align {self.align}")
        if self.devices * self.generations > 8:
            raise ValueError("devices*generations: at most 8 device instances")

    @property
    def align_bytes(self) -> int:
        return parse_align(self.align)

    @property
    def first_fault_bytes(self) -> int:
        return SIZE_OF_NAME[self.first_fault]

    @property
    def instances(self) -> int:
        return self.devices * self.generations

    def describe(self) -> str:
        keep = (
            "profile",
            "variant",
            "align",
            "devices",
            "units",
            "ranges",
            "generations",
            "files",
            "vmas",
            "cpus",
            "faults",
            "first_fault",
            "binds",
        )
        return " ".join(
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name in keep and getattr(self, f.name) is not None
        )


@dataclass(frozen=True)
class Layout:
    """Physical ranges of every device instance. Multi-range devices leave a one-unit hole between
    ranges so that a range boundary is a real discontinuity (daxctl-create.sh test 2/3)."""

    align: int
    ranges: tuple[tuple[Range, ...], ...]  # per device instance
    aligns: tuple[int, ...] = ()  # per device instance; () = all `align`

    @staticmethod
    def of(cfg: Config) -> Layout:
        align = cfg.align_bytes
        names = cfg.device_aligns or (cfg.align,) * cfg.devices
        per_dev = [parse_align(n) for n in names]
        top = max(per_dev)
        out = []
        for g in range(cfg.generations):
            cursor = REGION_BASE + g * GENERATION_STRIDE
            for d in range(cfg.devices):
                stride = per_dev[d]
                per = [
                    cfg.units // cfg.ranges + (1 if i < cfg.units % cfg.ranges else 0)
                    for i in range(cfg.ranges)
                ]
                spans = []
                for n in per:
                    cursor = (cursor + top - 1) // top * top
                    spans.append((cursor, n * stride))
                    cursor += (n + 1) * stride  # leave a hole after each range
                out.append(make_ranges(spans))
        return Layout(align, tuple(out), tuple(per_dev) * cfg.generations)

    def align_of(self, dev: int) -> int:
        return self.aligns[dev] if self.aligns else self.align

    def size(self, dev: int) -> int:
        return sum(r.end - r.start + 1 for r in self.ranges[dev])
