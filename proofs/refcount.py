"""v4.7's kref lifetime: reference counts and use after free for any number of files and vmas.

v4.7 counts its users twice: every open file, every vma and kref_init's own reference hold the
dax_dev kref (dax_dev_get/dax_dev_put, freed at zero), and every open file holds the struct device
(class_find_device). spec/invariants.refcount_exact_all says each count equals the number of its
holders; a count of a set is not first-order, so the proof carries ghost numberings
(proofs/ghost.py): the open files are numbered 0..nfiles-1 (``idx``/``slot``), each file's vmas
0..nv(f)-1 (``vidx``/``vslot``) and all vmas 0..nvmas-1 (``gidx``/``gslot``). With them an invariant,
``kref == init_ref + nfiles + nvmas`` *is* the exact count, for any number of files and vmas.

The cdev-kobject profiles (v4.10, modern) count through the cdev instead; proofs/lifetime.py owns
their counts, with the admin lifetime around them. Each claim is proved in one place.

One device is modelled (its files and vmas unbounded); the admin runs the profile's own programs
(create and remove from spec/profiles.py), step by step with a program counter, keeping the steps
that touch a count (``EFFECTS``; the others, such as synchronize_srcu, change no count). Each effect
is the one of spec/admin.py and spec/kobject.py: a put at zero is an underflow, a put on a freed
dax_dev a use after free. The user actions are those of spec/file.py and spec/vma.py (open, close,
mmap, munmap of a whole vma). mmap() needs only an open fd (check_vma's alive and shape tests decide
whether a vma exists, not what it holds): a superset of the spec's runs, so the safety invariants
proved here hold of every spec run (``check_agreement`` checks the inclusion).

The invariants are proved together, each assuming the others (one simultaneous induction): the
ghost numberings, each file's f_count, no count negative, the creation facts (``creation_order``:
before the create program's step X ran, what X initialises is still zero), the program position,
the exact kref and device counts, then spec/invariants.py's no_use_after_free and
no_refcount_underflow, which the exact kref keeps safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import z3

from devdax.proofs import engine
from devdax.proofs.agreement import Mismatch, Side, agree, explore, spec_moves
from devdax.proofs.engine import (
    ActionFn,
    Inv,
    St,
    Sys,
    b2i,
    check_inductive,
    check_reaches,
    forall,
    invariant_obligations,
    show,
)
from devdax.proofs.engine import universe as elements
from devdax.proofs.ghost import Owner, appended, numbered, removed
from devdax.proofs.runner import Obligation, Verdict
from devdax.proofs.smt import Term
from devdax.spec.admin import program
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import Lifetime, Profile
from devdax.spec.state import D_CREATING, D_LIVE, D_NONE, D_RELEASED, PHASE_NAMES, RG_GONE
from devdax.spec.state import State as SpecState

F = z3.DeclareSort("FILE")
V = z3.DeclareSort("VMAR")
#: the ghost numberings (proofs/ghost.py) of the open files and of all vmas
FILE_NUMBERING, VMA_NUMBERING = ("idx", "slot", "nfiles"), ("gidx", "gslot", "nvmas")
B, N = z3.BoolSort(), z3.IntSort()

# admin programs (0: idle, between programs; DONE: after removal, no program runs any more)
IDLE, CREATE, REMOVE, DONE = range(4)
PROG_NAMES = {IDLE: "idle", CREATE: "create", REMOVE: "remove", DONE: "done"}
#: spec/admin.py program name -> this model's program
SPEC_PROGS = {"probe": CREATE, "remove": REMOVE}


def ite(c: Term, a: St, b: St) -> St:
    return {k: z3.If(c, a[k], b[k]) if not a[k].eq(b[k]) else a[k] for k in a}


def supported(p: Profile) -> bool:
    """The kref profile (v4.7); the cdev-kobject ones are proofs/lifetime.py's."""
    return p.lifetime is Lifetime.KREF


@dataclass(frozen=True)
class Model:
    """The profile's create and remove programs, keeping the steps with an effect here."""

    programs: dict[int, tuple[str, ...]]


def model_of(p: Profile) -> Model:
    if not supported(p):
        raise ValueError(f"profile: {p.name} counts through the cdev (proofs/lifetime.py), not a kref")
    progs = {CREATE: p.create, REMOVE: p.remove}
    others = [e for prog in (p.create_failed, p.bind, p.unbind) for e in prog if e.rstrip("!") in EFFECTS]
    if others:
        raise ValueError(f"profile: {p.name} runs {others} outside create and remove")
    kept = {k: tuple(e.rstrip("!") for e in v if e.rstrip("!") in EFFECTS) for k, v in progs.items()}
    return Model(kept)


# --------------------------------------------------------------------------- kobject effects ----


def released(s: St) -> Term:
    return s["phase"] == D_RELEASED


def created(s: St) -> Term:
    return z3.Or(s["phase"] == D_CREATING, s["phase"] == D_LIVE)


def device_put(s: St) -> St:
    """kobject.device_put: underflow on a zero count (v4.7's struct device release frees nothing)."""
    return ite(s["dev_ref"] <= 0, {**s, "underflow": z3.BoolVal(True)}, {**s, "dev_ref": s["dev_ref"] - 1})


def dax_dev_put(s: St) -> St:
    """v4.7 dax_dev_put: use after free on a freed dax_dev; the last kref frees it."""
    ref = s["kref"] - 1
    put = {**s, "kref": ref, "phase": z3.If(ref == 0, z3.IntVal(D_RELEASED), s["phase"])}
    return ite(z3.Or(released(s), s["kref"] <= 0), {**s, "uaf": z3.BoolVal(True)}, put)


#: step name (spec/admin.py) -> its effect on this model
EFFECTS: dict[str, Callable[[St], St]] = {
    "ida_alloc_id": lambda s: {**s, "phase": z3.IntVal(D_CREATING)},
    "kref_init": lambda s: {**s, "kref": z3.IntVal(1), "init_ref": z3.BoolVal(True)},
    "device_create": lambda s: {
        **s,
        "phase": z3.IntVal(D_LIVE),
        "registered": z3.BoolVal(True),
        "dev_ref": z3.IntVal(1),
    },
    "device_unregister": lambda s: ite(created(s), device_put({**s, "registered": z3.BoolVal(False)}), s),
    "dax_dev_put": lambda s: ite(s["init_ref"], dax_dev_put({**s, "init_ref": z3.BoolVal(False)}), s),
}

#: what each initialising step makes, and what is still zero before it ran (``creation_order``)
HOLDS = {"kref_init": "init_ref", "device_create": "registered"}
#: what each removal step drops (``program_position``)
DROPS = {"device_unregister": "registered", "dax_dev_put": "init_ref"}


def _fresh_facts(s: St, step: str) -> Term:
    if step == "kref_init":
        return z3.And(s["kref"] == 0, z3.Not(s["init_ref"]), s["nfiles"] == 0)
    return z3.And(s["dev_ref"] == 0, z3.Not(s["registered"]), s["nfiles"] == 0, s["phase"] != D_LIVE)


# ---------------------------------------------------------------------------------- system ----

VARS: dict[str, Term | tuple[Term, Term]] = {
    **dict.fromkeys(("phase", "dev_ref", "kref", "prog", "pc", "cpc", "nfiles", "nvmas"), N),
    **dict.fromkeys(("init_ref", "registered", "uaf", "underflow"), B),
    "opened": (F, B),
    "fd": (F, B),
    "count": (F, N),
    "idx": (F, N),
    "slot": (N, F),
    "nv": (F, N),
    "used": (V, B),
    "vfile": (V, F),
    "vidx": (V, N),
    "vslot": (F, z3.ArraySort(N, V)),
    "gidx": (V, N),
    "gslot": (N, V),
}


def frame(s: St, t: St, new: St) -> Term:
    return z3.And(*(t[k] == new[k] for k in s))


def file_put(s: St, f: Term) -> St:
    """The last reference frees the file and drops what open took (dax_dev_put, put_device); the
    last open file takes the freed number."""
    cnt = s["count"][f] - 1
    kept = {**s, "count": z3.Store(s["count"], f, cnt)}
    freed = {
        **kept,
        "opened": z3.Store(s["opened"], f, False),
        "fd": z3.Store(s["fd"], f, False),
        **dict(zip(FILE_NUMBERING, removed(s["idx"], s["slot"], s["nfiles"], f), strict=True)),
    }
    return ite(cnt == 0, device_put(dax_dev_put(freed)), kept)


def open_(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """open(): class_find_device finds a registered live device; dax_dev_get and the device count."""
    f = z3.Const(f"f@{tag}", F)
    new = {
        **s,
        "dev_ref": s["dev_ref"] + 1,
        "kref": s["kref"] + 1,
        "opened": z3.Store(s["opened"], f, True),
        "fd": z3.Store(s["fd"], f, True),
        "count": z3.Store(s["count"], f, 1),
        **dict(zip(FILE_NUMBERING, appended(s["idx"], s["slot"], s["nfiles"], f), strict=True)),
        "nv": z3.Store(s["nv"], f, 0),
    }
    found = z3.And(s["phase"] == D_LIVE, s["registered"])
    return z3.And(z3.Not(s["opened"][f]), found, frame(s, t, new)), {"f": f}


def close(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    f = z3.Const(f"f@{tag}", F)
    new = file_put({**s, "fd": z3.Store(s["fd"], f, False)}, f)
    return z3.And(s["fd"][f], frame(s, t, new)), {"f": f}


def mmap(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """A new vma takes a file reference and the dax_dev kref."""
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
        "kref": s["kref"] + 1,
        **dict(zip(VMA_NUMBERING, appended(s["gidx"], s["gslot"], s["nvmas"], v), strict=True)),
    }
    return z3.And(s["fd"][f], z3.Not(s["used"][v]), frame(s, t, new)), {"f": f, "v": v}


def munmap(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """vm_ops->close (dax_dev_put), then fput of vm_file."""
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
    return z3.And(s["used"][v], frame(s, t, file_put(dax_dev_put(new), g))), {"v": v}


def admin_step(md: Model, prog: int, i: int, name: str) -> ActionFn:
    """Step i of a program: the create program runs from Init, the removal starts from idle at any
    time (spec/admin.py admin_starts); past its last step the admin is idle, or done after removal."""

    def step(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
        here = z3.And(s["prog"] == prog, s["pc"] == i)
        if i == 0 and prog == REMOVE:
            here = z3.Or(here, s["prog"] == IDLE)
        new = EFFECTS[name](s)
        if prog == CREATE:
            new = {**new, "cpc": z3.IntVal(i + 1)}
        last = i + 1 == len(md.programs[prog])
        after = (DONE if prog == REMOVE else IDLE, 0) if last else (prog, i + 1)
        return z3.And(here, frame(s, t, {**new, "prog": z3.IntVal(after[0]), "pc": z3.IntVal(after[1])})), {}

    return step


def init(s: St) -> Term:
    """Nothing exists yet; the admin is about to run the create program."""
    zero = ("dev_ref", "kref", "pc", "cpc", "nfiles", "nvmas")
    return z3.And(
        s["phase"] == D_NONE,
        s["prog"] == CREATE,
        *(s[n] == 0 for n in zero),
        *(z3.Not(s[n]) for n in ("init_ref", "registered", "uaf", "underflow")),
        s["opened"] == z3.K(F, False),
        s["fd"] == z3.K(F, False),
        s["used"] == z3.K(V, False),
    )


def system(md: Model) -> Sys:
    actions: dict[str, ActionFn] = {"open": open_, "close": close, "mmap": mmap, "munmap": munmap}
    for prog, steps in md.programs.items():
        for i, name in enumerate(steps):
            actions[f"{PROG_NAMES[prog]}:{name}"] = admin_step(md, prog, i, name)
    return Sys(vars=VARS, init=init, actions=actions, invariants=invariants(md), render=render, tidy=tidy)


# ------------------------------------------------------------------------------ invariants ----


def ghosts() -> list[Inv[St]]:
    """The ghost numberings and each file's f_count."""
    return [
        Inv(
            "ghost_files_numbered",
            "open files are numbered 0..nfiles-1 without gaps or repeats",
            lambda s: z3.And(
                numbered(F, lambda f: s["opened"][f], s["idx"], s["slot"], s["nfiles"]),
                forall(F, lambda f: z3.Implies(s["fd"][f], s["opened"][f]), "f"),
            ),
            "refcount_exact_all",
        ),
        Inv(
            "ghost_vmas_numbered",
            "each open file's vmas are numbered 0..nv(f)-1 without gaps or repeats",
            lambda s: numbered(
                V,
                lambda v: s["used"][v],
                s["vidx"],
                s["vslot"],
                s["nv"],
                Owner(F, lambda f: s["opened"][f], lambda v: s["vfile"][v]),
            ),
            "refcount_exact_all",
        ),
        Inv(
            "ghost_all_vmas_numbered",
            "all vmas are numbered 0..nvmas-1 without gaps or repeats",
            lambda s: numbered(V, lambda v: s["used"][v], s["gidx"], s["gslot"], s["nvmas"]),
            "refcount_exact_all",
        ),
        Inv(
            "refcount_exact_file",
            "each file's f_count == its fd + number of its vmas",
            lambda s: forall(
                F, lambda f: z3.Implies(s["opened"][f], s["count"][f] == b2i(s["fd"][f]) + s["nv"][f]), "f"
            ),
            "refcount_exact_all",
        ),
    ]


def counts_nonnegative(md: Model, s: St) -> Term:
    create = md.programs[CREATE]
    return z3.And(
        s["phase"] >= D_NONE,
        s["phase"] <= D_RELEASED,
        *(s[n] >= 0 for n in ("dev_ref", "kref", "cpc")),
        s["cpc"] <= len(create),
        *(
            z3.Implies(s["prog"] == p, z3.And(s["pc"] >= 0, s["pc"] < len(steps)))
            for p, steps in md.programs.items()
        ),
        z3.Implies(s["prog"] == CREATE, s["pc"] == s["cpc"]),
        z3.Or(*(s["prog"] == p for p in PROG_NAMES)),
    )


def creation_order(md: Model, s: St) -> Term:
    made = [(i, x) for i, x in enumerate(md.programs[CREATE]) if x in HOLDS]
    return z3.And(
        *(z3.Implies(s["cpc"] <= i, _fresh_facts(s, x)) for i, x in made),
        *(z3.Implies(z3.And(s["prog"] == CREATE, s["cpc"] > i), s[HOLDS[x]]) for i, x in made),
        z3.Implies(s["phase"] == D_NONE, s["cpc"] == 0),
        z3.Implies(
            s["prog"] == CREATE, z3.Or(s["phase"] == D_NONE, s["phase"] == D_CREATING, s["phase"] == D_LIVE)
        ),
    )


def program_position(md: Model, s: St) -> Term:
    dropped = [(j, DROPS[x]) for j, x in enumerate(md.programs[REMOVE]) if x in DROPS]
    idle_or_after = z3.Or(*(s["prog"] == p for p in (IDLE, REMOVE, DONE)))
    return z3.And(
        z3.Implies(s["prog"] == REMOVE, s["pc"] >= 1),
        z3.Implies(z3.And(s["phase"] == D_LIVE, s["prog"] == IDLE), z3.And(s["init_ref"], s["registered"])),
        z3.Implies(z3.And(s["phase"] == D_LIVE, s["prog"] != CREATE), s["cpc"] == len(md.programs[CREATE])),
        z3.Implies(s["registered"], s["phase"] == D_LIVE),
        *(
            z3.Implies(z3.And(s["prog"] == REMOVE, s["pc"] <= j, s["phase"] == D_LIVE), s[v])
            for j, v in dropped
        ),
        *(
            z3.Implies(z3.Or(z3.And(s["prog"] == REMOVE, s["pc"] > j), s["prog"] == DONE), z3.Not(s[v]))
            for j, v in dropped
        ),
        z3.Implies(idle_or_after, s["phase"] != D_CREATING),
    )


def positions(md: Model) -> list[Inv[St]]:
    """Where the admin is, and what it has made so far."""
    exact = "refcount_exact_all"
    return [
        Inv(
            "counts_nonnegative",
            "no count is negative; the admin is inside one of its programs",
            lambda s: counts_nonnegative(md, s),
            exact,
        ),
        Inv(
            "creation_order",
            "before the create program ran a step, what the step initialises is zero; "
            "while it runs, what it made is still held",
            lambda s: creation_order(md, s),
            exact,
        ),
        Inv(
            "program_position",
            "a started removal is past its first step; an idle live device is registered and "
            "initialised, and stays so until removal drops it",
            lambda s: program_position(md, s),
            exact,
        ),
    ]


def invariants(md: Model) -> list[Inv[St]]:
    exact = "refcount_exact_all"
    return [
        *ghosts(),
        *positions(md),
        Inv(
            "refcount_exact_kref",
            "dax_dev kref == kref_init's reference + open files + vmas; zero once freed",
            lambda s: z3.And(
                z3.Implies(z3.Not(released(s)), s["kref"] == b2i(s["init_ref"]) + s["nfiles"] + s["nvmas"]),
                z3.Implies(released(s), z3.And(s["kref"] == 0, z3.Not(s["init_ref"]), s["nfiles"] == 0)),
            ),
            exact,
        ),
        Inv(
            "refcount_exact_device",
            "struct device count == registration + open files (class_find_device)",
            lambda s: z3.Implies(z3.Not(released(s)), s["dev_ref"] == b2i(s["registered"]) + s["nfiles"]),
            exact,
        ),
        Inv(
            "no_use_after_free",
            "no open file points at a released device, no vma at a freed file, no put on freed memory",
            lambda s: z3.And(
                z3.Not(s["uaf"]),
                forall(F, lambda f: z3.Implies(s["opened"][f], z3.Not(released(s))), "f"),
                forall(V, lambda v: z3.Implies(s["used"][v], s["opened"][s["vfile"][v]]), "v"),
            ),
            "no_use_after_free",
            kind="spec",
        ),
        Inv(
            "no_refcount_underflow",
            "no reference is dropped that was not taken",
            lambda s: z3.Not(s["underflow"]),
            "no_refcount_underflow",
            kind="spec",
        ),
    ]


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
            f"init_ref={ev(s['init_ref'])} kref={ev(s['kref'])} registered={ev(s['registered'])}",
            f"oops: uaf={ev(s['uaf'])} underflow={ev(s['underflow'])}; "
            f"admin: {PROG_NAMES.get(prog, prog)} step {ev(s['pc'])}",
            f"open files: {ev(s['nfiles'])}, vmas: {ev(s['nvmas'])}",
        ]
        for f in elements(m, F):
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
        *(s[x] <= k + 2 for x in ("dev_ref", "kref")),
    )


# ------------------------------------------------------------------------------ obligations ----


def check_not_vacuous(md: Model, timeout: float) -> Verdict:
    """The create program, then two opens and an mmap: the actions are not vacuous."""
    plan = [f"create:{x}" for x in md.programs[CREATE]] + ["open", "open", "mmap"]
    return check_reaches(system(md), plan, lambda states: states[-1]["nfiles"] == 2, timeout)


def refcount_obligations(p: Profile) -> list[Obligation]:
    """``rc_`` obligations, for the kref profile only (``supported``)."""
    if not supported(p):
        return []
    md = model_of(p)
    out = [
        Obligation(
            "rc_not_vacuous",
            "a run creates the device and reaches two open files",
            "proofs/refcount.py",
            lambda timeout: check_not_vacuous(md, timeout),
        )
    ]
    sys = system(md)
    check = partial(check_inductive, sys, depth=12)
    return out + invariant_obligations("rc_", "files/vmas", "proofs/refcount.py", sys.invariants, check)


def serves(p: Profile) -> dict[str, str]:
    if not supported(p):
        return {}
    return {f"rc_{inv.name}": inv.serves for inv in system(model_of(p)).invariants}


# --------------------------------------------------------------------------------------------------
# Agreement with the spec's explicit successors
# --------------------------------------------------------------------------------------------------

#: the scalar variables an abstraction fixes (the ghost cpc and the numberings stay free)
OBS_SCALARS = ("phase", "init_ref", "dev_ref", "registered", "kref", "uaf", "underflow", "prog", "pc")
#: (scalars, open files as (slot, fd, f_count), vmas as (slot, file slot))
RcObs = tuple[tuple[int, ...], tuple[tuple[int, bool, int], ...], tuple[tuple[int, int], ...]]


def abstract(c: Ctx, s: SpecState) -> RcObs:
    """The abstraction function: a spec state (one device, one generation) as this model's variables.

    The admin's place is the number of *kept* steps (``EFFECTS``) its program ran: the spec skips
    inapplicable steps eagerly, and a program whose kept steps are all done is idle here (done after
    removal) while the spec may still run its tail. A removal before its first kept step is idle
    too: the model starts it with that step. The crash flags are the spec's first oops, by kind."""
    d, a = s.devs[0], s.admin
    removed_ = s.regions[0].phase == RG_GONE
    prog, pc = (CREATE, 0) if d.phase == D_NONE and not removed_ else (DONE if removed_ else IDLE, 0)
    if a.prog:
        steps = program(c, a.prog, a.dev)
        done = sum(1 for name, _, _ in steps[: a.pc] if name in EFFECTS)
        total = sum(1 for name, _, _ in steps if name in EFFECTS)
        code = SPEC_PROGS[a.prog]
        if done < total and (done > 0 or code == CREATE):
            prog, pc = code, done
        elif done >= total and code == REMOVE:
            prog = DONE
    files = tuple((i, fl.fd, fl.f_count) for i, fl in enumerate(s.files) if fl.dev == 0)
    vmas = tuple((i, v.file) for i, v in enumerate(s.vmas) if v.file >= 0)
    oops = (s.oops.startswith("uaf"), s.oops.startswith("refcount underflow"))
    scal = (d.phase, d.init_ref, d.dev_ref, d.registered, d.kref, *oops, prog, pc)
    return tuple(int(x) for x in scal), files, vmas


def pin(s: St, o: RcObs, fs: Sequence[Term], vs: Sequence[Term]) -> Term:
    """Constrain a symbolic state to ``o``: file slot i is fs[i], vma slot j is vs[j]; every other file
    and vma is unused. The ghosts (the numberings, ``cpc``) are left free: no guard or effect on a
    kept variable reads them."""
    scal, files, vmas = o
    parts = [
        s[n] == (z3.BoolVal(bool(x)) if z3.is_bool(s[n]) else z3.IntVal(x))
        for n, x in zip(OBS_SCALARS, scal, strict=True)
    ]
    parts += [s["nfiles"] == len(files), s["nvmas"] == len(vmas)]
    opened, fd, used = z3.K(F, False), z3.K(F, False), z3.K(V, False)
    for i, f, cnt in files:
        opened, fd = z3.Store(opened, fs[i], True), z3.Store(fd, fs[i], f)
        parts += [s["count"][fs[i]] == cnt, s["nv"][fs[i]] == sum(1 for _, g in vmas if g == i)]
    for j, g in vmas:
        used = z3.Store(used, vs[j], True)
        parts += [s["vfile"][vs[j]] == fs[g]]
    return z3.And(*parts, s["opened"] == opened, s["fd"] == fd, s["used"] == used)


def check_agreement(c: Ctx, limit: int = 20_000) -> tuple[int, int, list[Mismatch]]:
    """Every transition of every reachable, not yet crashed spec state of ``c`` (one device, one
    generation) against this model's step relation, by proofs/agreement.py: (states, visible
    transitions, mismatches). A spec transition that changes the abstraction is a run of model
    steps (at most as many as the longest program has): one step, or for an admin transition its
    step followed by the kept steps the spec skipped. A one-step match is also checked the other
    way: every outcome of that model action, on the file or vma the spec touched, is the abstraction
    of a spec successor. The converse for all actions does not hold (mmap's looser guard)."""
    from devdax.spec.system import init as spec_init

    cfg = c.cfg
    if cfg.devices != 1 or cfg.generations != 1 or cfg.cpus != 0 or cfg.fork or cfg.munmap_parts:
        raise ValueError(
            "config: the refcount model compares one device, one generation, no CPU, "
            "whole-vma munmap, no fork"
        )
    sys = system(model_of(c.prof))
    depth = max(1, *(len(steps) for steps in model_of(c.prof).programs.values()))
    fs = [z3.Const(f"file{i}", F) for i in range(cfg.files)]
    vs = [z3.Const(f"vma{i}", V) for i in range(cfg.vmas)]
    states = [sys.fresh(f"agree{k}") for k in range(depth + 1)]
    unroll = [sys.step(states[k], states[k + 1], f"agree{k}") for k in range(depth)]
    steps = [z3.And(*engine.one_of(acts, f"agree{k}")[0]) for k, acts in enumerate(unroll)]
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
    # the model's crash flags are sticky; what follows a crash is not compared
    graph = ((s, out) for s, out in explore(spec_init(c), spec_moves(c), limit) if not s.oops)
    return agree(graph, lambda s: abstract(c, s), side)
