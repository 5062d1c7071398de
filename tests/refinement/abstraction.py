"""The abstraction function: impl objects (devdax.impl.dax) -> a spec State (devdax.spec.state).

Written once, here, and used by the lockstep test and by the trace checker. Nothing in the devdax
package imports impl, so this lives with the tests.

What maps to what (spec field <- impl object):

* regions[g]   <- the region of provider generation g (``Refinement.regions``, in probe order); a
  generation not probed yet is ``Region()``.
* devs[g*D+i]  <- device i of generation g, every count and flag read off the real objects:
  dev_ref = the device kobject's count, cdev_ref = the cdev kobject's count, inode_ref = the
  pseudo-inode is held, alive = the core's shared alive flag the handler reads, ...
* files[k]     <- the DaxFile the driver gave spec slot k (``Refinement.file_slot``); a file whose
  f_count dropped to zero is gone.
* vmas[k]      <- the VmArea in spec slot k (``Refinement.vma_slot``), its addresses translated into
  the spec's address space by the handle's delta (the spec places every mapping in one window,
  MM_WINDOW, the impl where the kernel's mm put it).
* entries      <- the installed units of each vma, read from the real page tables
  (/proc/self/pagemap: the first page of each align unit is present), with the physical address the
  spec's layout gives the vma's page offset.
* minors       <- dax_minor_ida of the bus; tests give each bus a private ida whose ids start at
  ``minor_base``, which is subtracted (spec minors start at 0).
* gp           <- a device is between synchronize_start and synchronize_wait.
* admin        <- idle (the admin programs run inside one impl call), generation = regions probed.
* cpus         <- idle (faults complete inside one touch), with the read locks the handler's workers
  still hold (DaxBus.read_nesting: none, unless a fault returned holding one, M20).
* oops         <- the first KernelBug the impl raised or refcount underflow it WARNed (ghost kept by
  the driver, ``Refinement.oops``).

``project`` is the comparison: the checker's bounds (cpu.left, admin.binds_left) are not kernel
state and are dropped, oops is reduced to its kind, and files/vmas are compared up to slot renaming
(spec.symmetry.canonical).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devdax.impl.dax import DaxBus, DaxFile, DaxRegion, DevDax, VmArea, present_units
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import PAGE_SIZE, pgoff_to_phys
from devdax.spec.state import (
    RG_GONE,
    RG_LIVE,
    Admin,
    Cpu,
    Dev,
    DevPhase,
    Entry,
    File,
    Region,
    State,
    Vma,
)
from devdax.spec.symmetry import canonical


@dataclass
class Refinement:
    """The mapping of impl handles to spec slots, kept by whoever drives both sides."""

    regions: list[DaxRegion] = field(default_factory=list)  # generation -> impl region
    files: dict[int, tuple[DaxFile, int]] = field(default_factory=dict)  # id(file) -> (file, slot)
    vmas: dict[int, tuple[VmArea, int, int]] = field(default_factory=dict)  # id(area) -> (area, slot, delta)
    oops: str = ""

    def add_file(self, f: DaxFile, slot: int) -> None:
        self.files[id(f)] = (f, slot)

    def file_slot(self, f: DaxFile) -> int:
        return self.files[id(f)][1]

    def add_vma(self, a: VmArea, slot: int, delta: int) -> None:
        """delta = spec address - impl address for this vma (fixed at mmap time)."""
        self.vmas[id(a)] = (a, slot, delta)

    def drop_vma(self, a: VmArea) -> None:
        self.vmas.pop(id(a), None)

    def dev_index(self, c: Ctx, d: DevDax) -> int:
        for g, r in enumerate(self.regions):
            if r is d.region:
                return g * c.cfg.devices + d.index
        raise KeyError(f"{d.name}: its region is not one the driver probed")

    def note_oops(self, what: str) -> None:
        """The first crash or WARN, except that a BUG replaces a refcount WARN (spec/ctx.py bug)."""
        if not self.oops or (what.startswith("list_del") and self.oops.startswith("refcount")):
            self.oops = what


def _region(r: DaxRegion) -> Region:
    mask = 0
    for i in r.ida.used:
        mask |= 1 << i
    phase = RG_GONE if r.gone else RG_LIVE
    return Region(
        phase=phase,
        kref=r.kref.count,
        ida=mask,
        provider_ref=r.provider_ref,
        devm_ref=r.devm_ref,
        freed=r.freed,
    )


def _dev(d: DevDax, minor_base: int) -> Dev:
    return Dev(
        phase=DevPhase(d.phase),
        id=d.id,
        minor=d.minor - minor_base if d.minor >= 0 else -1,
        id_held=d.id_held,
        minor_held=d.minor_held,
        init_ref=d.init_ref,
        dev_ref=d.dev_kobj.count,
        kref=0,
        cdev_live=d.cdev_live,
        cdev_ref=d.cdev.count,
        cdev_mapped=d.cdev_mapped,
        icdev_cached=d.icdev_cached,
        icdev_stale=d.icdev_stale,
        inode_ref=int(d.inode is not None and not d.inode.released),
        holds_region=d.holds_region,
        registered=d.registered,
        bound=d.bound,
        alive=d.alive,
        children=d.children,
        zombies=d.zombies,
        dead=d.dead,
    )


def entries_of(c: Ctx, s_vma: Vma, dev: int, a: VmArea, slot: int, delta: int) -> set[Entry]:
    """Installed units of one vma (first page present), as spec entries of the vma's slot."""
    align = c.align_of(dev)
    unit = max(align, PAGE_SIZE)
    out: set[Entry] = set()
    for addr in present_units(a.start, a.end, unit):
        pgoff = a.pgoff + ((addr - a.start) >> 12)
        phys = pgoff_to_phys(c.layout.ranges[dev], pgoff, align)
        out.add(Entry(slot, addr + delta, align, -1 if phys is None else phys))
    return out


def abstraction(c: Ctx, bus: DaxBus, ref: Refinement, minor_base: int = 0) -> State:
    """The spec state the impl objects stand for (see the module doc)."""
    cfg = c.cfg
    regions = [Region()] * cfg.generations
    devs = [Dev()] * cfg.instances
    for g, r in enumerate(ref.regions):
        regions[g] = _region(r)
        for d in r.devices:
            devs[g * cfg.devices + d.index] = _dev(d, minor_base)
    files = [File()] * cfg.files
    for f, slot in ref.files.values():
        if f.f_count.released:
            continue
        assert files[slot] == File(), f"two live impl files in spec slot {slot}"
        files[slot] = File(
            dev=ref.dev_index(c, f.dev),
            writable=f.writable,
            fd=f.fd_open,
            f_count=f.f_count.count,
            private_null=f.private_data is None,
            readable=f.readable,
        )
    vmas = [Vma()] * cfg.vmas
    entries: set[Entry] = set()
    live = {id(a) for a in bus._areas}
    for a, slot, delta in ref.vmas.values():
        if id(a) not in live:
            continue
        assert vmas[slot] == Vma(), f"two live impl vmas in spec slot {slot}"
        # the flags madvise changes come from impl's own spec view of them (VmArea.advice_flags)
        v = a.advice_flags()._replace(
            file=ref.file_slot(a.file),
            start=a.start + delta,
            end=a.end + delta,
            pgoff=a.pgoff,
            shared=a.shared,
            mayshare=a.mayshare,
            write=a.write,
            read=a.read,
        )
        vmas[slot] = v
        entries |= entries_of(c, v, ref.dev_index(c, a.file.dev), a, slot, delta)
    minors = 0
    for m in bus.minor_ida.used:
        minors |= 1 << (m - minor_base)
    gp = any(d.gp for r in ref.regions for d in r.devices)
    # between faults every emulated CPU is idle; a read lock a fault returned with (M20) stays
    # visible in the handler's SRCU slots, the state synchronize_srcu waits on
    nest = [0] * cfg.cpus
    for i, n in enumerate(bus.read_nesting()):
        if cfg.cpus:
            nest[min(i, cfg.cpus - 1)] += n
    return State(
        regions=tuple(regions),
        devs=tuple(devs),
        files=tuple(files),
        vmas=tuple(vmas),
        entries=frozenset(entries),
        cpus=tuple(Cpu(nest=n) for n in nest),
        minors=minors,
        gp=gp,
        admin=Admin(generation=len(ref.regions)),
        oops=ref.oops,
    )


def oops_kind(oops: str) -> str:
    """ "uaf: ...", "null deref: ...", "refcount underflow: ..." -> the kind before the colon."""
    return oops.split(":", 1)[0].strip() if oops else ""


def project(s: State) -> State:
    """What refinement compares: kernel state only, files and vmas up to renaming."""
    s = s._replace(
        cpus=tuple(Cpu(pc=x.pc, nest=x.nest) for x in s.cpus),
        admin=Admin(prog=s.admin.prog, dev=s.admin.dev, pc=s.admin.pc, generation=s.admin.generation),
        oops=oops_kind(s.oops),
    )
    return canonical(s)


def diff(a: State, b: State) -> list[str]:
    """Readable field-by-field differences between two (projected) states: impl vs spec."""
    out: list[str] = []
    for name in State._fields:
        x, y = getattr(a, name), getattr(b, name)
        if x == y:
            continue
        if isinstance(x, tuple) and isinstance(y, tuple) and len(x) == len(y):
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                if p != q:
                    if hasattr(p, "_fields"):
                        fs = [
                            f"{f}: impl {getattr(p, f)!r} spec {getattr(q, f)!r}"
                            for f in p._fields
                            if getattr(p, f) != getattr(q, f)
                        ]
                        out.append(f"{name}[{i}]: " + "; ".join(fs))
                    else:
                        out.append(f"{name}[{i}]: impl {p!r} spec {q!r}")
        elif isinstance(x, frozenset) and isinstance(y, frozenset):
            out.append(f"{name}: impl only {sorted(x - y)}; spec only {sorted(y - x)}")
        else:
            out.append(f"{name}: impl {x!r} spec {y!r}")
    return out
