"""The bus: DaxBus, the driver instance of one process, with its lock and its admin programs.

DaxBus owns the mmap core (the handler process), the regions, the module's minor ida and the
optional event log; one re-entrant lock serialises every admin, file and vma call of the process
(faults run in the handler process and never take it). Admin calls run the profile's programs
(spec/profiles.py create/remove/bind/unbind/create_failed) one step at a time, dispatched by name to
the method of the same name on the region or device (device.py). The teardown is: clear alive, a
real SRCU grace period (MappingCore.synchronize), unmap_mapping_range (zap every vma of the
device), then cdev_del, unregister, and release on the last put (spec/admin.py;
docs/semantics.md#teardown). After each call the spec's lifetime invariants over everything the bus
holds are checked (OK_BUS).

Profiles: ``modern`` (default; bind/unbind cycles, alive only while device_dax is bound) and
``v4.10`` (alive from creation until provider removal). v4.7 is spec-only (its defects are findings).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

import icontract

from devdax.spec import admin, fops, geometry
from devdax.spec.abi import O_FLAGS
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import CURRENT_PROFILE, Profile, get_profile

from . import contracts
from . import sys as dsys
from .device import (
    D_NONE,
    D_RELEASED,
    DAX_MINOR_IDA,
    DaxRegion,
    DevDax,
    SharedBacking,
    dev_refs_exact,
    kobj_lookup,
    kobj_unmap_bus,
    region_refs_exact,
)
from .errors import KernelBug, StepFailed, check_int, os_error
from .event import Event
from .file import DaxFile, PathFile
from .ida import Ida
from .table import MAX_DEVICES, C
from .tracelog import TraceLog
from .vma import VmArea, present_units
from .vmcore import VmCore

ON: Final = contracts.ENABLED
PAGE: Final = geometry.PAGE_SIZE
K4: Final = geometry.PAGE_SIZE
M2: Final = geometry.PMD_SIZE
G1: Final = geometry.PUD_SIZE
ALIGNS: Final = (K4, M2, G1)
IMPL_PROFILES: Final = ("v4.10", "modern", "linux-6.1", "linux-6.12", "linux-7.2")

#: the steps of an admin program that act on the region, not on one of its devices (spec/admin.py)
REGION_STEPS: Final = frozenset({"alloc_dax_region", "provider_put", "dax_region_unregister"})

#: one step of a program bound to its target: its name, the region or device it acts on, and
#: whether it completes the device's kill (spec/admin.py Step names the device by index)
BoundStep = tuple[str, DaxRegion | DevDax, bool]


@dataclass(frozen=True)
class _RegionCtx:
    """The part of a spec Ctx that spec/admin.py program() reads: the profile, and the devices a
    region has. The spec numbers devices across regions (Ctx.devs_of); a program here is always
    about one region, whose devices are numbered from 0 as DevDax.index does. Frozen, so that
    program()'s cache can key on it (Profile hashes by identity)."""

    prof: Profile
    ndevs: int

    def devs_of(self, region: int) -> range:
        return range(self.ndevs)


#: what the handler's counters of kernel reports become in dmesg (DaxBus.scan_handler)
HANDLER_REPORTS: Final = (
    (
        C.SLEEP_IN_ATOMIC,
        "BUG: sleeping function called from invalid context at mm/memory.c "
        "(dax_dev_huge_fault -> vm_insert_mixed -> pte_alloc inside rcu_read_lock)",
    ),
    (
        C.LOCK_HELD_RETURN,
        "WARNING: lock held when returning to user space! (dax_srcu, taken in dax_dev_huge_fault)",
    ),
)


def _owned(bus: DaxBus, obj: object, field: str) -> None:
    """A region or device of ``bus``, or a ValueError naming the argument: an object of another bus
    would be acted on under this bus's lock, against that bus's state (issue 14, class 6). A plain
    function, not a method: icontract checks the bus invariant around every method call, and this
    check runs before the caller takes the lock."""
    want = DaxRegion if field == "region" else DevDax
    if not isinstance(obj, want):
        raise ValueError(f"{field}: expected a {want.__name__}, got {type(obj).__name__}")
    region = obj if isinstance(obj, DaxRegion) else obj.region
    if region.bus is not bus:
        raise ValueError(f"{field}: {getattr(obj, 'name', obj)!s} belongs to another DaxBus")


def _impl_profile(profile: str | Profile) -> Profile:
    """The driver create_region builds: a profile impl emulates, by name or as a spec Profile
    derived from one (a variant's, whose name is the base name plus "+variant")."""
    if isinstance(profile, Profile):
        if profile.name.split("+")[0] not in IMPL_PROFILES:
            raise ValueError(f"profile: {profile.name!r} is not derived from {', '.join(IMPL_PROFILES)}")
        return profile
    if profile not in IMPL_PROFILES:
        raise ValueError(f"profile: expected one of {', '.join(IMPL_PROFILES)}, got {profile!r}")
    return get_profile(profile)


def _bus_problem(self: DaxBus) -> str:
    """The spec's lifetime invariants over everything the bus holds (checked after each admin and
    file operation, not inside one: a step is atomic, its insides are not): refcount_exact_all for
    regions, devices and cdevs; a killed device is not alive; minors held are unique. Returns the
    first violation, or "" when there is none."""
    if self.closed or self.closing:
        return ""
    minors: set[int] = set()
    for r in self.regions:
        if not region_refs_exact(r):
            return f"refcount_exact_all: {r.name} kref {r.kref.count} is not its number of holders"
        for d in r.devices:
            if not dev_refs_exact(d):
                return (
                    f"refcount_exact_all: {d.name} device kobject {d.dev_kobj.count} / cdev "
                    f"{d.cdev.count} are not their numbers of holders"
                )
            if d.dead and d.alive:
                return f"{d.name} is killed but alive"
            if d.minor_held:
                if d.minor in minors:
                    return f"minor {d.minor} is held twice"
                minors.add(d.minor)
    return ""


def _bus_consistent(self: DaxBus) -> bool:
    return not _bus_problem(self)


OK_BUS = icontract.ensure(
    lambda self: _bus_consistent(self),
    "refcounts exact, killed dead, minors unique",
    error=lambda self: icontract.ViolationError(
        f"bus contract (refcounts exact, killed dead, minors unique)\n{_bus_problem(self)}"
    ),
    enabled=ON,
)


def _check_region_args(size: int, align: int, path: str | None) -> None:
    """create_region's arguments, checked before anything exists (issue 14 classes 4 and 5)."""
    check_int("size", size, PAGE, 1 << 46)
    check_int("align", align)
    if align not in ALIGNS:
        raise ValueError(f"align: expected 4K, 2M or 1G, got {align!r}")
    if size % align:
        raise ValueError(f"size: {size:#x} is not a multiple of align {align:#x}")
    if path is not None and not isinstance(path, str):
        raise ValueError(f"path: expected a file name, got {type(path).__name__}")


class DaxBus:
    """The driver instance of one process: the mmap core (handler process), regions, the minor ida,
    the open files and vmas, and the optional event log. Every admin call runs a spec program."""

    def __init__(
        self,
        *,
        workers: int = 2,
        timeout: float = 10.0,
        events: list[Event] | None = None,
        minor_ida: Ida | None = None,
        mm_first_fault: int | None = None,
    ) -> None:
        """``mm_first_fault``: None, the emulated mm asks the largest fault size whose block lies
        inside the vma (handler.mm_fault_size); a size (4K, 2M, 1G): it asks that size first for every
        fault, as the spec's Config.first_fault and the 4.x mm (tests that compare with the spec)."""
        # Over 50 lines on purpose: every argument is validated before anything is created, then
        # every field the bus owns is declared here, each with why it exists.
        if mm_first_fault is not None and (
            isinstance(mm_first_fault, bool)
            or not isinstance(mm_first_fault, int)
            or mm_first_fault not in ALIGNS
        ):
            raise ValueError(f"mm_first_fault: expected 4K, 2M or 1G, got {mm_first_fault!r}")
        # every argument is checked before the handler process, the userfaultfd and the memfd exist:
        # a bad one must not leave them behind (issue 14, class 5)
        check_int("workers", workers, 1, 64)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 1e6:
            raise ValueError(f"timeout: expected seconds in (0, 1e6), got {timeout!r}")
        if events is not None and not callable(getattr(events, "append", None)):
            raise ValueError(f"events: expected a list (with append) or None, got {events!r}")
        ida_ok = all(callable(getattr(minor_ida, m, None)) for m in ("alloc", "free"))
        if minor_ida is not None and not ida_ok:
            raise ValueError(f"minor_ida: expected an Ida (alloc, free) or None, got {minor_ida!r}")
        self.core = VmCore(workers, timeout=timeout)
        self.core.table.t.hdr.mm_first = mm_first_fault or 0
        self._reported = {c: 0 for c, _ in HANDLER_REPORTS}
        self.events = events
        self.minor_ida = minor_ida if minor_ida is not None else DAX_MINOR_IDA
        self._lock = threading.RLock()
        self._region_ids = Ida("dax_region_ids")
        self.regions: list[DaxRegion] = []
        self._backings: list[SharedBacking] = []
        self._areas: set[VmArea] = set()
        #: mm->get_unmapped_area: False (the default) answers one page past a 1G boundary every time,
        #: the spec checker's allocator that never aligns by luck (the worst case, and what the
        #: refinement tests compare with); True is the kernel's top-down search, which the scenario
        #: backend uses to compare with real kernels (spec/geometry.py unmapped_area_topdown)
        self.mm_topdown = False
        #: the top of this mm's window for the top-down search, fixed by the first plain mapping
        self.mm_top: int | None = None
        #: [start, length) reserved above each window's top while the bus lives (impl/vma.py CEILING)
        self.ceilings: list[tuple[int, int]] = []
        self._files = 0
        self.fail_device_add = False
        #: the admin task has a fatal signal pending: a killable lock in a step fails (M16 only)
        self.fatal_signal_pending = False
        self.dmesg: list[str] = []
        self.closing = False
        self.closed = False

    # --- bookkeeping -------------------------------------------------------------------------------
    def _log(self, kind: str, obj: str, detail: str = "") -> None:
        if self.events is None:
            return
        tr = self._tracer()
        if tr is None:
            self.events.append(Event(kind, obj, detail))
            return
        with tr.section():
            self.events.append(Event(kind, obj, detail, tr.take()))

    def _tracer(self) -> TraceLog | None:
        """The shared trace log when trace validation switched it on (impl/tracelog.py)."""
        core = self.core
        if core.closed:
            return None
        tr = core.table.trace
        return tr if tr.on else None

    def _linearize(self) -> contextlib.AbstractContextManager[None]:
        """A block that is one linearization point: done inside the trace log's critical section, so
        no handler point falls between the operation and its event (a no-op when not tracing)."""
        tr = self._tracer()
        return tr.section() if tr is not None else contextlib.nullcontext()

    def _warn(self, msg: str) -> None:
        """A kernel WARN the emulation survives (as the kernel does): kept like dmesg."""
        self.dmesg.append(msg)
        self._log("warn", "kernel", msg)

    def _log_fault(self, dev: DevDax, before: dict[str, int], after: dict[str, int], outcome: str) -> None:
        """The handler's linearization points for the faults one access caused, in the order it ran
        them under the read lock (reconstructed from its counters: they happen in another process)."""
        if self.events is None:
            return
        n = after["faults"] - before["faults"]
        installs = sum(after[k] - before[k] for k in ("install_pte", "install_pmd", "install_pud"))
        sigbus = after["sigbus"] - before["sigbus"]
        for i in range(n):
            self._log("fault_lock", dev.name)
            ok = i < installs
            self._log("alive_check", dev.name, "alive" if ok or sigbus == 0 else "sigbus")
            if ok:
                self._log("insert", dev.name)
            self._log("unlock", dev.name, "NOPAGE" if ok else "SIGBUS")
        _ = outcome

    def scan_handler(self) -> None:
        """Turn the handler's new kernel reports (its counters: an install inside a non-sleepable
        read section, a fault returning with a read lock held) into dmesg lines, as the kernel
        prints them when CONFIG_DEBUG_ATOMIC_SLEEP / lockdep are on. Called after every access."""
        if self.core.closed:
            return
        for c, msg in HANDLER_REPORTS:
            n = sum(int(w.counters[c]) for w in self.core.table.t.workers)
            if n > self._reported[c]:
                self._reported[c] = n
                self._warn(msg)

    def read_nesting(self) -> list[int]:
        """The read-side nesting of each handler worker (emulated CPU): what synchronize_srcu waits
        for; non-zero between faults only if a fault returned holding the lock (M20)."""
        if self.core.closed:
            return []
        t = self.core.table
        n = int(t.t.hdr.nworkers)
        # the handler wakes the toucher from inside the section (UFFDIO_CONTINUE wakes), so a fault
        # the caller saw complete may still be on its way out: wait for it to leave (bounded)
        deadline = time.monotonic() + 5.0
        while any(t.t.workers[i].busy for i in range(n)) and time.monotonic() < deadline:
            time.sleep(0.0001)
        return [t.srcu.nesting(i) for i in range(n)]

    def unreleased_devices(self) -> list[DevDax]:
        """Devices some reference still holds (files, vmas, or a leak the spec documents)."""
        return [d for r in self.regions for d in r.devices if d.phase not in (D_NONE, D_RELEASED)]

    def _next_file(self) -> int:
        self._files += 1
        return self._files

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("bus: closed")

    # --- admin programs ----------------------------------------------------------------------------
    @OK_BUS
    def create_region(
        self,
        size: int,
        align: int = M2,
        devices: Sequence[int | Sequence[tuple[int, int]]] | None = None,
        *,
        path: str | None = None,
        profile: str | Profile = CURRENT_PROFILE,
        backing: SharedBacking | None = None,
    ) -> DaxRegion:
        """Provider probe: alloc_dax_region, the profile's create program per device, provider_put.

        ``profile``: a name in IMPL_PROFILES, or a spec Profile object derived from one of them
        (spec/variants.py Variant.profile(): the same driver with a reordered or missing step), so
        the refinement tests can show that a variant of the programs is caught.

        ``devices``: sizes carved back to back (default: one device spanning the region), or per
        device a list of (start, size) spans of the region (several ranges: modern multi-range).
        """
        _check_region_args(size, align, path)
        prof = _impl_profile(profile)
        spans = self._spans(size, align, devices)
        with self._lock:
            self._check_open()
            if len(self.core._devices) + len(spans) > MAX_DEVICES:  # the core's limit: all or nothing
                raise os_error(errno.ENOSPC, f"{len(spans)} devices: the core has {MAX_DEVICES} slots")
            if backing is None:
                backing = SharedBacking(self.core, size, path)
                self._backings.append(backing)
                created = True
            else:
                if backing.size < size:
                    raise ValueError(f"backing: {backing.size:#x} bytes, region needs {size:#x}")
                created = False
            try:
                region = DaxRegion(self, self._region_ids.alloc(), backing, align, prof, spans)
            except BaseException:
                if created:
                    self.release_backing(backing)
                raise
            self.regions.append(region)
            try:
                self._run(region, self._program(region, "probe"))
            except BaseException as e:
                try:
                    self._unwind_probe(region, backing if created else None)
                except Exception as u:  # the probe's own error is the one to report
                    e.add_note(f"unwinding the failed probe failed too: {u!r}")
                raise
            return region

    def _unwind_probe(self, region: DaxRegion, backing: SharedBacking | None) -> None:
        """A probe that failed part way (ENOSPC: no device slot left in the core) leaves nothing: as
        the kernel's devm actions undo a failed probe, the removal program takes down whatever it
        created, and the region leaves the bus (issue 14 class 3: creation is all or nothing)."""
        try:
            if not region.gone:
                self._run(region, self._program(region, "remove"))
        finally:
            if region in self.regions:
                self.regions.remove(region)
            if backing is not None:
                self.release_backing(backing)

    def release_backing(self, backing: SharedBacking) -> None:
        """Drop the provider's hold on memory this bus created: the memory of a removed region then
        goes with the region's release. Until then (or bus close) a v4.10 re-probe (enable) can lay a
        new region over the same memory, as a real provider re-probes the same namespace."""
        with self._lock:
            if backing in self._backings:
                self._backings.remove(backing)
                backing.kref.put()

    @staticmethod
    def _spans(
        size: int, align: int, devices: Sequence[int | Sequence[tuple[int, int]]] | None
    ) -> list[list[tuple[int, int]]]:
        if devices is None:
            devices = [size]
        if not isinstance(devices, Sequence) or isinstance(devices, str | bytes):
            raise ValueError(f"devices: expected a list of sizes or of span lists, got {devices!r}")
        out: list[list[tuple[int, int]]] = []
        at = 0
        for i, d in enumerate(devices):
            if isinstance(d, int) and not isinstance(d, bool):
                sp = [(at, d)]
                at += d
            elif isinstance(d, Sequence) and d and all(isinstance(x, Sequence) and len(x) == 2 for x in d):
                sp = [(check_int(f"devices[{i}].start", s), check_int(f"devices[{i}].size", n)) for s, n in d]
            else:
                raise ValueError(f"devices[{i}]: expected a size or a list of (start, size)")
            for s, n in sp:
                if n <= 0 or s % align or n % align or s + n > size:
                    raise ValueError(f"devices[{i}]: span ({s:#x}, {n:#x}) misaligned or outside the region")
            out.append(sp)
        # the kernel's resource tree (alloc_dev_dax_range -> __request_region) refuses a range that
        # overlaps one already claimed: two devices over the same memory cannot exist (class 7)
        reach, owner = 0, -1  # the furthest end claimed so far, and by which device
        for s, e, i in sorted((s, s + n, i) for i, sp in enumerate(out) for s, n in sp):
            if s < reach:
                raise ValueError(f"devices[{i}]: span at {s:#x} overlaps devices[{owner}] (up to {reach:#x})")
            reach, owner = e, i
        return out

    def _program(self, region: DaxRegion, name: str, dev: DevDax | None = None) -> list[BoundStep]:
        """spec/admin.py program(), the spec's own step list, with its targets: the region for the
        region's steps, else the device the step names by its index in the region."""
        c = cast(Ctx, _RegionCtx(region.profile, len(region.devices)))
        steps = admin.program(c, name, 0 if dev is None else dev.index)
        return [
            (step, region if step in REGION_STEPS else region.devices[i], kill) for step, i, kill in steps
        ]

    def _run(self, region: DaxRegion, prog: list[BoundStep]) -> None:
        """Walk one program in order. spec/admin.py's own walker (admin_steps, run_program) cannot
        be reused: it runs each step as a pure function of a spec State and follows every outcome
        the step allows, while here a step is a method with real effects whose one outcome is its
        return value or StepFailed. So the program is the spec's and this walker keeps its rules:
        a step that leaves (Goto) skips the rest of its device's steps, after running
        create_failed for it if asked; the step marked ``!`` completes the device's kill."""
        i = 0
        while i < len(prog):
            name, target, kill_end = prog[i]
            fn: Callable[[], str] | None = getattr(target, name, None)
            if fn is None:
                raise NotImplementedError(f"step {name} is not implemented by {type(target).__name__}")
            try:
                out = fn()
            except StepFailed as e:
                assert isinstance(target, DevDax)
                self._log("step", target.name, f"{name} {errno.errorcode[e.code]}")
                target.create_error = e.code
                if e.prog == "create_failed":
                    self._run(region, self._program(region, "create_failed", target))
                i += 1
                while i < len(prog) and prog[i][1] is target:
                    i += 1
                continue
            self._log("step", getattr(target, "name", "?"), f"{name} {out}")
            if kill_end and out != "skipped":
                assert isinstance(target, DevDax)
                target.dead = True
                self._check_no_entries(target)
            i += 1

    def _check_no_entries(self, dev: DevDax) -> None:
        """no_entry_after_kill (spec/invariants.py), checked against the real page tables: the first
        page of every unit of every vma of the device is not present (/proc/self/pagemap)."""
        if not ON:
            return
        for a in dev.areas():
            if present_units(a.start, a.end, max(dev.align, PAGE), limit=4096):
                raise KernelBug(f"{dev.name} is killed but {a!r} still has an installed entry")

    @OK_BUS
    def remove_region(self, region: DaxRegion) -> None:
        """Provider removal: the profile's remove program per device (reversed), then the region's
        devm action. Files and vmas stay; the devices release when the last of them goes."""
        _owned(self, region, "region")
        with self._lock:
            self._check_open()
            if region.gone:
                raise os_error(errno.ENODEV, f"{region.name} is already removed")
            self._run(region, self._program(region, "remove"))

    @OK_BUS
    def disable(self, dev: DevDax) -> DevDax:
        """Modern: unbind device_dax (dev_dax_kill, dev_dax_cdev_del); ENODEV if not bound.
        v4.10 has no driver binding: disabling is the provider's removal of the whole region."""
        _owned(self, dev, "dev")
        with self._lock:
            self._check_open()
            if dev.region.profile.bind_cycles:
                if not dev.bound:
                    raise os_error(errno.ENODEV, f"{dev.name} is not bound")
                self._run(dev.region, self._program(dev.region, "unbind", dev))
            elif not dev.region.gone:
                self.remove_region(dev.region)
            # else: the provider is gone already; the spec's remove program then skips every device
            # step and the region's devm action has nothing left to put: a no-op that succeeds
            return dev

    @OK_BUS
    def enable(self, dev: DevDax) -> DevDax:
        """Modern: bind device_dax again (cdev_add, run_dax); EBUSY if bound. v4.10: a new probe of
        the provider over the same memory and layout; returns the new instance of this device."""
        _owned(self, dev, "dev")
        with self._lock:
            self._check_open()
            r = dev.region
            if r.profile.bind_cycles:
                if dev.bound:
                    raise os_error(errno.EBUSY, f"{dev.name} is bound")
                if not dev.registered:
                    raise os_error(errno.ENODEV, f"{dev.name} is unregistered")
                self._run(r, self._program(r, "bind", dev))
                return dev
            if not r.gone:
                raise os_error(errno.EBUSY, f"{r.name} is still probed")
            if r.backing.kref.released:
                # the provider let go of its memory (release_backing: the namespace is destroyed)
                # and the last region over it was freed: nothing is left to probe
                raise os_error(errno.ENODEV, f"the provider of {r.name} is gone")
            new = self.create_region(
                r.backing.size,
                r.align,
                [list(d.spans) for d in r.devices],
                profile=r.profile,
                backing=r.backing,
            )
            return new.devices[dev.index]

    # --- open --------------------------------------------------------------------------------------
    @OK_BUS
    def open(self, dev: DevDax, flags: int = os.O_RDWR) -> DaxFile:
        """open("/dev/daxX.Y", flags): chrdev_open finds the cdev through the node's cached i_cdev
        while that kobject still has a reference, else through kobj_map by devt (spec/file.py
        chrdev_lookup); ENXIO if neither. O_DIRECT is EINVAL (spec/fops.py open_flags)."""
        _owned(self, dev, "dev")
        check_int("flags", flags, 0, (1 << 32) - 1)
        with self._lock:
            self._check_open()
            names = frozenset(n for n, v in O_FLAGS.items() if v and flags & v == v)
            if fops.path_only(names):
                raise ValueError("flags: an O_PATH open is DaxBus.open_path(), it opens no device")
            if fops.open_flags(names) != "ok":
                raise os_error(getattr(errno, fops.open_flags(names)), "open: O_DIRECT")
            acc = flags & os.O_ACCMODE
            if acc == os.O_ACCMODE:
                raise os_error(errno.EINVAL, "open: access mode 3")
            if dev.minor < 0:
                raise os_error(errno.ENXIO, f"{dev.name} never got a minor")
            target = self._chrdev_lookup(dev)
            if target is None:
                raise os_error(errno.ENXIO, f"no cdev for minor {dev.minor}")
            f = DaxFile(self, target, readable=acc != os.O_WRONLY, writable=acc != os.O_RDONLY, flags=flags)
            target.files.add(f)
            target.icdev_cached = True
            if target.region.profile.open_private_null_when_dead and not target.alive:
                f.private_data = None  # M21: dax_get_private() of a dead device
            self._log("open", f.name, target.name)
            return f

    def open_path(self, dev: DevDax) -> PathFile:
        """open("/dev/daxX.Y", O_PATH): the path lookup alone, so ENOENT once device_del() took the
        node out of devtmpfs; the driver is not asked (spec/fops.py path_only)."""
        _owned(self, dev, "dev")
        with self._lock:
            self._check_open()
            refused = fops.path_lookup(self.node_exists(dev), frozenset({"O_PATH"}))
            if refused:
                raise os_error(getattr(errno, refused), f"/dev/{dev.name} is gone")
            return PathFile(self, dev)

    def node_exists(self, dev: DevDax) -> bool:
        """devtmpfs has /dev/<name> from device_add() to device_del() of whichever device has that
        name now: a handle of a removed device still names the node a new instance re-created.
        open() is the inode's open (as a reopen through /proc/self/fd is, which needs no name); a
        caller that opens by path asks this first (spec/fops.py path_lookup)."""
        return dev.registered or any(
            d.registered and d.name == dev.name for r in self.regions for d in r.devices
        )

    def _chrdev_lookup(self, dev: DevDax) -> DevDax | None:
        """The cdev reference is taken here (cdev_get: kobject_get_unless_zero).

        The devt map is module-wide, as the kernel's cdev_map (minors come from the module's ida),
        but a bus serves only its own devices, each on its own core: a minor that a device of
        another bus took over is, to this bus, a node with no cdev (ENXIO). Handing out the other
        bus's device would map this core's slot of that number: another device's memory."""
        if dev.icdev_cached and dev.cdev.get_unless_zero():
            self._log("get", dev.name, f"cdev {dev.cdev.count}")
            return dev
        other = kobj_lookup(dev.minor)
        if other is not None and other.bus is self and other.cdev_mapped and other.cdev.get_unless_zero():
            self._log("get", other.name, f"cdev {other.cdev.count}")
            return other
        return None

    # --- shutdown ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap every vma, close every fd, remove every region, stop the core. Idempotent; what a
        process exit does to its files, then module unload."""
        with self._lock:
            if self.closed:
                return
            self.closing = True
            try:
                for a in list(self._areas):
                    if a in self._areas and not self.core.closed:
                        a.handle._drop(a)
                files = {f for r in self.regions for d in r.devices for f in d.files}
                for f in files:
                    if f.fd_open:
                        f.close()
                for r in list(self.regions):  # a removal takes its region out of the list
                    if not r.gone:
                        self._run(r, self._program(r, "remove"))
            finally:
                self.closed = True
                self.core.close()
                for bk in self._backings:  # the core closed every fd; drop the holds
                    bk.kref.put()
                self._backings.clear()
                kobj_unmap_bus(self)
                for start, length in self.ceilings:
                    dsys.munmap(start, length)
                self.ceilings.clear()
                for r in self.regions:
                    for d in r.devices:
                        if d.minor_held:
                            d.minor_held = False
                            self.minor_ida.free(d.minor)

    def __enter__(self) -> DaxBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ALIGNS", "HANDLER_REPORTS", "IMPL_PROFILES", "DaxBus"]
