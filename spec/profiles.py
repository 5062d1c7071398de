"""Kernel profiles: which driver the state machine is, as a set of named switches.

A profile is one design era of drivers/dax, faithful to the code of that era (docs/semantics.md#versions
names the code each follows). Historical bugs that were fixed *within* an era are not baked into
its profile; each is a variant (spec/variants.py) that turns one switch back. v4.7 is the exception
the design asks for: it is the driver as merged, with its known defects, and reports them as its
documented findings.

Every switch names the kernel function or commit it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from devdax.spec.geometry import FaultRules, PrivateTest

# Names of teardown/creation steps used in programs (spec/admin.py defines each one).
Program = tuple[str, ...]


class ReadLock(Enum):
    #: rcu_read_lock(): the section may not sleep (seed commit 2: "Faults are handled under
    #: rcu_read_lock to synchronize with the enabled state of the device")
    RCU = "rcu"
    #: srcu_read_lock(&dax_srcu) since 956a4cd2c957 (M5): sleeping inside is allowed
    SRCU = "srcu"


class OpenLookup(Enum):
    #: v4.7 dax_dev_open: class_find_device() on i_rdev under device_lock: ENXIO once unregistered
    CLASS_FIND_DEVICE = "class_find_device"
    #: v4.10+: chrdev_open finds the embedded cdev through kobj_map, or through the /dev inode's
    #: cached i_cdev while the cdev kobject still has a reference (fs/char_dev.c)
    CHRDEV = "chrdev"


class Lifetime(Enum):
    #: v4.7: the dax_dev has its own kref, taken by open, mmap and vm_ops->open
    KREF = "kref"
    #: v4.10+: the embedded cdev kobject pins the device kobject (ba09c01d2fa8, seed commit 3)
    CDEV_KOBJECT = "cdev-kobject"


@dataclass(frozen=True, eq=False)
class Profile:
    name: str
    summary: str
    source: str
    read_lock: ReadLock
    open_lookup: OpenLookup
    lifetime: Lifetime
    #: when the global minor returns to dax_minor_ida: "unregister" (v4.7) or "release" (v4.10+)
    minor_freed_at: str
    #: dax_open stores a NULL private_data while the device is not alive (modern dax_get_private)
    open_private_null_when_dead: bool
    #: a device is alive only while the device_dax driver is bound; bind/unbind cycles exist
    bind_cycles: bool
    #: vm_ops->split / ->may_split refuses a misaligned split (M8, 9702cffdbf21, 4.15)
    has_split: bool
    #: dax_mmap() sets VM_MIXEDMAP (4.x; gone in modern): fork copies the parent's entries (modern
    #: children refault), and VM_MIXEDMAP is in VM_SPECIAL, which madvise(MADV_DODUMP) refuses
    vm_mixedmap: bool
    #: mmap_supported_flags = MAP_SYNC
    map_sync: bool
    private_test: PrivateTest
    fault_rules: FaultRules
    #: bound of the minor ida (exclusive); None = unbounded ida_simple_get(.., 0, 0) (M19)
    minor_ida_bounded: bool
    #: each modern dev_dax has per-range child devices "mappingN" that pin their parent (M15 fix)
    mapping_children: bool
    mapping_pins_parent: bool
    #: M20: the fault dispatcher's default case returns without the read unlock
    default_case_leaks_lock: bool
    #: M16: unregister_dev_dax may return early (down_write_killable interrupted) and skip teardown
    unregister_can_be_interrupted: bool
    #: M18: a creation error after device_initialize() other than device_add's frees by hand and
    #: kfree()s the dev_dax instead of put_device(). __devm_create_dev_dax in 6.1, 6.12 and 7.2 (bus.c)
    #: still does: err_alloc_dax: kfree(pgmap); err_pgmap: free_dev_dax_ranges(); err_range:
    #: free_dev_dax_id() (ida_free, dax_region_put); err_id: kfree(dev_dax). Reached in the spec when
    #: alloc_dax() finds no minor (admin.ida_alloc_minor)
    error_path_kfree: bool
    #: M6: on device_add failure only put_device() runs: no kill, no cdev_del
    add_failure_leaks_cdev: bool
    #: the admin programs: probe (per device), remove (per device), bind, unbind
    create: Program
    create_failed: Program
    remove: Program
    bind: Program = ()
    unbind: Program = ()
    #: invariants this profile does not promise, with the reason (documented findings)
    findings: dict[str, str] = field(default_factory=dict)
    #: mmap(MAP_STACK) sets VM_NOHUGEPAGE: include/linux/mman.h calc_vm_flag_bits has
    #: "_calc_vm_trans(flags, MAP_STACK, VM_NOHUGEPAGE)" in 6.12 and 7.2, not in 6.1 (recorded: k09
    #: steps 41-42, a PTE-sized first fault that SIGBUSes on a 2M device)
    map_stack_nohuge: bool = False
    #: F1's fix (docs/findings/0001-device-dax-refuse-open-of-a-device-that-is-not-alive.patch):
    #: dax_open returns -ENXIO when dax_get_private() is NULL instead of storing it; chrdev_open has
    #: cached i_cdev by then and drops the cdev reference it took (fs/char_dev.c out_cdev_put)
    open_refuses_dead: bool = False
    #: F2's fix (docs/findings/0002-device-dax-allocate-the-cdev-per-binding.patch): dev_dax_probe
    #: takes a new cdev_alloc() cdev per binding instead of cdev_init() on the one embedded in the
    #: dax inode, so files of an earlier binding keep their own kobject. The model counts a device's
    #: cdevs as one kobject (their summed count) whose parent pin is held while any of them is: the
    #: device is released at the same moment, when the last of them goes (spec/admin.py cdev_add)
    cdev_per_binding: bool = False
    #: F3's fix (docs/findings/0003-device-dax-refuse-a-vma-whose-file-offset-is-not-aligned.patch):
    #: check_vma also refuses a vm_pgoff that is not a multiple of the device's align
    check_vma_pgoff: bool = False
    #: the provider holds a region reference of its own while it creates the devices: 6.1
    #: alloc_dax_region() has kref_init() plus "kref_get(&dax_region->kref)" for the devm action
    #: dax_region_unregister, and dax_pmem/dax_hmem drop theirs after devm_create_dev_dax() ("child
    #: dev_dax instances now own the lifetime of the dax_region"). 6.12 and 7.2 (since 6.5) have no
    #: kref_get there and no dax_region_put in the providers: kref_init() is the devm action's.
    #: Either way a dynamic id (alloc_dev_dax_id) holds one until free_dev_dax_id()
    provider_region_ref: bool = True

    def with_(self, **changes: object) -> Profile:
        return replace(self, **changes)  # type: ignore[arg-type]


# Steps that end with "!" complete the kill: after them the protocol promises no entry of the device
# exists and none can be installed (docs/semantics.md#teardown, point 4). The marker is what the
# invariant no_entry_after_kill reads; it is not a kernel action.

V47 = Profile(
    name="v4.7",
    summary="seed commit 2 as merged: dax_dev kref, register_chrdev, rcu, no unmap on unregister",
    source="dee410792419 '/dev/dax, core: file operations and dax-mmap'; V47 drivers/dax/dax.c",
    read_lock=ReadLock.RCU,
    open_lookup=OpenLookup.CLASS_FIND_DEVICE,
    lifetime=Lifetime.KREF,
    minor_freed_at="unregister",
    open_private_null_when_dead=False,
    bind_cycles=False,
    has_split=False,
    vm_mixedmap=True,
    map_sync=False,
    private_test=PrivateTest.V47_NORESERVE,
    fault_rules=FaultRules(fallback=False, vma_bounds=False),
    minor_ida_bounded=False,
    mapping_children=False,
    mapping_pins_parent=False,
    default_case_leaks_lock=False,
    unregister_can_be_interrupted=False,
    error_path_kfree=False,
    add_failure_leaks_cdev=False,
    create=("ida_alloc_id", "ida_alloc_minor", "kref_init", "set_alive", "region_get", "device_create"),
    create_failed=(),
    # unregister_dax_dev: alive = false; synchronize_rcu(); device_unregister; ida frees; put
    remove=(
        "clear_alive",
        "synchronize_start",
        "synchronize_wait!",
        "device_unregister",
        "ida_free_id",
        "ida_free_minor",
        "dax_dev_put",
    ),
    findings={
        "no_entry_after_kill": "M22: v4.7 never calls unmap_mapping_range; entries outlive kill",
        "minor_unique": "M22: v4.7 frees the minor at unregister while fds may still be open",
        "vmas_shared": "M1: check_vma lets MAP_PRIVATE through unless it is writable without NORESERVE",
        "no_sleep_in_rcu": "M5: vm_insert_mixed may allocate a page table inside rcu_read_lock",
        "vmas_aligned": "M8: no ->split before 4.15: munmap at a misaligned address splits the vma there",
        "fault_size_negotiated": "M3/M4: no pmd/pud fault fallback before 4.11 (0134ed4fb9e7, "
        "70b085b06c45): a fault larger than the device align is served at "
        "its own size, a smaller one is not refused",
        "minors_in_range": "M19: ida_simple_get(&dax_minor_ida, 0, 0, ...) has no upper bound before "
        "4.12: a device gets a minor beyond the chrdev range alloc_chrdev_region "
        "reserved",
        "entries_naturally_aligned": "check_vma never looks at vm_pgoff: MAP_FIXED at an aligned address "
        "with a 4K file offset succeeds and the next huge fault inserts a "
        "pmd/pud for a physical block that is not size-aligned",
    },
)

V410 = Profile(
    name="v4.10",
    summary="seed commit 3: embedded cdev, pseudo-inode, unmap on kill, minor freed at release",
    source="ba09c01d2fa8 'dax: convert to the cdev api'; V410/V411 drivers/dax/dax.c with the 2017 "
    "fixes M3-M6 (0134ed4fb9e7, 70b085b06c45, 956a4cd2c957, cdev_device_add) and M8, M19, M20",
    read_lock=ReadLock.SRCU,
    open_lookup=OpenLookup.CHRDEV,
    lifetime=Lifetime.CDEV_KOBJECT,
    minor_freed_at="release",
    open_private_null_when_dead=False,
    bind_cycles=False,
    has_split=True,
    vm_mixedmap=True,
    map_sync=False,
    private_test=PrivateTest.VM_MAYSHARE,
    fault_rules=FaultRules(),
    minor_ida_bounded=True,
    mapping_children=False,
    mapping_pins_parent=False,
    default_case_leaks_lock=False,
    unregister_can_be_interrupted=False,
    error_path_kfree=False,
    add_failure_leaks_cdev=False,
    # devm_create_dax_dev after the cdev-leak fix: ids, inode, device_initialize, cdev_init, alive,
    # region ref, then cdev_device_add (cdev_add, device_add)
    create=(
        "ida_alloc_id",
        "ida_alloc_minor",
        "dax_inode_get",
        "device_initialize",
        "set_alive",
        "region_get",
        "cdev_add",
        "device_add",
    ),
    findings={
        "entries_naturally_aligned": "check_vma never looks at vm_pgoff: MAP_FIXED at an aligned address "
        "with a 4K file offset succeeds and the next huge fault inserts a "
        "pmd/pud for a physical block that is not size-aligned",
    },
    # the error path of cdev_device_add: kill_dax_dev(); put_device()  (M6 fix)
    create_failed=(
        "clear_alive",
        "synchronize_start",
        "synchronize_wait",
        "unmap_mapping_range!",
        "cdev_del",
        "put_device",
    ),
    # unregister_dax_dev: kill_dax_dev(); cdev_device_del(); put_device()
    remove=(
        "clear_alive",
        "synchronize_start",
        "synchronize_wait",
        "unmap_mapping_range!",
        "cdev_del",
        "device_del",
        "put_device",
    ),
)

MODERN = Profile(
    name="modern",
    summary="dax bus (v6.x): srcu, alive only while device_dax is bound, bind/unbind cycles, "
    "per-device align, multi-range devices, fault fallback",
    source="drivers/dax/{super,bus,device}.c (V58, V60, V63)",
    read_lock=ReadLock.SRCU,
    open_lookup=OpenLookup.CHRDEV,
    lifetime=Lifetime.CDEV_KOBJECT,
    minor_freed_at="release",
    open_private_null_when_dead=True,
    bind_cycles=True,
    has_split=True,
    vm_mixedmap=False,
    map_sync=True,
    private_test=PrivateTest.VM_MAYSHARE,
    fault_rules=FaultRules(),
    minor_ida_bounded=True,
    mapping_children=True,
    mapping_pins_parent=True,
    default_case_leaks_lock=False,
    unregister_can_be_interrupted=False,
    error_path_kfree=True,
    add_failure_leaks_cdev=False,
    # __devm_create_dev_dax (bus.c, 6.1, 6.12 and 7.2 alike): alloc_dev_dax_id() (the region ida and
    # kref_get of the region, one function), device_initialize, alloc_dax (minor + inode), "a
    # device_dax instance is dead while the driver is not attached", device_add, then
    # devm_add_action_or_reset(unregister_dev_dax) and devm_register_dax_mapping(mapping0): the
    # mappingN child comes after device_add. The bus probes device_dax inside device_add, or later
    # when the driver loads; dev_dax_probe ends cdev_add(); run_dax(). The spec takes the second
    # order (the child before the probe); the children pin only the device, which nothing can
    # release while it is being created.
    create=(
        "ida_alloc_id",
        "region_get",
        "device_initialize",
        "ida_alloc_minor",
        "dax_inode_get",
        "device_add",
        "add_mappings",
        "cdev_add",
        "run_dax",
    ),
    # device_add failure: "kill_dev_dax(dev_dax); put_device(dev);" (right in every version read);
    # alloc_dax failure takes err_alloc_dax instead (error_path_kfree)
    create_failed=("put_device",),
    # provider removal runs the devm actions of the region's parent in reverse: mapping0's
    # unregister_dax_mapping (registered after unregister_dev_dax) first, then unregister_dev_dax:
    # kill_dev_dax(); device_del(); free_dev_dax_ranges() (__release_region only); put_device().
    # device_del() deletes the devtmpfs node before bus_remove_device() unbinds device_dax, whose
    # devm actions run dev_dax_kill (a second kill: nothing left to clear or unmap) and then
    # dev_dax_cdev_del (drivers/base/core.c device_del). 6.1 takes no lock in unregister_dev_dax,
    # 6.12 and 7.2 a down_write(&dax_region_rwsem) that cannot fail: no step (M16's killable lock is
    # one, in its variant)
    remove=(
        "unregister_mappings",
        "clear_alive",
        "synchronize_start",
        "synchronize_wait",
        "unmap_mapping_range!",
        "device_del",
        "cdev_del",
        "put_device",
    ),
    bind=("cdev_add", "run_dax"),
    # device_dax remove: devm actions in reverse: dev_dax_kill (kill_dax, unmap) then dev_dax_cdev_del,
    # then devm_memremap_pages' memunmap_pages() (percpu_ref_kill, wait for the pgmap's references:
    # none are left once every entry is unmapped, as the spec has no get_user_pages pins)
    unbind=("clear_alive", "synchronize_start", "synchronize_wait", "unmap_mapping_range!", "cdev_del"),
    findings={
        "entries_naturally_aligned": "check_vma never looks at vm_pgoff: MAP_FIXED at an aligned address "
        "with a 4K file offset succeeds and the next huge fault inserts a "
        "pmd/pud for a physical block that is not size-aligned",
        "no_null_deref": "M21 (decided by this checker: reachable): open() between cdev_add and run_dax in "
        "dev_dax_probe, or between dev_dax_kill and dev_dax_cdev_del on unbind, stores "
        "private_data = dax_get_private() == NULL; mmap then calls check_vma(NULL)",
        "refcount_exact_all": "re-bind: dev_dax_probe runs cdev_init() on the embedded cdev whose kobject "
        "is still held by files opened during the previous binding",
        "no_refcount_underflow": "consequence of the re-bind cdev_init(): the old file's cdev_put and the "
        "next cdev_del both drop the one reference cdev_init() set",
        "no_leak_at_quiescence": "consequence of the re-bind cdev_init(): the second pin cdev_add() took on "
        "the parent is never dropped, so the dev_dax is never released",
        "no_list_corruption": "consequence of the re-bind cdev_init(): it emptied cdev->list under the /dev "
        "inode a held file linked there, and cd_forget() at that inode's eviction BUGs (f2 step 6 on 6.1, "
        "6.12, 7.2)",
    },
)

#: What a named Debian kernel does, each tied to its recordings in tests/kernel-results/; the
#: differences between them are switches with a source. `modern` is the newest of them.
LINUX_6_1 = MODERN.with_(name="linux-6.1", summary="Linux 6.1 (Debian 12): " + MODERN.summary)
LINUX_6_12 = MODERN.with_(
    name="linux-6.12",
    summary="Linux 6.12 (Debian 12 backports): " + MODERN.summary,
    map_stack_nohuge=True,
    provider_region_ref=False,
)
LINUX_7_2 = MODERN.with_(
    name="linux-7.2",
    summary="Linux 7.2 (Debian 14): " + MODERN.summary,
    map_stack_nohuge=True,
    provider_region_ref=False,
)
MODERN = MODERN.with_(map_stack_nohuge=True, provider_region_ref=False)

PROFILES: dict[str, Profile] = {p.name: p for p in (V47, V410, MODERN, LINUX_6_1, LINUX_6_12, LINUX_7_2)}
#: The profile `devdax check` and `devdax prove` take when none is named.
DEFAULT_PROFILE = "v4.10"
#: The profile of the kernels `devdax conformance` boots (6.1, 6.12, 7.2): what scenario files and the
#: emulation assume when they name none.
CURRENT_PROFILE = "modern"


#: Profiles defined outside spec/, by the name Config.profile carries: a driver author's profile file
#: under its path (devdax/profile_file.py registers it; docs/profile-files.md). Nothing in spec/ adds
#: to it, and PROFILES (what the docs, `devdax all` and the tables list) never sees these.
EXTRA_PROFILES: dict[str, Profile] = {}


def kernel_profile(linux: str) -> str:
    """The profile of a kernel line `devdax conformance` runs ("6.1", "6.12", "7.2"): what a
    scenario that names the current profile is compared against on that kernel."""
    name = f"linux-{linux}"
    return name if name in PROFILES else CURRENT_PROFILE


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name] if name in PROFILES else EXTRA_PROFILES[name]
    except KeyError:
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)}, got {name!r}") from None
