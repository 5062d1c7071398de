"""The admin thread: provider probe and removal, driver bind and unbind, one kernel step at a time.

Creation and teardown are programs (lists of step names in spec/profiles.py) so that a variant can
reorder or drop a step and the checker sees every interleaving of each step with faults, opens and
mmaps. A step is a guarded function like any action: it returns the possible outcomes, or None while
it is blocked (synchronize_wait waits for pre-existing readers), the convention of every action in
spec/ (state.Outcome). A step that does not apply to this device (the kernel function returns early,
or the object was never created) returns SKIP, and its program moves past it at once.

Teardown protocol (docs/semantics.md#teardown): alive = false; synchronize_(s)rcu();
unmap_mapping_range(); only then cdev_del / device_unregister / put. Creation order:
docs/semantics.md#creation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Final

from devdax.spec.ctx import Ctx, oops
from devdax.spec.kobject import cd_forget, cdev_put, dax_dev_put, device_put, put_dev, put_region, region_put
from devdax.spec.state import (
    C_IDLE,
    D_CREATING,
    D_FAILED,
    D_LIVE,
    D_NONE,
    D_RELEASED,
    RG_GONE,
    RG_LIVE,
    Admin,
    State,
    ida_alloc,
)

Step = tuple[str, int, bool]  # (step name, device or region index, completes the kill)


@dataclass(frozen=True)
class Goto:
    """A step that leaves its program: run `prog` for `dev`, then come back after this device."""

    prog: str  # "create_failed" or "skip" (skip the rest of this device's steps)
    state: State


StepOutcome = tuple[str, State | Goto | None]  # SKIP's None: the step does not apply here
StepFn = Callable[[Ctx, State, int], list[StepOutcome] | None]
STEPS: Final[dict[str, StepFn]] = {}


def step(fn: StepFn) -> StepFn:
    STEPS[fn.__name__] = fn
    return fn


def _parse(entry: str, arg: int) -> Step:
    return (entry.rstrip("!"), arg, entry.endswith("!"))


@cache
def program(c: Ctx, name: str, arg: int) -> tuple[Step, ...]:
    """The steps of one admin program; probe/remove take a generation, the others a device."""
    p = c.prof
    if name == "probe":
        body = [_parse(e, d) for d in c.devs_of(arg) for e in p.create]
        return (("alloc_dax_region", arg, False), *body, ("provider_put", arg, False))
    if name == "remove":
        body = [_parse(e, d) for d in reversed(c.devs_of(arg)) for e in p.remove]
        return (*body, ("dax_region_unregister", arg, False))
    entries = {"bind": p.bind, "unbind": p.unbind, "create_failed": p.create_failed}[name]
    return tuple(_parse(e, arg) for e in entries)


def ok(s: State, label: str = "ok") -> list[StepOutcome]:
    return [(label, s)]


SKIP: Final[list[StepOutcome]] = [("skipped", None)]


def _created(s: State, d: int) -> bool:
    return s.devs[d].phase in (D_CREATING, D_LIVE)


# ------------------------------------------------------------------------------------- region ----


@step
def alloc_dax_region(c: Ctx, s: State, r: int) -> list[StepOutcome]:
    """alloc_dax_region(): kref_init (the probe's reference), plus one for the devm action
    dax_region_unregister (v4.10+; v4.7 had no devm action). Since 6.5 the kref_init reference is
    the devm action's and the probe holds none (Profile.provider_region_ref)."""
    devm = c.prof.name != "v4.7"
    prov = c.prof.provider_region_ref or not devm
    rg = s.regions[r]._replace(phase=RG_LIVE, kref=prov + devm, provider_ref=prov, devm_ref=devm)
    return ok(put_region(s, r, rg))


@step
def provider_put(c: Ctx, s: State, r: int) -> list[StepOutcome]:
    """dax_pmem probe: "child dax_dev instances now own the lifetime of the dax_region" (to 6.4)."""
    if not s.regions[r].provider_ref:
        return SKIP
    s = put_region(s, r, s.regions[r]._replace(provider_ref=False))
    return ok(region_put(c, s, r))


@step
def dax_region_unregister(c: Ctx, s: State, r: int) -> list[StepOutcome]:
    """The devm action of the region, run last on provider removal; v4.7 has none."""
    rg = s.regions[r]._replace(phase=RG_GONE)
    if not rg.devm_ref:
        return ok(put_region(s, r, rg))
    s = put_region(s, r, rg._replace(devm_ref=False))
    return ok(region_put(c, s, r))


# ------------------------------------------------------------------------------------ creation ----


@step
def ida_alloc_id(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """ida_simple_get(&dax_region->ida, 0, 0): the per-region instance id, unbounded."""
    r = c.region_of(d)
    rg = s.regions[r]
    i = ida_alloc(rg.ida)
    assert i is not None
    s = put_region(s, r, rg._replace(ida=rg.ida | (1 << i)))
    return ok(put_dev(s, d, s.devs[d]._replace(phase=D_CREATING, id=i, id_held=True)))


@step
def ida_alloc_minor(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """The global minor: unbounded in v4.10 (M19), bounded since 4.12. On exhaustion creation fails:
    before device_initialize the id is simply returned; after it put_device should unwind (M18's
    fix), but __devm_create_dev_dax's err_alloc_dax path (6.1, 6.12, 7.2) frees by hand
    (free_dev_dax_id: ida_free and dax_region_put) and kfree()s the dev_dax (error_path_kfree)."""
    m = ida_alloc(s.minors, c.minor_limit())
    dev = s.devs[d]
    if m is None:
        if dev.init_ref and not c.prof.error_path_kfree:
            return [("ENOMEM", Goto("create_failed", s))]
        r = c.region_of(d)
        s = put_region(s, r, s.regions[r]._replace(ida=s.regions[r].ida & ~(1 << dev.id)))
        # kfree(dev_dax): nothing else holds it. After device_initialize() the kobject is abandoned
        # with the reference it holds and the name dev_set_name() allocated: a leak of the name,
        # which the state does not carry (kmemleak would report it); no count of the spec is left
        gone = dev._replace(phase=D_RELEASED, id_held=False, init_ref=False, holds_region=False)
        s = put_dev(s, d, gone)
        if dev.holds_region:  # free_dev_dax_id(): dax_region_put()
            s = region_put(c, s, r)
        return [("ENOMEM", Goto("skip", s))]
    s = s._replace(minors=s.minors | (1 << m))
    return ok(put_dev(s, d, dev._replace(minor=m, minor_held=True)))


@step
def dax_inode_get(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """iget5_locked on the dax pseudo-fs, keyed by devt and matched on i_cdev."""
    return ok(put_dev(s, d, s.devs[d]._replace(inode_ref=1)))


@step
def kref_init(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """v4.7: kref_init(&dax_dev->kref), the reference unregister_dax_dev drops last."""
    return ok(put_dev(s, d, s.devs[d]._replace(kref=1, init_ref=True)))


@step
def device_initialize(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """ "so cdev can reference kobj parent": from here on only put_device() may free (M18)."""
    return ok(put_dev(s, d, s.devs[d]._replace(dev_ref=1, init_ref=True)))


@step
def set_alive(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """v4.7/v4.10: "from here on we're committed to teardown via dax_dev_release()"."""
    return ok(put_dev(s, d, s.devs[d]._replace(alive=True)))


@step
def region_get(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """kref_get(&dax_region->kref): each device pins its region until its release."""
    r = c.region_of(d)
    if s.regions[r].freed:
        return ok(oops(s, f"uaf: kref_get on freed region{r}"))
    s = put_region(s, r, s.regions[r]._replace(kref=s.regions[r].kref + 1))
    return ok(put_dev(s, d, s.devs[d]._replace(holds_region=True)))


@step
def cdev_add(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """cdev_init() + cdev_add(): the node can be opened from here on. cdev_init re-initialises the
    kobject (count 1) even if files of an earlier binding still hold it (modern dev_dax_probe does
    this on every bind); cdev_add pins the parent device.

    With the F2 fix (profile switch cdev_per_binding) the binding's cdev is a new cdev_alloc() object:
    the count the files of an earlier binding hold stays theirs, and the parent gains a pin only if no
    cdev of the device held one (the summed count of profiles.Profile.cdev_per_binding)."""
    dev = s.devs[d]
    if c.prof.cdev_per_binding:
        pin = int(dev.cdev_ref == 0)
        dev = dev._replace(
            cdev_ref=dev.cdev_ref + 1, cdev_live=True, cdev_mapped=True, dev_ref=dev.dev_ref + pin
        )
        return ok(put_dev(s, d, dev))
    # cdev_init's memset also empties cdev->list: a /dev inode still linked on it keeps i_cdev and a
    # stale i_devices link, which cd_forget trips over when the inode is evicted (kobject.cd_forget)
    stale = dev.icdev_stale or dev.icdev_cached
    dev = dev._replace(
        cdev_ref=1, cdev_live=True, cdev_mapped=True, dev_ref=dev.dev_ref + 1, icdev_stale=stale
    )
    return ok(put_dev(s, d, dev))


@step
def device_add(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """device_add(): sysfs and uevent; may fail (duplicate name, ENOMEM). The failure path is the
    profile's create_failed program (M6 and M18 are wrong versions of it)."""
    outs: list[StepOutcome] = [("ok", put_dev(s, d, s.devs[d]._replace(phase=D_LIVE, registered=True)))]
    if c.cfg.add_failure:
        outs.append(("EEXIST", Goto("create_failed", s)))
    return outs


@step
def device_create(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """v4.7 device_create(dax_class, ...): registered and findable by class_find_device."""
    return ok(put_dev(s, d, s.devs[d]._replace(phase=D_LIVE, registered=True, dev_ref=1)))


@step
def add_mappings(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """Modern alloc_dev_dax_range -> devm_register_dax_mapping: one mappingN child per range; since
    6d24b170a9db (M15) each child holds a reference on its parent until the child's release."""
    n = len(c.layout.ranges[d])
    dev = s.devs[d]
    pin = n if c.prof.mapping_pins_parent else 0
    return ok(put_dev(s, d, dev._replace(children=n, dev_ref=dev.dev_ref + pin)))


@step
def run_dax(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """dev_dax_probe ends with run_dax(): set DAXDEV_ALIVE. A re-bind makes old mappings usable
    again: they fault through the same dax_dev."""
    dev = s.devs[d]._replace(alive=True, bound=True, dead=False)
    return ok(put_dev(s, d, dev))


@step
def kfree(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """M18: the error path frees the device memory directly: no release callback runs."""
    dev = s.devs[d]._replace(phase=D_RELEASED, alive=False)
    return ok(put_dev(s, d, dev))


# ------------------------------------------------------------------------------------ teardown ----


@step
def unregister_lock(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """unregister_dev_dax takes dax_region_rwsem; before the M16 fix a signal could make
    down_write_killable() fail and the whole teardown of this device was skipped."""
    if not _created(s, d):
        return SKIP
    outs: list[StepOutcome] = ok(s)
    if c.prof.unregister_can_be_interrupted:
        outs.append(("EINTR", Goto("skip", s)))
    return outs


@step
def clear_alive(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """kill_dax(): alive = false (DAXDEV_ALIVE cleared). New faults see it and SIGBUS."""
    dev = s.devs[d]
    if not _created(s, d) or (c.prof.bind_cycles and not dev.bound and not dev.alive):
        return SKIP
    return ok(put_dev(s, d, dev._replace(alive=False, bound=False)))


def _no_reader_to_wait_for(c: Ctx, s: State, d: int) -> bool:
    """The grace period is skipped: the device was never created, or (modern) its kill ran."""
    return not _created(s, d) or (c.prof.bind_cycles and s.devs[d].dead)


@step
def synchronize_start(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """synchronize_(s)rcu() begins: it will wait for exactly the readers inside a section now."""
    if _no_reader_to_wait_for(c, s, d):
        return SKIP
    cpus = tuple(cpu._replace(pre_gp=True) if cpu.nest > 0 else cpu for cpu in s.cpus)
    return ok(s._replace(gp=True, cpus=cpus))


#: Steps whose SKIP a cheaper test tells: _finish asks it instead of running the step (marking
#: every CPU inside a read section, in synchronize_start's case) only to see whether it skips.
#: tests/model/test_admin_skips.py checks each against its step on every reachable state.
SKIPS: Final[dict[str, Callable[[Ctx, State, int], bool]]] = {"synchronize_start": _no_reader_to_wait_for}


@step
def synchronize_wait(c: Ctx, s: State, d: int) -> list[StepOutcome] | None:
    """The grace period ends once no pre-existing reader is left (blocked until then). "rcu is
    ensuring that any fault handlers that might have seen dax_dev->alive == true, have completed"."""
    if not s.gp:
        return SKIP
    if any(cpu.pre_gp for cpu in s.cpus):
        return None
    return ok(s._replace(gp=False))


@step
def unmap_mapping_range(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """unmap_mapping_range(dax inode mapping, 0, 0, 1): every file's f_mapping points at the one
    pseudo-inode mapping, so this reaches every vma of the device, whichever node opened it."""
    if not _created(s, d) or (c.prof.bind_cycles and s.devs[d].dead):
        return SKIP
    mine = {v for v, vma in enumerate(s.vmas) if vma.file >= 0 and s.files[vma.file].dev == d}
    return ok(s._replace(entries=frozenset(e for e in s.entries if e.vma not in mine)))


@step
def cdev_del(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """cdev_del(): out of kobj_map (no new lookups by devt) and drop the cdev's own reference;
    files that hold it keep the kobject, and with it the device, alive."""
    dev = s.devs[d]
    if not dev.cdev_live:
        return SKIP
    s = put_dev(s, d, dev._replace(cdev_live=False, cdev_mapped=False))
    return ok(cdev_put(c, s, d))


@step
def device_del(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """device_del(): devtmpfs_delete_node() first (an open from now on is ENOENT; the /dev inode is
    evicted now if no file holds it: cd_forget), then bus_remove_device() unbinds the driver
    (drivers/base/core.c device_del, 6.1 to 7.2)."""
    if not _created(s, d):
        return SKIP
    s = put_dev(s, d, s.devs[d]._replace(registered=False, bound=False))
    return ok(cd_forget(s, d))


@step
def device_unregister(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """v4.7: get_device(); device_unregister() (device_del + put_device)."""
    if not _created(s, d):
        return SKIP
    s = put_dev(s, d, s.devs[d]._replace(registered=False))
    return ok(device_put(c, s, d))


@step
def unregister_mappings(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """unregister_dax_mapping, the devm action devm_register_dax_mapping() adds to the region's
    parent after unregister_dev_dax's, so it runs first at provider removal (free_dev_dax_ranges()
    only releases the ranges); its release may run later (whoever holds the child kobject
    decides), see mapping_release in spec/mapping.py."""
    dev = s.devs[d]
    if not _created(s, d) or dev.children == 0:
        return SKIP
    return ok(put_dev(s, d, dev._replace(children=0, zombies=dev.zombies + dev.children)))


@step
def put_device(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """The reference device_initialize() took; release runs here if nothing else holds the device."""
    dev = s.devs[d]
    if not dev.init_ref:
        return SKIP
    s = put_dev(s, d, dev._replace(init_ref=False, phase=D_LIVE if dev.phase == D_LIVE else D_FAILED))
    return ok(device_put(c, s, d))


@step
def ida_free_id(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """v4.7 unregister: ida_simple_remove(&dax_region->ida, dax_dev->id)."""
    dev = s.devs[d]
    if not dev.id_held:
        return SKIP
    r = c.region_of(d)
    s = put_region(s, r, s.regions[r]._replace(ida=s.regions[r].ida & ~(1 << dev.id)))
    return ok(put_dev(s, d, dev._replace(id_held=False)))


@step
def ida_free_minor(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """v4.7 unregister: the minor goes back to the ida while fds may still be open (M22)."""
    dev = s.devs[d]
    if not dev.minor_held:
        return SKIP
    return ok(put_dev(s._replace(minors=s.minors & ~(1 << dev.minor)), d, dev._replace(minor_held=False)))


@step
def dax_dev_put_step(c: Ctx, s: State, d: int) -> list[StepOutcome]:
    """v4.7 unregister ends with dax_dev_put(): the kref_init reference."""
    dev = s.devs[d]
    if not dev.init_ref:
        return SKIP
    s = put_dev(s, d, dev._replace(init_ref=False))
    return ok(dax_dev_put(c, s, d))


STEPS["dax_dev_put"] = STEPS.pop("dax_dev_put_step")


# ------------------------------------------------------------------------------ the admin itself ----


def _after_dev(prog: tuple[Step, ...], pc: int, d: int) -> int:
    """The pc of the first step after the last step of device d, searching from pc."""
    last = pc
    for i in range(pc, len(prog)):
        if prog[i][1] == d and prog[i][0] not in (
            "alloc_dax_region",
            "provider_put",
            "dax_region_unregister",
        ):
            last = i
    return last + 1


def admin_starts(c: Ctx, s: State) -> list[tuple[str, int, State]]:
    """Programs the idle admin may start: probe the next generation, unbind/bind (modern), remove."""
    a = s.admin
    out: list[tuple[str, int, State]] = []
    g = a.generation
    live = [r for r, rg in enumerate(s.regions) if rg.phase == RG_LIVE]
    if not live and g < c.cfg.generations:
        out.append(("probe", g, s._replace(admin=a._replace(prog="probe", dev=g, pc=0, generation=g + 1))))
    for r in live:
        if c.prof.bind_cycles:
            for d in c.devs_of(r):
                dev = s.devs[d]
                if dev.phase != D_LIVE or not dev.registered:
                    continue
                if dev.bound and a.binds_left[d] > 0:
                    left = a.binds_left[:d] + (a.binds_left[d] - 1,) + a.binds_left[d + 1 :]
                    out.append(
                        (
                            "unbind",
                            d,
                            s._replace(admin=a._replace(prog="unbind", dev=d, pc=0, binds_left=left)),
                        )
                    )
                elif not dev.bound and not dev.cdev_live:
                    out.append(("bind", d, s._replace(admin=a._replace(prog="bind", dev=d, pc=0))))
        out.append(("remove", r, s._replace(admin=a._replace(prog="remove", dev=r, pc=0))))
    return out


def admin_steps(c: Ctx, s: State) -> list[tuple[str, int, str, State]]:
    """The next step of the running program: (step name, argument, outcome, next state)."""
    a = s.admin
    prog = program(c, a.prog, a.dev)
    pc = a.pc
    while pc < len(prog):
        name, arg, kill_end = prog[pc]
        outs = STEPS[name](c, s, arg)
        if outs is None:
            return []  # blocked: the program waits here
        if outs == SKIP:
            pc += 1
            continue
        result = []
        for label, nxt in outs:
            if isinstance(nxt, Goto):
                ns = nxt.state
                after = _after_dev(prog, pc, arg)
                if nxt.prog == "skip":
                    ns = ns._replace(admin=a._replace(pc=after))
                else:
                    ns = ns._replace(
                        admin=Admin(nxt.prog, arg, 0, a.generation, a.binds_left, (a.prog, a.dev, after))
                    )
                result.append((name, arg, label, _finish(c, ns)))
                continue
            assert nxt is not None
            if kill_end:
                nxt = put_dev(nxt, arg, nxt.devs[arg]._replace(dead=True))
            result.append((name, arg, label, _finish(c, nxt._replace(admin=a._replace(pc=pc + 1)))))
        return result
    return []


def _finish(c: Ctx, s: State) -> State:
    """Skip inapplicable steps eagerly and return to idle (or to the interrupted program)."""
    a = s.admin
    if not a.prog:
        return s
    prog = program(c, a.prog, a.dev)
    pc = a.pc
    while pc < len(prog):
        name, arg, _ = prog[pc]
        skips = SKIPS.get(name)
        if not (skips(c, s, arg) if skips is not None else STEPS[name](c, s, arg) == SKIP):
            break
        pc += 1
    if pc < len(prog):
        return s._replace(admin=a._replace(pc=pc))
    if a.resume is not None:
        p, dv, rpc = a.resume
        return _finish(c, s._replace(admin=Admin(p, dv, rpc, a.generation, a.binds_left, None)))
    return s._replace(admin=Admin("", -1, 0, a.generation, a.binds_left, None))


def run_program(c: Ctx, s: State, prog: str, arg: int) -> State:
    """Run one admin program to completion, taking the first (success) outcome of every step: what a
    sequential user of sysfs sees (echo > unbind returns when the program is done)."""
    a = s.admin
    assert not a.prog, f"admin is busy with {a.prog}"
    generation = a.generation + 1 if prog == "probe" else a.generation
    s = _finish(c, s._replace(admin=a._replace(prog=prog, dev=arg, pc=0, generation=generation)))
    while s.admin.prog:
        steps = admin_steps(c, s)
        if not steps:
            raise RuntimeError(f"admin program {prog}({arg}) blocked at step {s.admin.pc}")
        s = steps[0][3]
    return s


def admin_busy_with(s: State, d: int) -> bool:
    return bool(s.admin.prog) and s.admin.dev == d


__all__ = ["C_IDLE", "D_NONE", "D_RELEASED", "STEPS", "admin_starts", "admin_steps", "program"]
