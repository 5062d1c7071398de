"""Reference counts and use after free for any number of files and vmas, for every profile's lifetime.

spec/invariants.refcount_exact_all says each count equals the number of its holders; a count of a set
is not first-order, so the proof carries a *ghost bijection* (the standard trick of Ivy proofs about
counters): the open files are numbered 0..nfiles-1 (``idx``/``slot`` are inverse), each file's vmas
0..nv(f)-1 (``vidx``/``vslot``), and for the v4.7 kref all vmas 0..nvmas-1 (``gidx``/``gslot``).
Opening appends, closing swaps the last into the hole. With the bijection an invariant,
``cdev_ref == cdev_live + nfiles`` *is* "the cdev count equals the number of open files plus
cdev_add's own reference", for any number of files.

One device is modelled (its files and vmas unbounded); the admin runs the profile's own programs
(create, create_failed, remove, bind, unbind from spec/profiles.py), step by step with a program
counter, keeping the steps that touch a count (``EFFECTS``; the others, such as synchronize_srcu, change
no count). Each effect is the one of spec/admin.py and spec/kobject.py: cdev_add *sets* the cdev count
to 1 (cdev_init), put_device/cdev_put release at zero, a put at zero is an underflow, a put on a freed
object a use after free. The user actions are those of spec/file.py and spec/vma.py (open, close, mmap,
munmap of a whole vma) and the mappingN release of spec/mapping.py. Two guards are weaker than the
spec's, which only makes the proof cover more runs: open() needs only a cdev count above zero (the
spec also asks kobj_map or a cached i_cdev), and mmap() only an open fd (check_vma's alive and shape
tests are left out: they decide whether a vma exists, not what it holds). A failing creation step
(device_add, an exhausted minor ida when the ida is bounded) may fail every time.

Invariants, split in two layers so that a profile where a claim fails still gets the rest proved:

* the *core*, proved assuming only the core: the ghost numberings, each file's f_count, no count
  negative, the creation facts (``creation_order``: before the create program's step X ran, what X
  initialises is still zero), and for the cdev lifetime an accounting that survives a re-bind:
  ``device_accounted`` (the device count is its holders plus ``leaked``, a ghost counting cdev pins that
  no cdev release will ever drop) and ``cdev_accounted`` (the cdev count never exceeds its holders, and
  when it is below them a pin has leaked). From these, ``no_use_after_free`` follows;
* the *claims* of spec/invariants.py, proved assuming core and claims: ``refcount_exact_cdev`` (no
  holder lost), ``refcount_exact_device`` (no pin leaked), ``no_refcount_underflow``.

A claim proved only relative to another claim that fails is not reported as proved: the obligation
then searches for a reachable violation (proofs/engine.py find_trace) and reports it, or UNKNOWN.
Modern's F2 (docs/findings.md) is exactly that case: a re-bind's cdev_init() loses the count of files
opened under the previous binding (refcount_exact_cdev fails at the bind step), the second cdev_add pin
leaks (refcount_exact_device), and the next put of the lost count underflows. Use after free does *not*
follow: the leaked pin keeps the device from being released while any such file exists, which the
core proves for any number of files and re-binds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import z3

from devdax.proofs.agreement import Mismatch, Side, agree, explore
from devdax.proofs.engine import (
    ActionFn,
    Inv,
    St,
    Sys,
    b2i,
    check_inductive,
    check_reaches,
    forall,
    show,
    universe,
)
from devdax.proofs.ghost import Owner, appended, numbered, removed
from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.proofs.smt import Term
from devdax.spec.admin import program
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import Lifetime, Profile
from devdax.spec.state import D_CREATING, D_FAILED, D_LIVE, D_NONE, D_RELEASED, PHASE_NAMES, RG_GONE
from devdax.spec.state import State as SpecState

F = z3.DeclareSort("FILE")
#: the ghost numberings (proofs/ghost.py) of the open files and, for the v4.7 kref, of all vmas
FILE_NUMBERING, VMA_NUMBERING = ("idx", "slot", "nfiles"), ("gidx", "gslot", "nvmas")
V = z3.DeclareSort("VMAR")
B, N = z3.BoolSort(), z3.IntSort()

# admin programs (0: idle, between programs; DONE: after removal, no program runs any more)
IDLE, CREATE, CREATE_FAILED, REMOVE, BIND, UNBIND, DONE = range(7)
PROG_NAMES = {
    IDLE: "idle",
    CREATE: "create",
    CREATE_FAILED: "create_failed",
    REMOVE: "remove",
    BIND: "bind",
    UNBIND: "unbind",
    DONE: "done",
}


def ite(c: Term, a: St, b: St) -> St:
    return {k: z3.If(c, a[k], b[k]) if not a[k].eq(b[k]) else a[k] for k in a}


@dataclass(frozen=True)
class Model:
    """What the profile makes of one device's counts."""

    kref: bool  # v4.7: dax_dev kref taken by open, mmap and vm_ops->open
    pins: bool  # mappingN children pin their parent (M15 fix)
    bind_cycles: bool
    programs: dict[int, tuple[str, ...]]
    #: create step index at which ida_alloc_minor may fail (its failure is the only effect it has)
    enomem_at: int | None
    #: ENOMEM after device_initialize goes to create_failed; before it the half-made device is freed
    enomem_after_init: bool


def kept_steps(p: Profile) -> set[str]:
    """The admin steps this model runs: those with an effect here (the rest are stutters)."""
    return set(EFFECTS) | ({"run_dax", "clear_alive"} if p.bind_cycles else set())


def model_of(p: Profile) -> Model:
    """The programs of the profile, keeping the steps that change a count or a guard of this model."""
    keep = kept_steps(p)
    progs = {
        CREATE: p.create,
        CREATE_FAILED: p.create_failed,
        REMOVE: p.remove,
        BIND: p.bind,
        UNBIND: p.unbind,
    }
    programs = {k: tuple(e.rstrip("!") for e in v if e.rstrip("!") in keep) for k, v in progs.items()}
    enomem_at, after_init = None, False
    if p.minor_ida_bounded and "ida_alloc_minor" in p.create:
        before = p.create[: p.create.index("ida_alloc_minor")]
        enomem_at = sum(1 for e in before if e.rstrip("!") in keep)
        after_init = "device_initialize" in before
    return Model(
        kref=p.lifetime is Lifetime.KREF,
        pins=p.mapping_pins_parent,
        bind_cycles=p.bind_cycles,
        programs=programs,
        enomem_at=enomem_at,
        enomem_after_init=after_init,
    )


# --------------------------------------------------------------------------- kobject effects ----


def released(s: St) -> Term:
    return s["phase"] == D_RELEASED


def created(s: St) -> Term:
    return z3.Or(s["phase"] == D_CREATING, s["phase"] == D_LIVE)


def pins_of(md: Model, s: St) -> Term:
    return s["children"] + s["zombies"] if md.pins else z3.IntVal(0)


def device_put(md: Model, s: St) -> St:
    """kobject.device_put: underflow on a zero count (or, cdev lifetime, a released device); the last
    reference releases the device (cdev lifetime; v4.7's struct device release frees nothing here)."""
    bad = z3.Or(s["dev_ref"] <= 0, released(s)) if not md.kref else s["dev_ref"] <= 0
    ref = s["dev_ref"] - 1
    put = {**s, "dev_ref": ref}
    if not md.kref:
        put["phase"] = z3.If(ref == 0, z3.IntVal(D_RELEASED), s["phase"])
    return ite(bad, {**s, "underflow": z3.BoolVal(True)}, put)


def cdev_put(md: Model, s: St) -> St:
    """kobject.cdev_put: use after free on a released device, underflow at zero, else drop; at zero
    cdev_default_release puts the parent device."""
    ref = s["cdev_ref"] - 1
    after = {**s, "cdev_ref": ref}
    dropped = ite(ref == 0, device_put(md, after), after)
    return ite(
        released(s),
        {**s, "uaf": z3.BoolVal(True)},
        ite(s["cdev_ref"] <= 0, {**s, "underflow": z3.BoolVal(True)}, dropped),
    )


def dax_dev_put(md: Model, s: St) -> St:
    """v4.7 dax_dev_put: use after free on a freed dax_dev; the last kref frees it."""
    ref = s["kref"] - 1
    put = {**s, "kref": ref, "phase": z3.If(ref == 0, z3.IntVal(D_RELEASED), s["phase"])}
    return ite(z3.Or(released(s), s["kref"] <= 0), {**s, "uaf": z3.BoolVal(True)}, put)


def holder_get(md: Model, s: St) -> St:
    if md.kref:
        return {**s, "dev_ref": s["dev_ref"] + 1, "kref": s["kref"] + 1}
    return {**s, "cdev_ref": s["cdev_ref"] + 1}


def holder_put(md: Model, s: St) -> St:
    if md.kref:
        return device_put(md, dax_dev_put(md, s))
    return cdev_put(md, s)


# ------------------------------------------------------------------------------ admin steps ----

Effect = Callable[[Model, St, Term], St]


def _cdev_add(md: Model, s: St, n: Term) -> St:
    """cdev_init (count := 1, whatever it was: F2) + cdev_add (pins the parent). The ghost ``leaked``
    counts a pin added while an earlier one is still held (the cdev count was not zero)."""
    return {
        **s,
        "cdev_ref": z3.IntVal(1),
        "cdev_live": z3.BoolVal(True),
        "dev_ref": s["dev_ref"] + 1,
        "leaked": s["leaked"] + b2i(s["cdev_ref"] > 0),
    }


def _cdev_del(md: Model, s: St, n: Term) -> St:
    return ite(s["cdev_live"], cdev_put(md, {**s, "cdev_live": z3.BoolVal(False)}), s)


def _put_device(md: Model, s: St, n: Term) -> St:
    phase = z3.If(s["phase"] == D_LIVE, z3.IntVal(D_LIVE), z3.IntVal(D_FAILED))
    return ite(s["init_ref"], device_put(md, {**s, "init_ref": z3.BoolVal(False), "phase": phase}), s)


def _dax_dev_put(md: Model, s: St, n: Term) -> St:
    return ite(s["init_ref"], dax_dev_put(md, {**s, "init_ref": z3.BoolVal(False)}), s)


def _device_unregister(md: Model, s: St, n: Term) -> St:
    return ite(created(s), device_put(md, {**s, "registered": z3.BoolVal(False)}), s)


def _unregister_mappings(md: Model, s: St, n: Term) -> St:
    return ite(
        z3.And(created(s), s["children"] > 0),
        {**s, "children": z3.IntVal(0), "zombies": s["zombies"] + s["children"]},
        s,
    )


#: step name (spec/admin.py) -> its effect on this model; ``n`` is the number of mappingN children
EFFECTS: dict[str, Effect] = {
    "ida_alloc_id": lambda md, s, n: {**s, "phase": z3.IntVal(D_CREATING)},
    "device_initialize": lambda md, s, n: {**s, "dev_ref": z3.IntVal(1), "init_ref": z3.BoolVal(True)},
    "kref_init": lambda md, s, n: {**s, "kref": z3.IntVal(1), "init_ref": z3.BoolVal(True)},
    "cdev_add": _cdev_add,
    "device_add": lambda md, s, n: {**s, "phase": z3.IntVal(D_LIVE), "registered": z3.BoolVal(True)},
    "device_create": lambda md, s, n: {
        **s,
        "phase": z3.IntVal(D_LIVE),
        "registered": z3.BoolVal(True),
        "dev_ref": z3.IntVal(1),
    },
    "add_mappings": lambda md, s, n: {**s, "children": n, "dev_ref": s["dev_ref"] + (n if md.pins else 0)},
    "run_dax": lambda md, s, n: {**s, "bound": z3.BoolVal(True)},
    "clear_alive": lambda md, s, n: ite(created(s), {**s, "bound": z3.BoolVal(False)}, s),
    "cdev_del": _cdev_del,
    "device_del": lambda md, s, n: ite(
        created(s), {**s, "registered": z3.BoolVal(False), "bound": z3.BoolVal(False)}, s
    ),
    "device_unregister": _device_unregister,
    "unregister_mappings": _unregister_mappings,
    "put_device": _put_device,
    "dax_dev_put": _dax_dev_put,
    "kfree": lambda md, s, n: {**s, "phase": z3.IntVal(D_RELEASED)},
}

#: steps that initialise something: before they ran, what they set is zero (``creation_order``)
INITIALISERS = ("device_initialize", "kref_init", "cdev_add", "device_create", "device_add", "add_mappings")


def _fresh_facts(md: Model, s: St, step: str) -> Term:
    """What is still zero before the create program's ``step`` ran."""
    files_closed = s["nfiles"] == 0
    facts = {
        "device_initialize": z3.And(s["dev_ref"] == 0, z3.Not(s["init_ref"])),
        "kref_init": z3.And(s["kref"] == 0, z3.Not(s["init_ref"]), files_closed),
        "cdev_add": z3.And(
            s["cdev_ref"] == 0,
            z3.Not(s["cdev_live"]),
            s["leaked"] == 0,
            files_closed if not md.kref else z3.BoolVal(True),
        ),
        "device_create": z3.And(
            s["dev_ref"] == 0, z3.Not(s["registered"]), files_closed, s["phase"] != D_LIVE
        ),
        "device_add": z3.And(z3.Not(s["registered"]), s["phase"] != D_LIVE),
        "add_mappings": z3.And(s["children"] == 0, s["zombies"] == 0),
    }
    return facts[step]


# ---------------------------------------------------------------------------------- system ----


def system(md: Model) -> Sys:
    create = md.programs[CREATE]
    vars_: dict[str, Term | tuple[Term, Term]] = {
        "phase": N,
        "init_ref": B,
        "dev_ref": N,
        "cdev_live": B,
        "cdev_ref": N,
        "registered": B,
        "bound": B,
        "children": N,
        "zombies": N,
        "kref": N,
        "uaf": B,
        "underflow": B,
        "leaked": N,
        "prog": N,
        "pc": N,
        "cpc": N,
        "opened": (F, B),
        "fd": (F, B),
        "count": (F, N),
        "nfiles": N,
        "idx": (F, N),
        "slot": (N, F),
        "nv": (F, N),
        "used": (V, B),
        "vfile": (V, F),
        "vidx": (V, N),
        "vslot": (F, z3.ArraySort(N, V)),
        "nvmas": N,
        "gidx": (V, N),
        "gslot": (N, V),
    }

    def frame(s: St, t: St, new: St) -> Term:
        return z3.And(*(t[k] == new[k] for k in s))

    def file_put(s: St, f: Term) -> St:
        """The last reference frees the file and drops what open took; the last open file takes the
        freed number."""
        cnt = s["count"][f] - 1
        kept = {**s, "count": z3.Store(s["count"], f, cnt)}
        freed = {
            **kept,
            "opened": z3.Store(s["opened"], f, False),
            "fd": z3.Store(s["fd"], f, False),
            **dict(zip(FILE_NUMBERING, removed(s["idx"], s["slot"], s["nfiles"], f), strict=True)),
        }
        return ite(cnt == 0, holder_put(md, freed), kept)

    actions: dict[str, ActionFn] = {}

    def user(name: str, fn: Callable[[St, St, str], tuple[Term, dict[str, Term]]]) -> None:
        actions[name] = fn

    def open_(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
        """open(): v4.7 class_find_device finds a registered live device; v4.10+ chrdev_open finds
        the cdev while its kobject has a count (kobj_map or the cached i_cdev)."""
        f = z3.Const(f"f@{tag}", F)
        found = z3.And(s["phase"] == D_LIVE, s["registered"]) if md.kref else s["cdev_ref"] > 0
        new = holder_get(
            md,
            {
                **s,
                "opened": z3.Store(s["opened"], f, True),
                "fd": z3.Store(s["fd"], f, True),
                "count": z3.Store(s["count"], f, 1),
                **dict(zip(FILE_NUMBERING, appended(s["idx"], s["slot"], s["nfiles"], f), strict=True)),
                "nv": z3.Store(s["nv"], f, 0),
            },
        )
        return z3.And(z3.Not(s["opened"][f]), found, frame(s, t, new)), {"f": f}

    def close(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
        f = z3.Const(f"f@{tag}", F)
        new = file_put({**s, "fd": z3.Store(s["fd"], f, False)}, f)
        return z3.And(s["fd"][f], frame(s, t, new)), {"f": f}

    def mmap(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
        """A new vma takes a file reference (and v4.7's dax_dev kref)."""
        f, v = z3.Const(f"f@{tag}", F), z3.Const(f"v@{tag}", V)
        vidx, vslot, nv = appended(s["vidx"], s["vslot"][f], s["nv"][f], v)
        new = {
            **s,
            "used": z3.Store(s["used"], v, True),
            "vfile": z3.Store(s["vfile"], v, f),
            "count": z3.Store(s["count"], f, s["count"][f] + 1),
            "vidx": vidx,
            "vslot": z3.Store(s["vslot"], f, vslot),
            "nv": z3.Store(s["nv"], f, nv),
            **dict(zip(VMA_NUMBERING, appended(s["gidx"], s["gslot"], s["nvmas"], v), strict=True)),
        }
        if md.kref:
            new["kref"] = s["kref"] + 1
        return z3.And(s["fd"][f], z3.Not(s["used"][v]), frame(s, t, new)), {"f": f, "v": v}

    def munmap(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
        """vm_ops->close (v4.7 dax_dev_put), then fput of vm_file."""
        v = z3.Const(f"v@{tag}", V)
        g = s["vfile"][v]
        vidx, vslot, nv = removed(s["vidx"], s["vslot"][g], s["nv"][g], v)
        new = {
            **s,
            "used": z3.Store(s["used"], v, False),
            "vidx": vidx,
            "vslot": z3.Store(s["vslot"], g, vslot),
            "nv": z3.Store(s["nv"], g, nv),
            **dict(zip(VMA_NUMBERING, removed(s["gidx"], s["gslot"], s["nvmas"], v), strict=True)),
        }
        if md.kref:
            new = dax_dev_put(md, new)
        return z3.And(s["used"][v], frame(s, t, file_put(new, g))), {"v": v}

    user("open", open_)
    user("close", close)
    user("mmap", mmap)
    user("munmap", munmap)

    if md.pins or any("add_mappings" in p for p in md.programs.values()):

        def mapping_release(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
            """spec/mapping.py: an unregistered mappingN child's release drops its pin on the parent."""
            after = {**s, "zombies": s["zombies"] - 1}
            new = ite(
                released(s), {**after, "uaf": z3.BoolVal(True)}, device_put(md, after) if md.pins else after
            )
            return z3.And(s["zombies"] > 0, frame(s, t, new)), {}

        user("mapping_release", mapping_release)

    def start_guard(prog: int, s: St) -> Term:
        """spec/admin.py admin_starts for one device: remove any time; bind/unbind of a live device."""
        live = z3.And(s["phase"] == D_LIVE, s["registered"])
        if prog == REMOVE:
            return z3.BoolVal(True)
        if prog == BIND:
            return z3.And(z3.BoolVal(md.bind_cycles), live, z3.Not(s["bound"]), z3.Not(s["cdev_live"]))
        if prog == UNBIND:
            return z3.And(z3.BoolVal(md.bind_cycles), live, s["bound"])
        return z3.BoolVal(False)

    def after_program(prog: int) -> int:
        return DONE if prog == REMOVE else IDLE

    def goto(s: St, prog: int, pc: int) -> St:
        """Continue at step pc of prog; past its end, back to idle (or done after removal)."""
        if pc < len(md.programs[prog]):
            return {**s, "prog": z3.IntVal(prog), "pc": z3.IntVal(pc)}
        return {**s, "prog": z3.IntVal(after_program(prog)), "pc": z3.IntVal(0)}

    for prog, steps in md.programs.items():
        for i, name in enumerate(steps):

            def step(
                s: St, t: St, tag: str, prog: int = prog, i: int = i, name: str = name
            ) -> tuple[Term, dict[str, Term]]:
                n = z3.Int(f"n@{tag}")
                here = z3.And(s["prog"] == prog, s["pc"] == i)
                if i == 0 and prog not in (CREATE, CREATE_FAILED):
                    here = z3.Or(here, z3.And(s["prog"] == IDLE, start_guard(prog, s)))
                new = EFFECTS[name](md, s, n)
                if prog == CREATE:
                    new = {**new, "cpc": z3.IntVal(i + 1)}
                ok = frame(s, t, goto(new, prog, i + 1))
                if name == "device_add":  # device_add may fail: the profile's error program
                    failed = goto({**s, "cpc": z3.IntVal(i)}, CREATE_FAILED, 0) if prog == CREATE else s
                    ok = z3.Or(ok, frame(s, t, failed))
                return z3.And(here, n >= 0, ok), ({"mappings": n} if name == "add_mappings" else {})

            actions[f"{PROG_NAMES[prog]}:{name}"] = step

    if md.enomem_at is not None:
        at = md.enomem_at

        def enomem(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
            """ida_alloc_minor finds the ida full: after device_initialize the error program runs, before
            it the half-made device is simply freed (spec/admin.py ida_alloc_minor)."""
            here = z3.And(s["prog"] == CREATE, s["pc"] == at)
            if md.enomem_after_init:
                new = goto(s, CREATE_FAILED, 0)
            else:
                new = {**s, "phase": z3.IntVal(D_RELEASED), "prog": z3.IntVal(IDLE), "pc": z3.IntVal(0)}
            return z3.And(here, frame(s, t, new)), {}

        actions["create:ida_alloc_minor ENOMEM"] = enomem

    def init(s: St) -> Term:
        """Nothing exists yet; the admin is about to run the create program."""
        return z3.And(
            s["phase"] == D_NONE,
            z3.Not(s["init_ref"]),
            s["dev_ref"] == 0,
            z3.Not(s["cdev_live"]),
            s["cdev_ref"] == 0,
            z3.Not(s["registered"]),
            z3.Not(s["bound"]),
            s["children"] == 0,
            s["zombies"] == 0,
            s["kref"] == 0,
            z3.Not(s["uaf"]),
            z3.Not(s["underflow"]),
            s["leaked"] == 0,
            s["prog"] == CREATE,
            s["pc"] == 0,
            s["cpc"] == 0,
            s["nfiles"] == 0,
            s["nvmas"] == 0,
            s["opened"] == z3.K(F, False),
            s["fd"] == z3.K(F, False),
            s["used"] == z3.K(V, False),
        )

    return Sys(
        vars=vars_, init=init, actions=actions, invariants=invariants(md, create), render=render, tidy=tidy
    )


def invariants(md: Model, create: Sequence[str]) -> list[Inv[St]]:
    core: list[Inv[St]] = []

    def add(name: str, doc: str, serves: str, fn: Callable[[St], Term]) -> None:
        core.append(Inv(name, doc, fn, serves))

    add(
        "ghost_files_numbered",
        "open files are numbered 0..nfiles-1 without gaps or repeats",
        "refcount_exact_all",
        lambda s: z3.And(
            numbered(F, lambda f: s["opened"][f], s["idx"], s["slot"], s["nfiles"]),
            forall(F, lambda f: z3.Implies(s["fd"][f], s["opened"][f]), "f"),
        ),
    )
    add(
        "ghost_vmas_numbered",
        "each open file's vmas are numbered 0..nv(f)-1 without gaps or repeats",
        "refcount_exact_all",
        lambda s: numbered(
            V,
            lambda v: s["used"][v],
            s["vidx"],
            s["vslot"],
            s["nv"],
            Owner(F, lambda f: s["opened"][f], lambda v: s["vfile"][v]),
        ),
    )
    if md.kref:
        add(
            "ghost_all_vmas_numbered",
            "all vmas are numbered 0..nvmas-1 without gaps or repeats",
            "refcount_exact_all",
            lambda s: numbered(V, lambda v: s["used"][v], s["gidx"], s["gslot"], s["nvmas"]),
        )
    add(
        "refcount_exact_file",
        "each file's f_count == its fd + number of its vmas",
        "refcount_exact_all",
        lambda s: forall(
            F, lambda f: z3.Implies(s["opened"][f], s["count"][f] == b2i(s["fd"][f]) + s["nv"][f]), "f"
        ),
    )
    add(
        "counts_nonnegative",
        "no count is negative; the admin is inside one of its programs",
        "refcount_exact_all",
        lambda s: z3.And(
            s["phase"] >= D_NONE,
            s["phase"] <= D_RELEASED,
            s["cdev_ref"] >= 0,
            s["dev_ref"] >= 0,
            s["children"] >= 0,
            s["zombies"] >= 0,
            s["kref"] >= 0,
            s["leaked"] >= 0,
            s["cpc"] >= 0,
            s["cpc"] <= len(create),
            *(
                z3.Implies(s["prog"] == p, z3.And(s["pc"] >= 0, s["pc"] < len(steps)))
                for p, steps in md.programs.items()
            ),
            z3.Implies(s["prog"] == CREATE, s["pc"] == s["cpc"]),
            z3.Or(*(s["prog"] == p for p in PROG_NAMES)),
        ),
    )
    initialisers = [(i, x) for i, x in enumerate(create) if x in INITIALISERS]
    holds = {
        "device_initialize": "init_ref",
        "kref_init": "init_ref",
        "cdev_add": "cdev_live",
        "device_create": "registered",
        "device_add": "registered",
    }
    made = [(i, holds[x]) for i, x in enumerate(create) if x in holds]
    add(
        "creation_order",
        "before the create program ran a step, what the step initialises is zero; "
        "while it runs, what it made is still held",
        "refcount_exact_all",
        lambda s: z3.And(
            *(z3.Implies(s["cpc"] <= i, _fresh_facts(md, s, x)) for i, x in initialisers),
            *(z3.Implies(z3.And(s["prog"] == CREATE, s["cpc"] > i), s[v]) for i, v in made),
            z3.Implies(s["phase"] == D_NONE, s["cpc"] == 0),
            z3.Implies(
                s["prog"] == CREATE,
                z3.Or(s["phase"] == D_NONE, s["phase"] == D_CREATING, s["phase"] == D_LIVE),
            ),
        ),
    )
    drops = {
        "device_unregister": "registered",
        "device_del": "registered",
        "put_device": "init_ref",
        "dax_dev_put": "init_ref",
    }
    dropped = [(j, drops[x]) for j, x in enumerate(md.programs[REMOVE]) if x in drops]
    undone = [(j, drops[x]) for j, x in enumerate(md.programs[CREATE_FAILED]) if x in drops]
    # the creation cannot fail, or its error program ends it: put_device or kfree leave the creating phase
    can_fail = "device_add" in create or md.enomem_at is not None
    failed_ends = not can_fail or any(x in ("put_device", "kfree") for x in md.programs[CREATE_FAILED])
    add(
        "program_position",
        "a started program is past its first step; bind and unbind run on a live, "
        "registered, initialised device, which stays so until removal drops it",
        "refcount_exact_all",
        lambda s: z3.And(
            *(z3.Implies(s["prog"] == p, s["pc"] >= 1) for p in (REMOVE, BIND, UNBIND)),
            z3.Implies(
                z3.Or(s["prog"] == BIND, s["prog"] == UNBIND), z3.And(s["phase"] == D_LIVE, s["registered"])
            ),
            z3.Implies(
                z3.And(s["phase"] == D_LIVE, z3.Or(*(s["prog"] == p for p in (IDLE, BIND, UNBIND)))),
                z3.And(s["init_ref"], s["registered"]),
            ),
            z3.Implies(z3.And(s["phase"] == D_LIVE, s["prog"] != CREATE), s["cpc"] == len(create)),
            z3.Implies(s["registered"], s["phase"] == D_LIVE),
            *(
                z3.Implies(z3.And(s["prog"] == REMOVE, s["pc"] <= j, s["phase"] == D_LIVE), s[v])
                for j, v in dropped
            ),
            *(
                z3.Implies(z3.Or(z3.And(s["prog"] == REMOVE, s["pc"] > j), s["prog"] == DONE), z3.Not(s[v]))
                for j, v in dropped
            ),
            *(z3.Implies(z3.And(s["prog"] == CREATE_FAILED, s["pc"] <= j), s[v]) for j, v in undone),
            *(
                [
                    z3.Implies(
                        z3.Or(*(s["prog"] == p for p in (IDLE, REMOVE, DONE, BIND, UNBIND))),
                        s["phase"] != D_CREATING,
                    )
                ]
                if failed_ends
                else []
            ),
            z3.Implies(
                s["prog"] == CREATE_FAILED,
                z3.Or(*(s["phase"] == x for x in (D_CREATING, D_FAILED, D_RELEASED))),
            ),
        ),
    )
    claims: list[Inv[St]] = []
    if md.kref:
        add(
            "refcount_exact_kref",
            "dax_dev kref == kref_init's reference + open files + vmas; zero once freed",
            "refcount_exact_all",
            lambda s: z3.And(
                z3.Implies(z3.Not(released(s)), s["kref"] == b2i(s["init_ref"]) + s["nfiles"] + s["nvmas"]),
                z3.Implies(released(s), z3.And(s["kref"] == 0, z3.Not(s["init_ref"]), s["nfiles"] == 0)),
            ),
        )
        add(
            "refcount_exact_device",
            "struct device count == registration + open files (class_find_device)",
            "refcount_exact_all",
            lambda s: z3.Implies(z3.Not(released(s)), s["dev_ref"] == b2i(s["registered"]) + s["nfiles"]),
        )
    else:
        add(
            "device_accounted",
            "device count == device_initialize's + mappingN pins + the cdev's pin "
            "+ leaked pins; zero once released",
            "refcount_exact_all",
            lambda s: z3.And(
                z3.Implies(
                    z3.Not(released(s)),
                    s["dev_ref"]
                    == b2i(s["init_ref"]) + pins_of(md, s) + b2i(s["cdev_ref"] > 0) + s["leaked"],
                ),
                z3.Implies(
                    released(s),
                    z3.And(
                        s["dev_ref"] == 0,
                        z3.Not(s["init_ref"]),
                        s["cdev_ref"] == 0,
                        s["leaked"] == 0,
                        pins_of(md, s) == 0,
                    ),
                ),
            ),
        )
        add(
            "cdev_accounted",
            "cdev count <= cdev_add's reference + open files, and below it only with a leaked pin",
            "refcount_exact_all",
            lambda s: z3.And(
                s["cdev_ref"] <= b2i(s["cdev_live"]) + s["nfiles"],
                z3.Implies(s["cdev_ref"] < b2i(s["cdev_live"]) + s["nfiles"], s["leaked"] > 0),
            ),
        )
        claims.append(
            Inv(
                "refcount_exact_cdev",
                "cdev kobject count == cdev_add's reference + open files",
                lambda s: s["cdev_ref"] == b2i(s["cdev_live"]) + s["nfiles"],
                "refcount_exact_all",
            )
        )
        claims.append(
            Inv(
                "refcount_exact_device",
                "no cdev pin on the device leaks: device count == its holders exactly",
                lambda s: s["leaked"] == 0,
                "refcount_exact_all",
            )
        )
    uaf: Inv[St] = Inv(
        "no_use_after_free",
        "no open file points at a released device, no vma at a freed file, no put on freed memory",
        lambda s: z3.And(
            z3.Not(s["uaf"]),
            forall(F, lambda f: z3.Implies(s["opened"][f], z3.Not(released(s))), "f"),
            forall(V, lambda v: z3.Implies(s["used"][v], s["opened"][s["vfile"][v]]), "v"),
        ),
        "no_use_after_free",
    )
    underflow: Inv[St] = Inv(
        "no_refcount_underflow",
        "no reference is dropped that was not taken",
        lambda s: z3.Not(s["underflow"]),
        "no_refcount_underflow",
    )
    if md.kref:  # v4.7: the kref's exactness is what keeps the puts safe: one layer
        return [*core, uaf, underflow]
    return [*core, uaf, *claims, underflow]


def core_names(md: Model) -> list[str]:
    """The invariants proved assuming only each other: for the cdev lifetime, everything but the
    claims; for v4.7 all of them (one simultaneous induction)."""
    claims = set() if md.kref else {"refcount_exact_cdev", "refcount_exact_device", "no_refcount_underflow"}
    return [i.name for i in system(md).invariants if i.name not in claims]


# -------------------------------------------------------------------------------- rendering ----


def render(m: Term, states: Sequence[St], params: Sequence[dict[str, Term]]) -> list[list[str]]:
    """The device's counts and the admin's place, then each open file (fd, f_count, vmas)."""

    def ev(x: Term) -> str:
        return show(m, x)

    out = []
    for s in states:
        prog = m.eval(s["prog"], model_completion=True).as_long()
        phase = m.eval(s["phase"], model_completion=True).as_long()
        lines = [
            f"device: {PHASE_NAMES.get(phase, phase)}, dev_ref={ev(s['dev_ref'])} "
            f"init_ref={ev(s['init_ref'])} cdev_ref={ev(s['cdev_ref'])} cdev_live={ev(s['cdev_live'])} "
            f"kref={ev(s['kref'])} registered={ev(s['registered'])} bound={ev(s['bound'])} "
            f"mappings={ev(s['children'])}+{ev(s['zombies'])} unregistered",
            f"ghosts: leaked pins={ev(s['leaked'])}; "
            f"oops: uaf={ev(s['uaf'])} underflow={ev(s['underflow'])}; "
            f"admin: {PROG_NAMES.get(prog, prog)} step {ev(s['pc'])}",
            f"open files: {ev(s['nfiles'])}",
        ]
        for f in universe(m, F):
            if z3.is_true(m.eval(s["opened"][f], model_completion=True)):
                lines.append(
                    f"  {ev(f)}: fd={ev(s['fd'][f])} f_count={ev(s['count'][f])} vmas={ev(s['nv'][f])}"
                )
        out.append(lines)
    return out


def tidy(s: St, k: int) -> Term:
    """At most k open files and k vmas; counts at most k + 2."""
    fs = [z3.Const(f"tidyf{i}", F) for i in range(k)]
    vs = [z3.Const(f"tidyv{i}", V) for i in range(k)]
    return z3.And(
        s["nfiles"] <= k,
        s["nvmas"] <= k,
        forall(F, lambda f: z3.Or(z3.Not(s["opened"][f]), *(f == c for c in fs)), "f"),
        forall(V, lambda v: z3.Or(z3.Not(s["used"][v]), *(v == c for c in vs)), "v"),
        *(s[x] <= k + 2 for x in ("dev_ref", "cdev_ref", "kref", "children", "zombies", "leaked")),
    )


# ------------------------------------------------------------------------------ obligations ----


def check(md: Model, name: str, timeout: float, depth: int = 12) -> Verdict:
    """The induction of ``name`` under its layer's hypotheses. A claim proved only relative to another
    claim that fails is not a proof: it is then checked assuming the core (proved on its own) and
    itself, and its counterexample to induction there is reported, saying which claim failed."""
    deadline = time.monotonic() + timeout
    sys = system(md)
    core = core_names(md)
    layer = core if name in core else [i.name for i in sys.invariants]
    v = check_inductive(sys, name, timeout, depth=depth, assume=layer)
    if v.status is not Status.PROVED or name in core:
        return v
    for other in layer:
        if other == name or other in core:
            continue
        w = check_inductive(sys, other, max(0.1, deadline - time.monotonic()), depth=0, assume=layer)
        if w.status is Status.PROVED:
            continue
        u = check_inductive(sys, name, max(0.1, deadline - time.monotonic()), depth=0, assume=[*core, name])
        if u.status is Status.PROVED:  # the core alone suffices after all
            return u
        note = (
            f"(the proof above assumes only the core invariants, which are proved: {other} fails "
            f"in this profile, so the exact counts cannot be assumed)"
        )
        return Verdict(u.status, counterexample=f"{u.counterexample}\n{note}")
    return v


def check_not_vacuous(md: Model, timeout: float) -> Verdict:
    """The create program, then two opens and an mmap: the actions are not vacuous."""
    sys = system(md)
    plan = [f"create:{x}" for x in md.programs[CREATE]] + ["open", "open", "mmap"]

    def two_files(states: Sequence[St]) -> Term:
        return states[-1]["nfiles"] == 2

    return check_reaches(sys, plan, two_files, timeout)


def refcount_obligations(p: Profile) -> list[Obligation]:
    md = model_of(p)
    out = [
        Obligation(
            "rc_not_vacuous",
            "a run creates the device and reaches two open files",
            "proofs/refcount.py",
            lambda timeout: check_not_vacuous(md, timeout),
        )
    ]
    for inv in system(md).invariants:

        def goal(timeout: float, name: str = inv.name) -> Verdict:
            return check(md, name, timeout)

        out.append(
            Obligation(
                f"rc_{inv.name}",
                f"inductive for any files/vmas: {inv.doc}",
                f"spec/invariants.py {inv.serves}; spec/kobject.py, spec/admin.py",
                goal,
            )
        )
    return out


def serves(p: Profile) -> dict[str, str]:
    return {f"rc_{inv.name}": inv.serves for inv in system(model_of(p)).invariants}


# --------------------------------------------------------------------------------------------------
# Agreement with the spec's explicit successors
# --------------------------------------------------------------------------------------------------

#: spec/admin.py program name -> this model's program
SPEC_PROGS = {
    "probe": CREATE,
    "create_failed": CREATE_FAILED,
    "remove": REMOVE,
    "bind": BIND,
    "unbind": UNBIND,
}
#: the scalar variables an abstraction fixes (the ghosts leaked and cpc, and the numberings, stay free)
OBS_SCALARS = (
    "phase",
    "init_ref",
    "dev_ref",
    "cdev_live",
    "cdev_ref",
    "registered",
    "bound",
    "children",
    "zombies",
    "kref",
    "uaf",
    "underflow",
    "prog",
    "pc",
    "nfiles",
    "nvmas",
)
#: (scalars, open files as (slot, fd, f_count), vmas as (slot, file slot))
RcObs = tuple[tuple[int, ...], tuple[tuple[int, bool, int], ...], tuple[tuple[int, int], ...]]


def abstract(c: Ctx, s: SpecState) -> RcObs:
    """The abstraction function: a spec state (one device, one generation) as this model's variables.

    The admin's place is the number of *kept* steps (``kept_steps``) its program ran: the spec skips
    inapplicable steps eagerly, and a program whose kept steps are all done is idle here (done after
    removal) while the spec may still run its tail (provider_put, dax_region_unregister). Remove, bind
    and unbind before their first kept step are idle too: the model starts them with that step. The
    crash flags are the spec's first oops, by kind."""
    d, a = s.devs[0], s.admin
    keep = kept_steps(c.prof)
    removed = s.regions[0].phase == RG_GONE
    prog, pc = (CREATE, 0) if d.phase == D_NONE and not removed else (DONE if removed else IDLE, 0)
    if a.prog:
        steps = program(c, a.prog, a.dev)
        done = sum(1 for name, _, _ in steps[: a.pc] if name in keep)
        total = sum(1 for name, _, _ in steps if name in keep)
        code = SPEC_PROGS[a.prog]
        if done < total and (done > 0 or code in (CREATE, CREATE_FAILED)):
            prog, pc = code, done
        elif done >= total and code == REMOVE:
            prog = DONE
    files = tuple((i, fl.fd, fl.f_count) for i, fl in enumerate(s.files) if fl.dev == 0)
    vmas = tuple((i, v.file) for i, v in enumerate(s.vmas) if v.file >= 0)
    scal = (
        d.phase,
        d.init_ref,
        d.dev_ref,
        d.cdev_live,
        d.cdev_ref,
        d.registered,
        d.bound,
        d.children,
        d.zombies,
        d.kref,
        s.oops.startswith("uaf"),
        s.oops.startswith("refcount underflow"),
        prog,
        pc,
        len(files),
        len(vmas),
    )
    return tuple(int(x) for x in scal), files, vmas


def pin(s: St, o: RcObs, fs: Sequence[Term], vs: Sequence[Term]) -> Term:
    """Constrain a symbolic state to ``o``: file slot i is fs[i], vma slot j is vs[j]; every other file
    and vma is unused. The ghosts (the numberings, ``leaked``, ``cpc``) are left free: no guard or
    effect on a kept variable reads them."""
    scal, files, vmas = o
    parts = [
        s[n] == (z3.BoolVal(bool(x)) if z3.is_bool(s[n]) else z3.IntVal(x))
        for n, x in zip(OBS_SCALARS, scal, strict=True)
    ]
    opened, fd, used = z3.K(F, False), z3.K(F, False), z3.K(V, False)
    for i, f, cnt in files:
        opened, fd = z3.Store(opened, fs[i], True), z3.Store(fd, fs[i], f)
        parts += [s["count"][fs[i]] == cnt, s["nv"][fs[i]] == sum(1 for _, g in vmas if g == i)]
    for j, g in vmas:
        used = z3.Store(used, vs[j], True)
        parts += [s["vfile"][vs[j]] == fs[g]]
    return z3.And(*parts, s["opened"] == opened, s["fd"] == fd, s["used"] == used)


def check_agreement(
    c: Ctx, model: Profile | None = None, limit: int = 20_000
) -> tuple[int, int, list[Mismatch]]:
    """Every transition of every reachable, not yet crashed spec state of ``c`` (one device, one
    generation) against the step relation of ``model`` (default: c's own profile; a test plants
    another), by proofs/agreement.py: (states, visible transitions, mismatches). A spec transition
    that changes the abstraction is a run of model steps (at most as many as the longest program
    has): one step, or for an admin transition its step followed by the kept steps the spec skipped
    (the model runs them as no-ops: put_device without init_ref, cdev_del without a live cdev). A
    one-step match is also checked the other way: every outcome of that model action, on the file or
    vma the spec touched, is the abstraction of a spec successor (so device_add's failure is allowed
    exactly when the configuration lets it fail).

    The converse for all actions does not hold (see tests/proofs/test_refcount.py)."""
    from devdax.spec.system import init, successors

    cfg = c.cfg
    if cfg.devices != 1 or cfg.generations != 1 or cfg.cpus != 0 or cfg.fork or cfg.munmap_parts:
        raise ValueError(
            "config: the refcount model compares one device, one generation, no CPU, "
            "whole-vma munmap, no fork"
        )
    md = model_of(model if model is not None else c.prof)
    sys = system(md)
    depth = max(1, *(len(steps) for steps in md.programs.values()))
    fs = [z3.Const(f"file{i}", F) for i in range(cfg.files)]
    vs = [z3.Const(f"vma{i}", V) for i in range(cfg.vmas)]
    states = [sys.fresh(f"agree{k}") for k in range(depth + 1)]
    unroll = [sys.step(states[k], states[k + 1], f"agree{k}") for k in range(depth)]
    fired = [[z3.Bool(f"fired:{name}@{k}") for name, _, _ in acts] for k, acts in enumerate(unroll)]
    steps = [
        z3.And(*(z3.Implies(b, f) for b, (_, f, _) in zip(fired[k], acts, strict=True)), z3.Or(*fired[k]))
        for k, acts in enumerate(unroll)
    ]
    side: Side[RcObs] = Side(
        states,
        unroll[0],
        lambda st, o: pin(st, o, fs, vs),
        longer=[z3.And(*steps[:n]) for n in range(2, depth + 1)],
        objects=[*fs, *vs],
        base=[z3.Distinct(*objs) for objs in (fs, vs) if len(objs) > 1],
        # much faster here than one incremental solver holding the whole unrolling
        solver=lambda: z3.SolverFor("QF_AUFLIA"),
    )

    def moves(s: SpecState) -> list[tuple[str, SpecState]]:
        return [(f"{tr.action}{tr.args} -> {tr.outcome}", tr.state) for tr in successors(c, s)]

    # the model's crash flags are sticky; what follows a crash is not compared
    graph = ((s, out) for s, out in explore(init(c), moves, limit) if not s.oops)
    return agree(graph, lambda s: abstract(c, s), side)
