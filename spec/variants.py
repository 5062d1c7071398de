"""Variants: named deviations that bring back a historical bug (docs/semantics.md#history) or a
tempting wrong teardown order (docs/semantics.md#teardown), each with the smallest configuration
where it can happen.

A variant is the profile it applies to, the switches it turns, the configuration to check it in and
the properties it must break. `devdax check --variant NAME` runs exactly that, and the test suite
demands that each one is caught with a shortest counterexample (golden files in tests/golden/).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from devdax.spec.config import Config, MmapShape
from devdax.spec.geometry import FaultRules, PrivateTest
from devdax.spec.profiles import MODERN, V47, V410, Profile, ReadLock, get_profile

SHARED_RW = MmapShape("shared-rw")
SHARED_RO = MmapShape("shared-ro", write=False)
PRIVATE_RW = MmapShape("private-rw", shared=False)
PRIVATE_NORESERVE = MmapShape("private-rw-noreserve", shared=False, noreserve=True)
PRIVATE_RO = MmapShape("private-ro", shared=False, write=False)
MISALIGNED_LEN = MmapShape("misaligned-len", extra_bytes=4096)
MISALIGNED_OFF = MmapShape("misaligned-off", offset_bytes=4096)
FIXED_MISALIGNED = MmapShape("fixed-misaligned", fixed_bytes=4096)
OVERSIZED = MmapShape("oversized", units=2)
#: MAP_FIXED at an aligned address with a file offset that is not: check_vma looks only at
#: vm_start/vm_end, so this mmap succeeds, and a huge fault then maps a misaligned physical block
FIXED_UNALIGNED_OFFSET = MmapShape("fixed-unaligned-offset", fixed_bytes=0, offset_bytes=4096)

#: What `devdax check` explores for each profile when no bounds are given. Each is exhaustive in
#: well under 30 s on 2 cores (bench/RESULTS.md) and reaches every documented finding.
PROFILE_CONFIGS: dict[str, Config] = {
    "v4.10": Config(
        profile="v4.10",
        files=2,
        vmas=2,
        cpus=2,
        generations=2,
        open_rdonly=True,
        munmap_parts=True,
        units=2,
        mmaps=(
            SHARED_RW,
            SHARED_RO,
            PRIVATE_RW,
            MISALIGNED_LEN,
            MISALIGNED_OFF,
            FIXED_MISALIGNED,
            FIXED_UNALIGNED_OFFSET,
        ),
    ),
    "v4.7": Config(
        profile="v4.7",
        first_fault="pmd",
        files=2,
        vmas=2,
        cpus=1,
        generations=2,
        units=2,
        munmap_parts=True,
        mmaps=(SHARED_RW, PRIVATE_RO, FIXED_UNALIGNED_OFFSET),
    ),
    "modern": Config(
        profile="modern",
        files=2,
        vmas=1,
        cpus=1,
        binds=1,
        units=3,
        ranges=2,
        mmaps=(SHARED_RW, PRIVATE_RW, OVERSIZED, FIXED_UNALIGNED_OFFSET),
    ),
}


# Each kernel profile explores what modern explores: they differ only where the checker's menu
# does not reach (MAP_STACK), and `devdax all` checks and proves each.
for _k in ("linux-6.1", "linux-6.12", "linux-7.2"):
    PROFILE_CONFIGS[_k] = replace(PROFILE_CONFIGS["modern"], profile=_k)


#: Documented findings a profile's default configuration cannot reach, each with the smallest
#: configuration that reproduces it: v4.7's missing fault fallback needs a fault larger than the
#: align (a pud fault on a 2M device), its unbounded minor ida more devices than reserved minors.
#: Exploring those too in the default configuration would multiply its states; `devdax all` checks
#: each here instead, and `devdax check` leaves them out of its drift rule.
FINDING_CONFIGS: dict[str, dict[str, Config]] = {
    "v4.7": {
        "fault_size_negotiated": Config(
            profile="v4.7", align="2M", first_fault="pud", files=1, vmas=1, cpus=1
        ),
        "minors_in_range": Config(profile="v4.7", devices=2, nr_minors=1, files=0, vmas=0, cpus=0, mmaps=()),
    },
}


def finding_configs(profile: str) -> dict[str, Config]:
    """The findings of ``profile`` reproduced in a configuration of their own (FINDING_CONFIGS)."""
    return FINDING_CONFIGS.get(profile.split("+")[0], {})


def default_config(profile: str) -> Config:
    get_profile(profile)
    return PROFILE_CONFIGS[profile]


@dataclass(frozen=True)
class Variant:
    name: str
    title: str
    source: str
    base: Profile
    changes: dict[str, object]
    config: Config
    breaks: tuple[str, ...]  # at least one of these must be violated
    notes: str = ""
    tags: tuple[str, ...] = field(default=())

    def profile(self) -> Profile:
        return self.base.with_(name=f"{self.base.name}+{self.name}", **self.changes)


def _race(**kw: object) -> Config:
    """The fault-vs-teardown race: one mapped device, faults in flight while the provider goes."""
    base = dict(profile="v4.10", race=True, cpus=1, faults=1, units=1, files=1, vmas=1, first_fault="pmd")
    base.update(kw)
    return Config(**base)  # type: ignore[arg-type]


V410_REMOVE = V410.remove
VARIANTS: dict[str, Variant] = {}


def _add(v: Variant) -> None:
    VARIANTS[v.name] = v


_add(
    Variant(
        "M1",
        "check_vma lets writable MAP_PRIVATE|MAP_NORESERVE through",
        "4cb19355ea19 'device-dax: fail all private mapping attempts' (v4.9-rc7)",
        V410,
        {"private_test": PrivateTest.V47_NORESERVE},
        Config(mmaps=(PRIVATE_NORESERVE,)),
        ("vmas_shared",),
    )
)
_add(
    Variant(
        "M2",
        "check_vma tests VM_SHARED: PROT_READ MAP_SHARED on an O_RDONLY fd is refused",
        "325896ffdf90 'device-dax: fix private mapping restriction, permit read-only' (v4.9)",
        V410,
        {"private_test": PrivateTest.VM_SHARED},
        Config(open_rdonly=True, mmaps=(SHARED_RO,)),
        ("shared_mmap_allowed",),
    )
)
_add(
    Variant(
        "M3",
        "no pmd fault fallback and no vma bounds check (4K-aligned device, pmd fault)",
        "0134ed4fb9e7 'device-dax: fix pmd/pte fault fallback handling' (4.11)",
        V410,
        {"fault_rules": FaultRules(fallback=False, vma_bounds=False)},
        Config(align="4K", first_fault="pmd"),
        ("fault_size_negotiated", "entries_exact"),
    )
)
_add(
    Variant(
        "M4",
        "no pud fault fallback (2M-aligned device, pud fault)",
        "70b085b06c45 'device-dax: fix pud fault fallback handling' (4.11)",
        V410,
        {"fault_rules": FaultRules(fallback=False, vma_bounds=False)},
        Config(align="2M", first_fault="pud"),
        ("fault_size_negotiated", "entries_exact"),
    )
)
_add(
    Variant(
        "M5",
        "faults under plain rcu_read_lock: vm_insert_mixed may sleep (pte_alloc)",
        "956a4cd2c957 'device-dax: switch to srcu, fix rcu_read_lock() vs pte allocation'",
        V410,
        {"read_lock": ReadLock.RCU},
        Config(),
        ("no_sleep_in_rcu",),
    )
)
_add(
    Variant(
        "M6",
        "device_add failure leaves the cdev in kobj_map, alive, with a user's mapping",
        "LKML 'device-dax: fix cdev leak' (v5 02/16, March 2017; Fixes ba09c01d2fa8)",
        V410,
        {
            "create": (
                "ida_alloc_id",
                "ida_alloc_minor",
                "dax_inode_get",
                "device_initialize",
                "cdev_add",
                "set_alive",
                "region_get",
                "device_add",
            ),
            "create_failed": ("put_device",),
        },
        Config(add_failure=True),
        ("alive_implies_registered", "no_leak_at_quiescence"),
    )
)
_add(
    Variant(
        "M15",
        "mappingN release frees its id from the parent's ida after the parent is gone",
        "6d24b170a9db 'dax: Fix dax_mapping_release() use after free' (6.4)",
        MODERN,
        {"mapping_pins_parent": False},
        Config(profile="modern", files=0, vmas=0, cpus=0, mmaps=()),
        ("no_use_after_free",),
    )
)
_add(
    Variant(
        "M16",
        "unregister_dev_dax interrupted by a signal skips the whole teardown",
        "dax/bus.c: fix locking for unregister_dax_dev / unregister_dax_mapping paths (v6.9)",
        MODERN,
        # before the fix unregister_dev_dax began "if (WARN_ON_ONCE(down_write_killable(...)))
        # return;": the lock is a step that can fail (the fixed kernels' down_write cannot)
        {
            "unregister_can_be_interrupted": True,
            "remove": (MODERN.remove[0], "unregister_lock", *MODERN.remove[1:]),
        },
        Config(profile="modern", files=0, vmas=0, cpus=0, mmaps=()),
        ("removed_region_dead", "no_leak_at_quiescence"),
    )
)
_add(
    Variant(
        "M18",
        "error path after device_initialize() uses kfree instead of put_device()",
        "device-dax: Fix refcount leak in __devm_create_dev_dax() error path (2026; Fixes c2f3011ee697)",
        MODERN,
        {"create_failed": ("kfree",)},
        Config(profile="modern", files=0, vmas=0, cpus=0, mmaps=(), add_failure=True),
        ("refcount_exact_all", "no_leak_at_quiescence", "ida_exact"),
    )
)
_add(
    Variant(
        "M19",
        "unbounded minor ida: a minor beyond the reserved chrdev range",
        "V410/V411 ida_simple_get(&dax_minor_ida, 0, 0, ...); bounded in 4.12",
        V410,
        {"minor_ida_bounded": False},
        Config(devices=2, nr_minors=1, files=0, vmas=0, cpus=0, mmaps=()),
        ("minors_in_range",),
    )
)
_add(
    Variant(
        "M20",
        "the fault dispatcher's default case returns inside the read lock",
        "V410/V411 dax_dev_huge_fault 'default: return VM_FAULT_FALLBACK;'",
        V410,
        {"default_case_leaks_lock": True, "fault_rules": FaultRules(pud_supported=False)},
        Config(first_fault="pud", files=1, vmas=1, cpus=1),
        ("lock_balanced", "teardown_finishes"),
        notes="The default case is reached by a PUD-size fault on an architecture without PUD THP. Real "
        "kernels never ask for one there, so in V410/V411 the bug is latent; here the mm asks.",
    )
)
_add(
    Variant(
        "M22",
        "v4.7 teardown on the v4.10 design: no unmap on kill, minor freed at unregister",
        "V47 unregister_dax_dev vs V410 (docs/semantics.md#teardown)",
        V410,
        {
            "remove": (
                "clear_alive",
                "synchronize_start",
                "synchronize_wait!",
                "cdev_del",
                "ida_free_minor",
                "device_del",
                "put_device",
            ),
            "minor_freed_at": "unregister",
        },
        Config(generations=2, files=1, vmas=1, cpus=1),
        ("no_entry_after_kill", "minor_unique"),
    )
)
_add(
    Variant(
        "unmap-before-synchronize",
        "unmap_mapping_range, then clear alive, then synchronize",
        "docs/semantics.md#teardown, first wrong order",
        V410,
        {
            "remove": (
                "unmap_mapping_range",
                "clear_alive",
                "synchronize_start",
                "synchronize_wait!",
                "cdev_del",
                "device_del",
                "put_device",
            )
        },
        _race(),
        ("no_entry_after_kill",),
    )
)
_add(
    Variant(
        "no-synchronize",
        "clear alive, then unmap, with no grace period",
        "docs/semantics.md#teardown, second wrong order",
        V410,
        {"remove": ("clear_alive", "unmap_mapping_range!", "cdev_del", "device_del", "put_device")},
        _race(),
        ("no_entry_after_kill",),
    )
)
_add(
    Variant(
        "synchronize-before-clear",
        "synchronize, then clear alive, then unmap",
        "docs/semantics.md#teardown, third wrong order",
        V410,
        {
            "remove": (
                "synchronize_start",
                "synchronize_wait",
                "clear_alive",
                "unmap_mapping_range!",
                "cdev_del",
                "device_del",
                "put_device",
            )
        },
        _race(),
        ("no_entry_after_kill",),
    )
)
_add(
    Variant(
        "cdev_del-before-kill",
        "cdev_del and device_del before the kill",
        "docs/semantics.md#teardown, fifth wrong order",
        V410,
        {
            "remove": (
                "cdev_del",
                "device_del",
                "clear_alive",
                "synchronize_start",
                "synchronize_wait",
                "unmap_mapping_range!",
                "put_device",
            )
        },
        Config(files=1, vmas=1, cpus=0),
        ("alive_implies_registered",),
    )
)
_add(
    Variant(
        "M21",
        "modern dax_open stores a NULL private_data outside the alive window; mmap dereferences it",
        "candidate from docs/semantics.md#open-and-release: dev_dax_probe does cdev_add() before "
        "run_dax(); unbind runs dev_dax_kill before dev_dax_cdev_del",
        MODERN,
        {},
        Config(profile="modern", files=1, vmas=1, cpus=0, mmaps=(SHARED_RW,)),
        ("no_null_deref",),
        notes="Not a reverted fix: the modern profile itself. The verdict is the checker's.",
    )
)
_add(
    Variant(
        "fixed-unaligned-offset",
        "MAP_FIXED at an aligned address with an unaligned file offset",
        "check_vma (drivers/dax/device.c) tests vm_start/vm_end only; __dev_dax_pmd_fault passes "
        "linear_page_index(vma, pmd_addr) to dax_pgoff_to_phys and the result to vmf_insert_pfn_pmd",
        V410,
        {},
        Config(units=2, files=1, vmas=1, cpus=1, mmaps=(FIXED_UNALIGNED_OFFSET,)),
        ("entries_naturally_aligned",),
        notes="Not a reverted fix: the profile itself (v4.10, and modern and v4.7 alike). The verdict is "
        "the checker's.",
    )
)
_add(
    Variant(
        "rebind-cdev-init",
        "modern re-bind: cdev_init() re-initialises a cdev kobject old files hold",
        "dev_dax_probe: 'cdev = inode->i_cdev; cdev_init(cdev, &dax_fops); ... cdev_add()' on every bind",
        MODERN,
        {},
        Config(profile="modern", files=1, vmas=0, cpus=0, binds=1, mmaps=()),
        ("refcount_exact_all", "no_refcount_underflow"),
        notes="Not a reverted fix: the modern profile itself, found by this checker.",
    )
)


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"variant: unknown {name!r}; `devdax variants` lists them") from None


def variant_config(v: Variant) -> Config:
    """The variant's configuration, on its base profile."""
    return replace(v.config, profile=v.base.name, variant=v.name)


_ = (V47,)
