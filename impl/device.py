"""Regions and devices: struct dax_region and struct dev_dax with their lifecycle steps.

Each method named after a kernel step is one step of an admin program (spec/admin.py defines what
each does; bus.py walks the profile's programs and dispatches to these by name). A step returns its
outcome ("ok" / "skipped") or raises StepFailed to leave its program, as spec/admin.py's Goto.

Who pins whom (docs/semantics.md#objects-and-references): the cdev kobject pins its parent device kobject from
cdev_add (2f0157f "char_dev: pin parent kobject"); the device pins its region (kref_get in
devm_create_dax_dev) and its pseudo-inode (dax_inode_get / alloc_dax); the minor goes back to the
global ida only in release (v4.10 dax_dev_release; modern: the inode free path). So a minor can
never be reused while a file or vma of the old instance exists (spec invariant minor_unique).

Aliveness is separate from lifetime: ``alive`` lives in the core's shared table
(MappingCore.set_alive) so that the handler process sees the store.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import icontract

from devdax.spec import geometry
from devdax.spec.profiles import Profile, ReadLock
from devdax.spec.state import DevPhase

from . import contracts
from .core import Backing, MappingCore
from .errors import StepFailed
from .ida import Ida
from .kobject import KernelBug, Kobject, Kref
from .table import DEV_DEFAULT_LEAKS, DEV_NO_FALLBACK, DEV_NO_PUD, DEV_NO_VMA_BOUNDS, DEV_RCU

if TYPE_CHECKING:
    from .bus import DaxBus
    from .file import DaxFile
    from .vma import VmArea

ON: Final = contracts.ENABLED
#: MINORMASK + 1: modern alloc_chrdev_region(&dax_devt, 0, MINORMASK+1)
#: (docs/semantics.md#minors-and-names); no 256
MINOR_LIMIT: Final = 1 << 20


def fault_rule_bits(p: Profile) -> int:
    """The profile's version of dev_dax_huge_fault as the table's DEV_* bits, which the handler
    process reads per fault: fault_rules (M3/M4 fallback and vma bounds, PUD support), the read
    lock (M5: plain RCU) and the dispatcher's default case (M20)."""
    r = p.fault_rules
    return (
        (0 if r.fallback else DEV_NO_FALLBACK)
        | (0 if r.vma_bounds else DEV_NO_VMA_BOUNDS)
        | (0 if r.pud_supported else DEV_NO_PUD)
        | (DEV_RCU if p.read_lock is ReadLock.RCU else 0)
        | (DEV_DEFAULT_LEAKS if p.default_case_leaks_lock else 0)
    )


# ------------------------------------------------------------------------------------- registry --

#: dax_minor_ida: one per module, as in drivers/dax/super.c (shared by every DaxBus of the process)
DAX_MINOR_IDA = Ida("dax_minor_ida", MINOR_LIMIT)
#: kobj_map of the dax chrdev region: minor -> the instance whose cdev is added (cdev_add..cdev_del)
_KOBJ_MAP: dict[int, DevDax] = {}
_KOBJ_LOCK = threading.RLock()


def kobj_map(dev: DevDax) -> None:
    """cdev_add's kobj_map(): opens by devt find this instance from now on."""
    with _KOBJ_LOCK:
        _KOBJ_MAP[dev.minor] = dev


def kobj_unmap(dev: DevDax) -> None:
    """cdev_del's kobj_unmap(), unless a later instance already took the minor over."""
    with _KOBJ_LOCK:
        if _KOBJ_MAP.get(dev.minor) is dev:
            del _KOBJ_MAP[dev.minor]


def kobj_lookup(minor: int) -> DevDax | None:
    """chrdev_open's kobj_lookup() by devt."""
    with _KOBJ_LOCK:
        return _KOBJ_MAP.get(minor)


def kobj_unmap_bus(bus: DaxBus) -> None:
    """Module unload: every cdev of ``bus`` leaves the map, whatever its state."""
    with _KOBJ_LOCK:
        for k, v in list(_KOBJ_MAP.items()):
            if v.bus is bus:
                del _KOBJ_MAP[k]


# dev_dax phases: the spec's DevPhase, so impl's DevDax.phase is the spec's value, not a copy of it
D_NONE, D_CREATING, D_LIVE, D_FAILED, D_RELEASED = DevPhase


class SharedBacking:
    """The physical range a provider hands out (one memfd or file). Refcounted because a v4.10
    re-probe makes a new region over the same memory while the old region may still be pinned."""

    def __init__(self, core: MappingCore, size: int, path: str | None) -> None:
        self.core = core
        self.backing: Backing = core.create_backing(size, path)
        self.size = size
        self.path = path
        self.kref = Kref(f"backing:{path or 'memfd'}", self._release)

    def _release(self) -> None:
        if not self.core.closed and not self.backing.closed:
            try:
                self.core.close_backing(self.backing)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                # a device leaked by the modern re-bind finding still sits on it: core.close frees it


# --------------------------------------------------------------------------------------- region --


def region_refs_exact(self: DaxRegion) -> bool:
    """refcount_exact_all for one region: the provider's, the devm action's and each device's hold."""
    r = self
    if r.kref.released:
        return True
    holders = (
        int(r.provider_ref)
        + int(r.devm_ref)
        + sum(1 for d in r.devices if d.holds_region and d.phase != D_RELEASED)
    )
    return r.kref.count == holders


class DaxRegion:
    """struct dax_region: a resource of one backing, an align, a per-region id ida and a kref with
    the provider's and the devm action's references (alloc_dax_region;
    docs/semantics.md#objects-and-references)."""

    def __init__(
        self,
        bus: DaxBus,
        rid: int,
        backing: SharedBacking,
        align: int,
        profile: Profile,
        spans: Sequence[Sequence[tuple[int, int]]],
    ) -> None:
        self.bus = bus
        self.id = rid
        self.backing = backing
        self.align = align
        self.profile = profile
        self.ida = Ida(f"region{rid}.ida")
        self.kref = Kref(f"region{rid}", self._free, count=0)
        self.provider_ref = False
        self.devm_ref = False
        self.gone = False
        self.freed = False
        self.devices: list[DevDax] = [DevDax(self, i, tuple(s)) for i, s in enumerate(spans)]
        backing.kref.get()

    @property
    def name(self) -> str:
        return f"region{self.id}"

    def _free(self) -> None:
        """dax_region_free(): kfree; the region's hold on the backing goes with it."""
        self.freed = True
        self.bus._log("release", self.name)
        if self in self.bus.regions and all(d.released for d in self.devices):
            self.bus.regions.remove(self)
        self.bus._region_ids.free(self.id)
        self.backing.kref.put()

    # steps (spec/admin.py): the region's part of probe and remove
    def alloc_dax_region(self) -> str:
        """kref_init (the probe's reference) plus one for the devm action dax_region_unregister; since
        6.5 kref_init's reference is the devm action's (spec Profile.provider_region_ref)."""
        self.kref.reinit()
        self.devm_ref = True
        self.provider_ref = self.profile.provider_region_ref
        if self.provider_ref:
            self.kref.get()
        return "ok"

    def provider_put(self) -> str:
        """dax_pmem: "child dax_dev instances now own the lifetime of the dax_region" (to 6.4)."""
        if not self.provider_ref:
            return "skipped"
        self.provider_ref = False
        self._put()
        return "ok"

    def dax_region_unregister(self) -> str:
        """The region's devm action, last on provider removal."""
        self.gone = True
        if self.devm_ref:
            self.devm_ref = False
            self._put()
        return "ok"

    def _put(self) -> None:
        self.bus._log("put", self.name, f"kref {self.kref.count - 1}")
        self.kref.put()


# --------------------------------------------------------------------------------------- device --


def dev_refs_exact(self: DevDax) -> bool:
    """refcount_exact_all for one device (spec/invariants.py): cdev = own ref + files; device =
    initialize ref + the cdev's pin + the mappingN children's pins."""
    d = self
    if d.phase in (D_NONE, D_RELEASED) or d.bus.closing:
        return True
    files = len(d.files)
    if d.cdev.count != int(d.cdev_live) + files and not d.rebound_with_files:
        return False
    pins = d.children + d.zombies if d.region.profile.mapping_pins_parent else 0
    return d.rebound_with_files or d.dev_kobj.count == int(d.init_ref) + int(d.cdev.count > 0) + pins


class DevDax:
    """struct dev_dax with its embedded struct device and struct cdev, one or several ranges."""

    def __init__(self, region: DaxRegion, index: int, spans: tuple[tuple[int, int], ...]) -> None:
        self.region = region
        self.bus = region.bus
        self.index = index
        self.spans = spans
        self.align = region.align
        self.ranges = geometry.make_ranges(spans)
        self.size = geometry.device_size(self.ranges)
        self.phase = D_NONE
        self.id = -1
        self.id_held = False
        self.minor = -1
        self.minor_held = False
        self.init_ref = False
        # both kobjects start unborn (count 0): device_initialize / cdev_init make them count 1
        self.dev_kobj = Kobject(f"dax{region.id}.{index}:device", self._release, count=0)
        self.cdev = Kobject(f"dax{region.id}.{index}:cdev", self._cdev_release, parent=self.dev_kobj, count=0)
        self.inode: Kref | None = None
        self.cdev_live = False
        self.cdev_mapped = False
        self.icdev_cached = False
        self.icdev_stale = False  # the cached /dev inode's link is into a re-initialised list (F2)
        self.holds_region = False
        self.registered = False
        self.bound = False
        self.dead = False
        self.children = 0
        self.zombies = 0
        self.gp = False
        self.slot = -1  # the core's device slot (alive flag and ranges for the handler)
        self.files: set[DaxFile] = set()
        self.rebound_with_files = False  # modern re-bind cdev_init with files still open (a finding)
        self.child_kobjs: list[Kobject] = []
        self.create_error = 0  # errno of a failed creation step (0: none)

    @property
    def name(self) -> str:
        return f"dax{self.region.id}.{self.id if self.id >= 0 else '?'}"

    @property
    def alive(self) -> bool:
        return self.slot >= 0 and not self.bus.core.closed and self.bus.core.alive(self.slot)

    @property
    def released(self) -> bool:
        return self.phase == D_RELEASED

    def _created(self) -> bool:
        return self.phase in (D_CREATING, D_LIVE)

    def _log(self, kind: str, detail: str = "") -> None:
        self.bus._log(kind, self.name, detail)

    def areas(self) -> list[VmArea]:
        return [a for f in self.files for a in f.areas]

    # --- creation steps ----------------------------------------------------------------------------
    def ida_alloc_id(self) -> str:
        """ida_alloc(&dax_region->ida): the per-region instance id (the Y of daxX.Y)."""
        self.id = self.region.ida.alloc()
        self.id_held = True
        self.phase = D_CREATING
        return "ok"

    @icontract.require(lambda self: self.id_held and not self.minor_held, enabled=ON)
    def ida_alloc_minor(self) -> str:
        """The global minor (alloc_dax / ida_simple_get). On exhaustion: before device_initialize the
        half-made device is kfree'd (the id simply returned); after it put_device unwinds, unless the
        profile's error_path_kfree says the kernel kfree()s it there too (spec/admin.py)."""
        try:
            # M19: V410/V411 ida_simple_get(&dax_minor_ida, 0, 0, ...) ignored the nr_dax minors
            # alloc_chrdev_region reserved; bounded since 4.12 (profile.minor_ida_bounded)
            self.minor = self.bus.minor_ida.alloc(bounded=self.region.profile.minor_ida_bounded)
        except OSError:
            if self.init_ref and not self.region.profile.error_path_kfree:
                raise StepFailed(errno.ENOMEM, "create_failed") from None
            # kfree(dev_dax), after err_alloc_dax's free_dev_dax_id() in 6.1-7.2 (the spec's
            # error_path_kfree): the id and the region reference by hand, no release callback
            self.region.ida.free(self.id)
            self.id_held = False
            self.init_ref = False
            self.phase = D_RELEASED
            if self.slot >= 0 and not self.bus.core.closed:
                self.bus.core.remove_device(self.slot)
            self.slot = -1
            if self.holds_region:
                self.holds_region = False
                self.region._put()
            raise StepFailed(errno.ENOMEM, "skip") from None
        self.minor_held = True
        return "ok"

    def dax_inode_get(self) -> str:
        """iget5_locked on the dax pseudo-fs; its free path returns the minor (modern, V412+)."""
        self.inode = Kref(f"{self.name}:inode", self._inode_free)
        return "ok"

    def device_initialize(self) -> str:
        """ "so cdev can reference kobj parent": from here on only put_device() may free (M18). The
        core's device slot (ranges, alive flag) is created here, dead."""
        self.dev_kobj.reinit()
        self.init_ref = True
        core = self.bus.core
        self.slot = core.add_device(
            self.region.backing.backing,
            self.spans,
            self.align,
            alive=False,
            rules=fault_rule_bits(self.region.profile),
        )
        return "ok"

    @icontract.require(lambda self: self.slot >= 0, "the device exists in the core", enabled=ON)
    @icontract.ensure(lambda self: self.alive, enabled=ON)
    def set_alive(self) -> str:
        """v4.10: "from here on we're committed to teardown via dax_dev_release()"."""
        with self.bus._linearize():
            self.bus.core.set_alive(self.slot, True)
            self._log("alive_set")
        return "ok"

    @icontract.require(lambda self: not self.holds_region, enabled=ON)
    def region_get(self) -> str:
        """kref_get(&dax_region->kref): the device pins its region until its release."""
        if self.region.freed:
            raise KernelBug(f"uaf: kref_get on freed {self.region.name}")
        self.holds_region = True
        self.region.kref.get()
        self.bus._log("get", self.region.name, f"kref {self.region.kref.count}")
        return "ok"

    @icontract.require(
        lambda self: self.minor_held and self.dev_kobj.count > 0 and not self.cdev_live,
        "cdev_add needs a minor, an initialized parent and no live cdev",
        enabled=ON,
    )
    @icontract.ensure(lambda self: self.cdev_mapped and self.cdev.parent_pinned, enabled=ON)
    def cdev_add(self) -> str:
        """cdev_init() + cdev_add(): into kobj_map, the node opens from now on; the cdev kobject pins
        its parent. cdev_init re-initialises the kobject even while files of an earlier binding
        still hold it (modern dev_dax_probe on every bind: the spec's refcount_exact_all finding)."""
        if self.files:
            self.rebound_with_files = True
            self.bus._warn(
                f"kobject ({self.cdev.name}): tried to init an initialized object, something is "
                "seriously wrong (cdev_init on re-bind while files hold the cdev)"
            )
        # cdev_init's memset empties cdev->list under a /dev inode still linked there (cd_forget)
        self.icdev_stale = self.icdev_stale or self.icdev_cached
        self.cdev.reinit()
        self.cdev.pin_parent()
        self.cdev_live = self.cdev_mapped = True
        kobj_map(self)
        self._log("cdev_add", f"minor {self.minor}")
        return "ok"

    @icontract.require(lambda self: self.init_ref, "device_add after device_initialize", enabled=ON)
    def device_add(self) -> str:
        """device_add(): registered (sysfs, uevent); failure injection runs create_failed."""
        if self.bus.fail_device_add:
            raise StepFailed(errno.EEXIST, "create_failed")
        self.phase = D_LIVE
        self.registered = True
        return "ok"

    def add_mappings(self) -> str:
        """Modern alloc_dev_dax_range -> devm_register_dax_mapping: one mappingN child per range.
        Since 6d24b170a9db (M15) each child pins its parent until the child's release
        (profile.mapping_pins_parent); before it the child's release (ida_free on the parent's ida)
        relied on the parent still being there."""
        for k in range(len(self.ranges)):
            child = Kobject(f"{self.name}:mapping{k}", None, parent=self.dev_kobj)
            if self.region.profile.mapping_pins_parent:
                child.pin_parent()
            self.child_kobjs.append(child)
        self.children = len(self.ranges)
        return "ok"

    @icontract.require(lambda self: self.cdev_live, "run_dax after cdev_add (dev_dax_probe)", enabled=ON)
    @icontract.ensure(lambda self: self.alive and self.bound and not self.dead, enabled=ON)
    def run_dax(self) -> str:
        """dev_dax_probe ends with run_dax(): alive. Old vmas of an earlier binding fault through the
        same dev_dax again, so their poison markers are zapped (MappingCore.revive_device). The store
        of alive is the step's linearization point (logged with it, before the grace period and zap
        revive_device then does)."""
        with self.bus._linearize():
            self.bus.core.set_alive(self.slot, True)
            self._log("alive_set", "run_dax")
        self.bus.core.revive_device(self.slot)
        self.bound = True
        self.dead = False
        return "ok"

    # --- teardown steps ----------------------------------------------------------------------------
    def unregister_lock(self) -> str:
        """unregister_dev_dax takes dax_region_rwsem for write. Before the v6.9 locking fix (M16) it
        was down_write_killable(): with a fatal signal pending (``bus.fatal_signal_pending``) it
        failed with -EINTR and unregister_dev_dax returned, skipping this device's whole teardown.
        The fixed profile takes the lock unconditionally and ignores the signal."""
        if not self._created():
            return "skipped"
        if self.region.profile.unregister_can_be_interrupted and self.bus.fatal_signal_pending:
            raise StepFailed(errno.EINTR, "skip")
        return "ok"

    @icontract.ensure(lambda self, result: result == "skipped" or not self.alive, enabled=ON)
    def clear_alive(self) -> str:
        """kill_dax(): alive = false; new faults see it and SIGBUS."""
        if not self._created() or (self.region.profile.bind_cycles and not self.bound and not self.alive):
            return "skipped"
        with self.bus._linearize():  # the store and its event are one point of the log
            self.bus.core.set_alive(self.slot, False)
            self._log("alive_clear")
        self.bound = False
        return "ok"

    def synchronize_start(self) -> str:
        if not self._created() or (self.region.profile.bind_cycles and self.dead):
            return "skipped"
        self.gp = True
        self._log("gp_start")
        return "ok"

    @icontract.ensure(lambda self: not self.gp, "the grace period has ended", enabled=ON)
    def synchronize_wait(self) -> str:
        """synchronize_srcu(): one real grace period of the handler's read side."""
        if not self.gp:
            return "skipped"
        self.bus.core.synchronize()
        self.gp = False
        self._log("gp_end")
        return "ok"

    @icontract.require(
        lambda self: not self.alive or not self._created(),
        "unmap only after alive is cleared (docs/semantics.md#teardown)",
        enabled=ON,
    )
    def unmap_mapping_range(self) -> str:
        """unmap_mapping_range(dax inode mapping): every vma of the device, through whichever file."""
        if not self._created() or (self.region.profile.bind_cycles and self.dead):
            return "skipped"
        for a in self.areas():
            self.bus.core.zap(a.m)
        self._log("unmap", f"{len(self.areas())} vmas")
        return "ok"

    @icontract.ensure(lambda self: not self.cdev_mapped, enabled=ON)
    def cdev_del(self) -> str:
        """cdev_del(): out of kobj_map, drop the cdev's own reference."""
        if not self.cdev_live:
            return "skipped"
        self.cdev_live = self.cdev_mapped = False
        kobj_unmap(self)
        self._log("cdev_del")
        self._cdev_put()
        return "ok"

    def device_del(self) -> str:
        if not self._created():
            return "skipped"
        self.registered = False
        self.bound = False
        self.cd_forget()
        return "ok"

    def cd_forget(self) -> None:
        """evict() of the /dev inode once device_del unlinked the node and no file holds it:
        list_del_init(&inode->i_devices) BUGs on a link F2's re-bind left stale (spec/kobject.py
        cd_forget; recorded: f2 step 6 on 6.1, 6.12 and 7.2)."""
        if self.icdev_stale and not self.files and not self.registered:
            self.icdev_stale = False
            # kept like dmesg and gone on from, as the spec's state goes on past ctx.bug: a caller
            # that reports outcomes (the scenario backend) turns a new BUG line into OOPS
            self.bus.dmesg.append(f"BUG: list_del corruption: cd_forget of {self.name}'s /dev inode")

    def unregister_mappings(self) -> str:
        """free_dev_dax_ranges: each mappingN is unregistered; nothing else holds it here, so its
        release runs now and drops its pin on the parent."""
        if not self._created() or self.children == 0:
            return "skipped"
        self.zombies += self.children
        self.children = 0
        kids, self.child_kobjs = self.child_kobjs, []
        for k in kids:
            self.zombies -= 1
            self._log("put", f"{k.name}")
            k.put()
        return "ok"

    @icontract.ensure(lambda self: not self.init_ref, enabled=ON)
    def put_device(self) -> str:
        """The reference device_initialize() took; release runs here if nothing else holds it."""
        if not self.init_ref:
            return "skipped"
        self.init_ref = False
        if self.phase != D_LIVE:
            self.phase = D_FAILED
        self._dev_put()
        return "ok"

    def kfree(self) -> str:
        """M18 (the error path of __devm_create_dev_dax after device_initialize() used kfree(), not
        put_device()): the memory goes, no release callback runs, so the id, the minor, the inode,
        the region reference and the core slot it would have returned all stay taken."""
        if self.slot >= 0 and not self.bus.core.closed:
            self.bus.core.set_alive(self.slot, False)
        self.phase = D_RELEASED
        return "ok"

    # --- puts and releases -------------------------------------------------------------------------
    def _dev_put(self) -> None:
        self._log("put", f"device {self.dev_kobj.count - 1}")
        self.dev_kobj.put()

    def _cdev_put(self) -> None:
        if self.cdev.count <= 0:
            # reachable only after a modern re-bind re-initialised a held cdev (spec finding
            # no_refcount_underflow): the kernel WARNs and saturates; the put does nothing
            self.bus._warn(f"refcount_t: underflow; use-after-free ({self.cdev.name})")
            return
        self._log("put", f"cdev {self.cdev.count - 1}")
        self.cdev.put()

    def _cdev_release(self) -> None:
        """cdev_default_release: cdev_purge() (every /dev inode forgets i_cdev), then (Kobject) the
        parent pin cdev_add took is dropped."""
        self.icdev_cached = False
        self._log("release", "cdev")

    def _release(self) -> None:
        """dax_dev_release (v4.10) / dev_dax_release (modern): the last device reference is gone.
        v4.10 frees the minor here; modern frees it when the inode is freed (iput below). Then the
        id and the region reference. The core slot goes too: no vma can exist any more."""
        self._log("release", "device")
        if self.minor_held and self.region.profile.name == "v4.10":
            self._free_minor()
        if self.id_held:
            if self.region.freed:
                raise KernelBug(f"uaf: ida_free on freed {self.region.name}")
            self.region.ida.free(self.id)
            self.id_held = False
        self.phase = D_RELEASED
        if self.slot >= 0 and not self.bus.core.closed:
            self.bus.core.remove_device(self.slot)
        self.slot = -1
        inode, self.inode = self.inode, None
        if inode is not None:
            inode.put()
        elif self.minor_held:
            self._free_minor()
        if self.holds_region:
            self.holds_region = False
            self.region._put()

    def _inode_free(self) -> None:
        """dax_free_inode: the minor returns to dax_minor_ida (modern); v4.10 did it in release."""
        if self.minor_held:
            self._free_minor()

    def ida_free_minor(self) -> str:
        """v4.7 unregister (and variant M22): the minor goes back to the ida at unregister, while
        fds may still be open; only programs of such a profile name this step."""
        if not self.minor_held:
            return "skipped"
        self._free_minor()
        return "ok"

    def _free_minor(self) -> None:
        self.bus.minor_ida.free(self.minor)
        self.minor_held = False
        self._log("minor_free", str(self.minor))


__all__ = [
    "DAX_MINOR_IDA",
    "D_CREATING",
    "D_FAILED",
    "D_LIVE",
    "D_NONE",
    "D_RELEASED",
    "DaxRegion",
    "DevDax",
    "SharedBacking",
    "dev_refs_exact",
    "fault_rule_bits",
    "kobj_lookup",
    "kobj_map",
    "kobj_unmap",
    "kobj_unmap_bus",
    "region_refs_exact",
]
