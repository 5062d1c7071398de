"""Named properties of every reachable state (and of every step), each with its source.

A check returns None when it holds, or one sentence saying what is wrong in this state; the checker
prints that sentence under the counterexample. Each property is one small conjunction; Hyperkernel's
"refcount_exact" lemma serves every counter: an owner's count equals the number of holders that
point at it.

Kinds: "state" (a predicate on one state), "step" (on a transition: TLA+'s [][A]_v), "liveness"
(decided by the checker on the whole graph: teardown can always finish).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from devdax.spec.admin import program
from devdax.spec.ctx import Ctx
from devdax.spec.fault import sleeps_in_rcu
from devdax.spec.geometry import SIZE_OF_NAME, is_aligned, pgoff_to_phys
from devdax.spec.profiles import Lifetime
from devdax.spec.state import C_IDLE, D_CREATING, D_FAILED, D_LIVE, D_RELEASED, RG_GONE, RG_LIVE, State
from devdax.spec.system import Transition

StateCheck = Callable[[Ctx, State], str | None]
StepCheck = Callable[[Ctx, State, "Transition"], str | None]


@dataclass(frozen=True)
class Invariant:
    name: str
    kind: str  # "state" | "step" | "liveness"
    source: str
    doc: str
    check: StateCheck | None = None
    step: StepCheck | None = None


INVARIANTS: dict[str, Invariant] = {}


def invariant(source: str, kind: str = "state") -> Callable[[StateCheck], StateCheck]:
    def deco(fn: StateCheck) -> StateCheck:
        INVARIANTS[fn.__name__] = Invariant(fn.__name__, kind, source, (fn.__doc__ or "").strip(), fn)
        return fn

    return deco


def step_property(source: str) -> Callable[[StepCheck], StepCheck]:
    def deco(fn: StepCheck) -> StepCheck:
        INVARIANTS[fn.__name__] = Invariant(fn.__name__, "step", source, (fn.__doc__ or "").strip(), step=fn)
        return fn

    return deco


def refcount_exact(what: str, count: int, holders: Iterable[object]) -> str | None:
    """The one refcount lemma: count == number of holders."""
    n = sum(1 for h in holders if h)
    return None if count == n else f"{what} is {count} but {n} holders point at it"


def _files_of(s: State, d: int) -> list[int]:
    return [f for f, fl in enumerate(s.files) if fl.dev == d]


def _vmas_of_dev(s: State, d: int) -> list[int]:
    return [v for v, vma in enumerate(s.vmas) if vma.file >= 0 and s.files[vma.file].dev == d]


# -------------------------------------------------------------------------------- lifetime ----


@invariant(
    "docs/semantics.md#objects-and-references, #release-callbacks; seed commit 3 (cdev kobject lifetime)"
)
def refcount_exact_all(c: Ctx, s: State) -> str | None:
    """Every count equals the number of holders: region kref (probe, devm action, each device),
    cdev kobject (cdev_add's own reference, each open file), struct device (device_initialize, the
    cdev's pin on its parent, each mappingN child), v4.7 dax_dev kref (unregister, files, vmas), and
    each file's f_count (its fd, each vma)."""
    for r, rg in enumerate(s.regions):
        if rg.freed or rg.phase == 0:
            continue
        holders = [rg.provider_ref, rg.devm_ref] + [
            s.devs[d].holds_region and s.devs[d].phase != D_RELEASED for d in c.devs_of(r)
        ]
        if err := refcount_exact(f"region{r} kref", rg.kref, holders):
            return err
    for d, dev in enumerate(s.devs):
        if dev.phase in (0, D_RELEASED):
            continue
        files = _files_of(s, d)
        if c.prof.lifetime is Lifetime.KREF:
            checks: list[tuple[str, int, list[bool]]] = [
                (f"dax{d} kref", dev.kref, [dev.init_ref] + [True] * (len(files) + len(_vmas_of_dev(s, d)))),
                (f"dax{d} device", dev.dev_ref, [dev.registered] + [True] * len(files)),
            ]
        else:
            pins = dev.children + dev.zombies if c.prof.mapping_pins_parent else 0
            checks = [
                (f"dax{d} cdev kobject", dev.cdev_ref, [dev.cdev_live] + [True] * len(files)),
                (f"dax{d} device kobject", dev.dev_ref, [dev.init_ref, dev.cdev_ref > 0] + [True] * pins),
            ]
        for what, count, pinned_by in checks:
            if err := refcount_exact(what, count, pinned_by):
                return err
    for f, fl in enumerate(s.files):
        if fl.dev < 0:
            continue
        if err := refcount_exact(f"file{f} f_count", fl.f_count, [fl.fd] + [vma.file == f for vma in s.vmas]):
            return err
    return None


@invariant("docs/semantics.md#objects-and-references; M15, M18")
def no_use_after_free(c: Ctx, s: State) -> str | None:
    """Nothing points at freed memory and nothing touched freed memory: files at a released device,
    vmas at a free file, a device at a freed region, and no recorded use-after-free."""
    if s.oops.startswith("uaf"):
        return s.oops
    for f, fl in enumerate(s.files):
        if fl.dev >= 0 and s.devs[fl.dev].phase == D_RELEASED:
            return f"file{f} points at released dax{fl.dev}"
    for v, vma in enumerate(s.vmas):
        if vma.file >= 0 and s.files[vma.file].dev < 0:
            return f"vma{v} points at free file{vma.file}"
    for d, dev in enumerate(s.devs):
        if dev.holds_region and dev.phase != D_RELEASED and s.regions[c.region_of(d)].freed:
            return f"dax{d} points at freed region{c.region_of(d)}"
    return None


@invariant("fs/char_dev.c cdev_get/cdev_put; refcount_t underflow warning")
def no_refcount_underflow(c: Ctx, s: State) -> str | None:
    """No reference is dropped that was not taken."""
    return s.oops if s.oops.startswith("refcount") else None


@invariant("M21 (candidate): modern dax_open stores dax_get_private(), NULL while not alive")
def no_null_deref(c: Ctx, s: State) -> str | None:
    """open() must fail or return a handle that is safe to mmap."""
    return s.oops if s.oops.startswith("null") else None


@invariant("fs/char_dev.c cd_forget; lib/list_debug.c __list_del_entry_valid")
def no_list_corruption(c: Ctx, s: State) -> str | None:
    """No list the kernel debugs (CONFIG_LIST_HARDENED) is unlinked through a stale entry: evicting a
    /dev inode must find it still on its cdev's list."""
    return s.oops if s.oops.startswith("list_del") else None


@invariant("docs/semantics.md#minors-and-names (ida), #release-callbacks")
def ida_exact(c: Ctx, s: State) -> str | None:
    """dax_minor_ida and each region's ida hold exactly the ids their owners still hold."""
    want = 0
    for dev in s.devs:
        if dev.minor_held:
            want |= 1 << dev.minor
    if want != s.minors:
        return f"dax_minor_ida is {s.minors:#b} but held minors are {want:#b}"
    for r, rg in enumerate(s.regions):
        ids = 0
        for d in c.devs_of(r):
            if s.devs[d].id_held:
                ids |= 1 << s.devs[d].id
        if not rg.freed and ids != rg.ida:
            return f"region{r} ida is {rg.ida:#b} but held ids are {ids:#b}"
    return None


@invariant(
    "docs/semantics.md#minors-and-names: 'since 4.10 a minor cannot be reused while any fd or vma of the old "
    "instance exists'; M22"
)
def minor_unique(c: Ctx, s: State) -> str | None:
    """No two unreleased device instances share a minor (a stale fd could reach a new device)."""
    seen: dict[int, int] = {}
    for d, dev in enumerate(s.devs):
        if dev.minor < 0 or dev.phase in (0, D_RELEASED):
            continue
        if dev.minor in seen:
            return f"dax{seen[dev.minor]} and dax{d} both hold minor {dev.minor}"
        seen[dev.minor] = d
    return None


@invariant("M19: alloc_chrdev_region(&dax_devt, 0, nr_dax) reserves the minors the ida may give")
def minors_in_range(c: Ctx, s: State) -> str | None:
    """Every minor handed out lies inside the reserved chrdev range."""
    for d, dev in enumerate(s.devs):
        if dev.minor_held and dev.minor >= c.nr_reserved_minors():
            return f"dax{d} got minor {dev.minor} outside the {c.nr_reserved_minors()} reserved"
    return None


# ------------------------------------------------------------------------------ teardown ----


def _admin_creating(c: Ctx, s: State, d: int) -> bool:
    a = s.admin
    if a.prog in ("bind", "create_failed"):
        return a.dev == d
    if a.prog == "probe":
        prog = program(c, a.prog, a.dev)
        return (a.pc < len(prog) and prog[a.pc][1] == d) or (
            d in c.devs_of(a.dev) and s.devs[d].phase == D_CREATING
        )
    return False


@invariant("docs/semantics.md#teardown: 'Only after that [kill]: cdev_del / device_unregister / put'; M6")
def alive_implies_registered(c: Ctx, s: State) -> str | None:
    """A device is alive only while it can be reached the regular way: registered, with its cdev in
    kobj_map (modern: and bound), or while the admin is still creating it."""
    for d, dev in enumerate(s.devs):
        if not dev.alive or _admin_creating(c, s, d):
            continue
        if c.prof.lifetime is Lifetime.KREF:
            if not dev.registered:
                return f"dax{d} is alive but unregistered"
        elif not (dev.registered and dev.cdev_mapped):
            return f"dax{d} is alive but registered={dev.registered} cdev_mapped={dev.cdev_mapped}"
    return None


@invariant(
    "docs/semantics.md#teardown, points 1-4: 'no live PTE and no successful mmap after kill completes'"
)
def no_entry_after_kill(c: Ctx, s: State) -> str | None:
    """Once kill (clear alive, grace period, unmap) has completed, the device has no installed
    entry, and none is installed later (until a modern re-bind makes it alive again)."""
    for d, dev in enumerate(s.devs):
        if dev.dead:
            mine = set(_vmas_of_dev(s, d))
            for e in s.entries:
                if e.vma in mine:
                    return f"dax{d} is killed but vma{e.vma} still maps {e.addr:#x} -> {e.phys:#x}"
    return None


@invariant("M16: 'unregister always kills'; docs/semantics.md#teardown")
def removed_region_dead(c: Ctx, s: State) -> str | None:
    """After provider removal no device of the region is alive or mapped."""
    for r, rg in enumerate(s.regions):
        if rg.phase != RG_GONE:
            continue
        for d in c.devs_of(r):
            if s.devs[d].alive or s.devs[d].registered:
                return f"region{r} is removed but dax{d} is still alive={s.devs[d].alive}"
    return None


@step_property("seed commit 2: 'new mappings are only possible while the device is enabled'")
def no_map_of_dead_device(c: Ctx, s: State, tr: Transition) -> str | None:
    """mmap succeeds only on a live device, and a fault installs nothing into a killed one."""
    action, t = tr.action, tr.state
    if action == "mmap" and tr.outcome == "ok":
        new = [v for v in range(len(t.vmas)) if t.vmas[v] != s.vmas[v]]
        for v in new:
            d = t.files[t.vmas[v].file].dev
            if not s.devs[d].alive:
                return f"mmap of dead dax{d} succeeded"
    if "fault_insert" in action.split("+") and t.entries != s.entries:
        for e in t.entries - s.entries:
            d = t.files[t.vmas[e.vma].file].dev
            if t.devs[d].dead:
                return f"fault installed {e.addr:#x} into killed dax{d}"
    return None


@invariant("docs/semantics.md#teardown (M20: V410/V411 'default:' returns inside rcu_read_lock)")
def lock_balanced(c: Ctx, s: State) -> str | None:
    """A CPU that is not inside the fault handler holds no read lock."""
    for i, cpu in enumerate(s.cpus):
        if cpu.pc == C_IDLE and cpu.nest != 0:
            return f"cpu{i} left the fault handler holding {cpu.nest} read lock(s)"
    return None


@step_property("M5 (956a4cd2c957): 'Illegal context switch in RCU read-side critical section!'")
def no_sleep_in_rcu(c: Ctx, s: State, tr: Transition) -> str | None:
    """No step that may sleep runs inside a non-sleepable (plain RCU) read section."""
    return "vm_insert may sleep (pte_alloc) inside rcu_read_lock" if sleeps_in_rcu(c, tr.action) else None


@step_property("M3 (0134ed4fb9e7), M4 (70b085b06c45): fault_size > align -> FALLBACK, < align -> SIGBUS")
def fault_size_negotiated(c: Ctx, s: State, tr: Transition) -> str | None:
    """On a live vma, a fault larger than the alignment falls back and a smaller one is SIGBUS."""
    if "fault_check" not in tr.action.split("+"):
        return None
    i = int(tr.args[0])  # type: ignore[call-overload]
    v = s.cpus[i].vma if s.cpus[i].vma >= 0 else int(tr.args[1])  # type: ignore[call-overload]
    return _negotiated(tr.action, tr.outcome, c.vma_align(s, v))


@functools.cache
def _negotiated(action: str, outcome: str, align: int) -> str | None:
    """fault_size_negotiated on the outcomes of a (fused) step: a function of the step's action,
    its outcome and the device's align alone, so each combination is read once."""
    for part, out in zip(action.split("+"), outcome.split("/"), strict=False):
        if part != "fault_check" or "@" not in out:
            continue
        result, _, rest = out.partition("@")
        size_name, _, reason = rest.partition(":")
        size = SIZE_OF_NAME[size_name]
        if reason == "dead":
            continue
        if size > align and result != "FALLBACK":
            return f"a {size_name} fault on a {align:#x}-aligned device ended {result}, not FALLBACK"
        if size < align and result != "SIGBUS":
            return f"a {size_name} fault on a {align:#x}-aligned device ended {result}, not SIGBUS"
    return None


# ---------------------------------------------------------------------------- mappings ----


@invariant("seed commit 2: 'no support for private mappings'; check_vma; M1, M2")
def vmas_shared(c: Ctx, s: State) -> str | None:
    """Every device-dax vma is a shared mapping (no COW, no anonymous pages)."""
    for v, vma in enumerate(s.vmas):
        if vma.file >= 0 and not vma.mayshare:
            return f"vma{v} is a private mapping"
    return None


@step_property("M2 (325896ffdf90): 'shared read-only mapping must be allowed'; check_vma")
def shared_mmap_allowed(c: Ctx, s: State, tr: Transition) -> str | None:
    """An aligned MAP_SHARED mmap of a live device, with a prot the file's mode permits, succeeds."""
    if tr.action != "mmap" or tr.outcome == "ok":
        return None
    f, name = tr.args
    shape = next(m for m in c.cfg.mmaps if m.name == name)
    fl = s.files[int(f)]  # type: ignore[call-overload]
    valid = (
        shape.shared
        and not shape.extra_bytes
        and not shape.offset_bytes
        and shape.units > 0
        and (shape.fixed_bytes is None or is_aligned(shape.fixed_bytes, c.align_of(fl.dev)))
        and (fl.writable or not shape.write)
        and not (shape.sync and not c.prof.map_sync)
    )
    if valid and s.devs[fl.dev].alive and not fl.private_null:
        return f"mmap {name} of live dax{fl.dev} through a {'rw' if fl.writable else 'ro'} file: {tr.outcome}"
    return None


@invariant("seed commit 2: 'Mappings are always guaranteed to match the alignment'; M8")
def vmas_aligned(c: Ctx, s: State) -> str | None:
    """Every vma starts and ends on a multiple of the device alignment."""
    for v, vma in enumerate(s.vmas):
        if vma.file < 0:
            continue
        align = c.vma_align(s, v)
        if not (is_aligned(vma.start, align) and is_aligned(vma.end, align)):
            return f"vma{v} [{vma.start:#x}, {vma.end:#x}) is not {align:#x}-aligned"
    return None


@invariant("seed: 'Guarantees fault granularity with respect to a given page size'; M3/M4; pgoff_to_phys")
def entries_exact(c: Ctx, s: State) -> str | None:
    """Every entry is exactly align-sized, lies inside its vma, and maps the device page
    pgoff_to_phys names, inside one range of the device."""
    for e in s.entries:
        vma = s.vmas[e.vma]
        if vma.file < 0:
            return f"entry {e.addr:#x} belongs to unmapped vma{e.vma}"
        align = c.vma_align(s, e.vma)
        if e.size != align:
            return f"entry {e.addr:#x} of vma{e.vma} is {e.size:#x} bytes, align is {align:#x}"
        if e.addr < vma.start or e.addr + e.size > vma.end:
            return f"entry [{e.addr:#x}, +{e.size:#x}) sticks out of vma{e.vma}"
        d = s.files[vma.file].dev
        pgoff = vma.pgoff + ((e.addr - vma.start) >> 12)
        if pgoff_to_phys(c.layout.ranges[d], pgoff, e.size) != e.phys:
            return f"entry {e.addr:#x} maps {e.phys:#x}, not the device page at pgoff {pgoff}"
    return None


@invariant(
    "x86 page tables: a pmd/pud entry maps a naturally aligned block (bits 12-20 of a 2M entry are "
    "PAT/reserved); vmf_insert_pfn_pmd/_pud do not check; check_vma never looks at vm_pgoff"
)
def entries_naturally_aligned(c: Ctx, s: State) -> str | None:
    """Every installed entry maps a physical block aligned to its own size."""
    for e in s.entries:
        if e.phys % e.size:
            return (
                f"vma{e.vma} maps a {e.size:#x} entry at {e.addr:#x} to phys {e.phys:#x}, "
                f"not {e.size:#x}-aligned"
            )
    return None


# ---------------------------------------------------------------------------- quiescence ----


def quiescent(c: Ctx, s: State) -> bool:
    """Nothing more will happen by itself: every provider probed and removed, no handle left."""
    return (
        not s.admin.prog
        and s.admin.generation == c.cfg.generations
        and all(rg.phase != RG_LIVE for rg in s.regions)
        and all(fl.dev < 0 for fl in s.files)
        and all(v.file < 0 for v in s.vmas)
        and all(cpu.pc == C_IDLE and not cpu.result for cpu in s.cpus)
        and all(dev.zombies == 0 for dev in s.devs)
    )


@invariant("docs/semantics.md#release-callbacks, #minors-and-names; M18")
def no_leak_at_quiescence(c: Ctx, s: State) -> str | None:
    """At quiescence every device and region is released and every minor is back in the ida."""
    if not quiescent(c, s):
        return None
    for d, dev in enumerate(s.devs):
        if dev.phase in (D_CREATING, D_LIVE, D_FAILED):
            return f"dax{d} is never released (phase {dev.phase})"
    for r, rg in enumerate(s.regions):
        if rg.phase != 0 and not rg.freed:
            return f"region{r} is never freed (kref {rg.kref})"
    if s.minors:
        return f"minors {s.minors:#b} never returned to dax_minor_ida"
    return None


INVARIANTS["teardown_finishes"] = Invariant(
    "teardown_finishes",
    "liveness",
    "docs/semantics.md#teardown: with SRCU a leaked read lock makes synchronize_srcu never return (M20)",
    "From every reachable state the admin can finish the program it is running.",
)


def state_invariants() -> list[Invariant]:
    return [i for i in INVARIANTS.values() if i.kind == "state"]


def step_properties() -> list[Invariant]:
    return [i for i in INVARIANTS.values() if i.kind == "step"]
