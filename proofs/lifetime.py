"""One device's admin lifetime, for any number of users: probe, create_failed, remove, bind, unbind,
interleaved with any number of files opened, mmapped and closed (cdev-kobject profiles: v4.10, modern).

proofs/protocol.py proves the fault-vs-teardown race; this module proves what the admin programs do to
the objects users hold: which flags a device has while it is alive (alive_implies_registered, M6 and
cdev_del-before-kill), that provider removal kills every device (removed_region_dead, M16), that no
release touches freed memory (no_use_after_free, M15), that open() never returns a handle mmap
dereferences as NULL (no_null_deref, M21/F1 of modern), that no count underflows (F2 of modern), and
that nothing leaks once everything is gone (no_leak_at_quiescence).

The admin programs are not restated: each is ``spec.admin.program`` of the profile (one device, one
region), and the transition relation walks those step lists. What each step does is restated once, in
``Model.step``, next to the spec function it mirrors; tests/proofs/test_lifetime.py checks
that this step relation equals spec/system.py's ``successors`` on every reachable state of small
configurations (the one source of truth stays spec/).

Users are an uninterpreted sort of files (``LFILE``) with per-file flags and a count of their vmas;
the number of open files is carried by a ghost numbering (idx/slot, proofs/ghost.py), so
"the cdev count equals the open files plus cdev_add's own reference" is first-order.

Strengthenings (each named in ``INVARIANTS``):

* ``admin_table``: the finitely many values the admin-controlled flags (program position, region and
  device phase, kobj_map, registration, bind state, alive, mapping children, the region's count) take
  together. It is *proposed* by an explicit exploration of the spec (``learn_table``, a small
  configuration) and *checked* inductive here for any number of files, so the proof does not rest
  on the exploration: if a row were missing, induction would fail with a counterexample;
* arithmetic ones relating the counts (cdev kobject, struct device) to the files and to a ghost
  ``lost``: the device pins cdev_add() took on top of one it already held (F2, modern re-bind).

A documented finding of the profile is checked but never assumed as a hypothesis, so the other proofs
of that profile do not lean on a property it does not have. When an unbounded step query is slow, a
counterexample is first looked for among three files (a finite model is a real counterexample).

Scope: one device of one region, one provider generation; no CPU and no installed entry (the race with
faults is proofs/protocol.py's); the cdev-kobject profiles only (v4.7's dax_dev kref and its
class_find_device lookup are not modelled: no obligation for v4.7).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields, replace
from functools import cache, partial
from itertools import permutations

import z3

from devdax.proofs import engine
from devdax.proofs.agreement import Mismatch, Side, agree, explore
from devdax.proofs.engine import Inv, b2i, forall, invariant_obligations, reader
from devdax.proofs.ghost import appended, numbered, removed
from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.proofs.smt import Term
from devdax.spec import admin
from devdax.spec import state as ST
from devdax.spec.config import Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import Lifetime, Profile
from devdax.spec.state import D_CREATING, D_FAILED, D_LIVE, D_NONE, D_RELEASED, RG_GONE, RG_LIVE, RG_NONE
from devdax.spec.state import State as SpecState

LFILE = z3.DeclareSort("LFILE")
B, N = z3.BoolSort(), z3.IntSort()

#: admin programs by code; 0 is the idle admin
PROGS = ("", "probe", "remove", "bind", "unbind", "create_failed")
IDLE = 0
CODE = {name: i for i, name in enumerate(PROGS)}
#: spec/ctx.oops records the first crash; the invariants read its kind
OOPS_NONE, OOPS_NULL, OOPS_UAF, OOPS_REFCOUNT, OOPS_LIST = 0, 1, 2, 3, 4
OOPS_NAMES = {
    OOPS_NONE: "-",
    OOPS_NULL: "null deref",
    OOPS_UAF: "use after free",
    OOPS_REFCOUNT: "underflow",
    OOPS_LIST: "list_del corruption",
}
RG_PHASES: dict[int, str] = {RG_NONE: "none", RG_LIVE: "live", RG_GONE: "gone"}
#: the one mmap shape users try: a whole aligned MAP_SHARED|PROT_WRITE mapping (spec/variants SHARED_RW)
SHARED_RW = MmapShape("shared-rw")


def oops_code(text: str) -> int:
    """spec/ctx.oops: the invariants tell the kinds apart by the message's first word."""
    if not text:
        return OOPS_NONE
    kinds = {"null": OOPS_NULL, "uaf": OOPS_UAF, "refcount": OOPS_REFCOUNT, "list_del": OOPS_LIST}
    return kinds[text.split()[0].rstrip(":")]


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LState:
    """The fields of spec/state.py one device and its region need, plus ghosts (nfiles, idx, slot,
    lost). Names follow spec/state.py: Admin.prog/pc/binds_left, Region.*, Dev.*, File.*."""

    prog: Term  # Admin.prog, by CODE
    pc: Term  # Admin.pc: index into the spec's step list of that program
    binds_left: Term  # Admin.binds_left[0]
    rg_phase: Term  # Region.phase
    rg_kref: Term  # Region.kref
    provider_ref: Term  # Region.provider_ref
    devm_ref: Term  # Region.devm_ref
    rg_freed: Term  # Region.freed
    phase: Term  # Dev.phase
    id_held: Term  # Dev.id_held
    minor_held: Term  # Dev.minor_held
    has_minor: Term  # Dev.minor >= 0: the /dev node exists (open's guard)
    init_ref: Term  # Dev.init_ref
    dev_ref: Term  # Dev.dev_ref
    cdev_live: Term  # Dev.cdev_live
    cdev_ref: Term  # Dev.cdev_ref
    cdev_mapped: Term  # Dev.cdev_mapped (kobj_map)
    icdev_cached: Term  # Dev.icdev_cached
    icdev_stale: Term  # Dev.icdev_stale
    holds_region: Term  # Dev.holds_region
    registered: Term  # Dev.registered
    bound: Term  # Dev.bound
    alive: Term  # Dev.alive
    children: Term  # Dev.children (mappingN registered)
    zombies: Term  # Dev.zombies (mappingN unregistered, release pending)
    dead: Term  # Dev.dead (kill marker "!")
    gp: Term  # State.gp
    oops: Term  # kind of State.oops
    opened: Term  # LFILE -> Bool: File.dev == 0
    fd: Term  # LFILE -> Bool: File.fd
    pnull: Term  # LFILE -> Bool: File.private_null
    nv: Term  # LFILE -> Int: vmas mapping the file
    count: Term  # LFILE -> Int: File.f_count (file_count_exact: fd + nv)
    nfiles: Term  # ghost: number of open files
    idx: Term  # ghost LFILE -> Int
    slot: Term  # ghost Int -> LFILE
    lost: Term  # ghost: device pins cdev_add() took while the cdev count was not 0 (F2)
    added: Term  # ghost: cdev_add() has run at least once

    @staticmethod
    def fresh(tag: str, fsort: Term = LFILE) -> LState:
        ints = {"prog", "pc", "binds_left", "rg_phase", "rg_kref", "phase", "dev_ref", "cdev_ref"}
        ints |= {"children", "zombies", "oops", "nfiles", "lost"}
        sorts: dict[str, Term | tuple[Term, Term]] = {
            f.name: N if f.name in ints else B for f in fields(LState)
        }
        sorts |= {**dict.fromkeys(("opened", "fd", "pnull"), (fsort, B)), "slot": (N, fsort)}
        sorts |= dict.fromkeys(("nv", "count", "idx"), (fsort, N))
        return LState(**engine.declare(sorts, tag))

    def replace(self, **changes: Term) -> LState:
        return replace(self, **changes)

    def equals(self, o: LState) -> Term:
        return z3.And(*(getattr(self, f.name) == getattr(o, f.name) for f in fields(self)))


GHOSTS = ("nfiles", "idx", "slot", "lost", "added")


def ite(cond: Term, a: LState, b: LState) -> LState:
    """Field-wise If; a field both sides share stays as it is (keeps the formulas small)."""

    def pick(x: Term, y: Term) -> Term:
        return x if x is y or z3.eq(x, y) else z3.If(cond, x, y)

    return LState(**{f.name: pick(getattr(a, f.name), getattr(b, f.name)) for f in fields(LState)})


def crash(s: LState, kind: int) -> LState:
    """spec/ctx.oops: only the first crash is recorded; the state is otherwise unchanged."""
    return s.replace(oops=z3.If(s.oops == OOPS_NONE, kind, s.oops))


def bug(s: LState, kind: int) -> LState:
    """spec/ctx.bug: a BUG() replaces an earlier refcount WARN, never an earlier crash."""
    return s.replace(oops=z3.If(z3.Or(s.oops == OOPS_NONE, s.oops == OOPS_REFCOUNT), kind, s.oops))


# --------------------------------------------------------------------------------------------------
# The model of one profile
# --------------------------------------------------------------------------------------------------


def base_name(profile: Profile) -> str:
    return profile.name.split("+")[0]


def supported(profile: Profile) -> bool:
    """The cdev-kobject profiles; v4.7's dax_dev kref and class_find_device are not modelled here."""
    return profile.lifetime is Lifetime.CDEV_KOBJECT


@dataclass(frozen=True, eq=False)
class Model:
    """One device (index 0) of one region, for ``profile``. ``add_failure``: device_add may fail
    (Config.add_failure). ``ranges``: mappingN children per device (Config.ranges). ``fsort``: the
    file sort (uninterpreted for proofs, a finite enumeration to compare with the spec).
    ``vma_slots``/``binds``: the spec configuration's bounds, for that comparison only."""

    profile: Profile
    add_failure: bool = True
    ranges: int = 2
    fsort: Term = LFILE
    files: Sequence[Term] = ()
    vma_slots: int | None = None
    binds: int | None = None

    @property
    def ctx(self) -> Ctx:
        return _ctx(self.profile, self.ranges)

    def program(self, name: str) -> tuple[tuple[str, bool], ...]:
        """The spec's step list (spec/admin.program) of one program for device 0, region 0."""
        return tuple((step, kill) for step, _, kill in admin.program(self.ctx, name, 0))

    @property
    def programs(self) -> dict[str, tuple[tuple[str, bool], ...]]:
        names = ["probe", "remove", "create_failed"]
        names += ["bind", "unbind"] if self.profile.bind_cycles else []
        return {n: self.program(n) for n in names}

    def after_dev(self, name: str) -> int:
        """spec/admin._after_dev: where a program resumes after leaving this device's steps (the
        region's own step that follows them)."""
        prog = self.program(name)
        last = max(
            i
            for i, (st, _) in enumerate(prog)
            if st not in ("alloc_dax_region", "provider_put", "dax_region_unregister")
        )
        return last + 1

    def creating(self, s: LState) -> Term:
        """spec/invariants._admin_creating for device 0: a probe step of this device (with one device
        per region every probe step names index 0), a bind, or the creation error path."""
        probe = admin.program(self.ctx, "probe", 0)
        at_dev = [i for i, (_, arg, _) in enumerate(probe) if arg == 0]
        return z3.Or(
            s.prog == CODE["bind"],
            s.prog == CODE["create_failed"],
            z3.And(s.prog == CODE["probe"], z3.Or(*(s.pc == i for i in at_dev))),
            z3.And(s.prog == CODE["probe"], s.phase == D_CREATING),
        )

    # ------------------------------------------------------------------------------ kernel puts ----

    def region_put(self, s: LState) -> LState:
        """spec/kobject.region_put: kref_put(&dax_region->kref, dax_region_free)."""
        k = s.rg_kref - 1
        return ite(
            z3.Or(s.rg_freed, s.rg_kref <= 0), crash(s, OOPS_UAF), s.replace(rg_kref=k, rg_freed=k == 0)
        )

    def dev_release(self, s: LState) -> LState:
        """spec/kobject.dev_release: minor (v4.10+: at release) and region id back, then the region
        reference; an id freed into a freed region's ida is a use after free."""
        minor = s.minor_held if self.profile.minor_freed_at != "release" else z3.BoolVal(False)
        done = s.replace(
            minor_held=minor,
            id_held=z3.BoolVal(False),
            phase=z3.IntVal(D_RELEASED),
            holds_region=z3.BoolVal(False),
            alive=z3.BoolVal(False),
        )
        done = ite(s.holds_region, self.region_put(done), done)
        return ite(z3.And(s.id_held, s.rg_freed), crash(s, OOPS_UAF), done)

    def device_put(self, s: LState) -> LState:
        """spec/kobject.device_put: put_device(); release on the last reference."""
        ref = s.dev_ref - 1
        after = s.replace(dev_ref=ref)
        return ite(
            z3.Or(s.dev_ref <= 0, s.phase == D_RELEASED),
            crash(s, OOPS_REFCOUNT),
            ite(ref == 0, self.dev_release(after), after),
        )

    def cdev_put(self, s: LState) -> LState:
        """spec/kobject.cdev_put: kobject_put(&cdev->kobj); on zero cdev_default_release forgets the
        cached i_cdev and puts the parent device."""
        ref = s.cdev_ref - 1
        after = s.replace(cdev_ref=ref)
        zero = self.device_put(after.replace(icdev_cached=z3.BoolVal(False)))
        return ite(
            s.phase == D_RELEASED,
            crash(s, OOPS_UAF),
            ite(s.cdev_ref <= 0, crash(s, OOPS_REFCOUNT), ite(ref > 0, after, zero)),
        )

    def file_put(self, s: LState, f: Term) -> LState:
        """spec/file.file_put after the fd or a vma let go: the last reference frees the file slot
        and drops what open took (file_holder_put -> cdev_put). Ghost: the last number moves into
        the freed one."""
        idx, slot, nfiles = removed(s.idx, s.slot, s.nfiles, f)
        cnt = s.count[f] - 1
        s = s.replace(count=z3.Store(s.count, f, cnt))
        freed = s.replace(
            opened=z3.Store(s.opened, f, False),
            fd=z3.Store(s.fd, f, False),
            pnull=z3.Store(s.pnull, f, False),
            idx=idx,
            slot=slot,
            nfiles=nfiles,
        )
        put = self.cdev_put(freed)
        return ite(cnt == 0, ite(put.registered, put, self.cd_forget(put)), s)

    def cd_forget(self, s: LState) -> LState:
        """spec/kobject.cd_forget: the /dev inode is evicted once no file holds it; a stale link BUGs."""
        return ite(
            z3.And(s.icdev_stale, s.nfiles == 0), bug(s.replace(icdev_stale=z3.BoolVal(False)), OOPS_LIST), s
        )

    # ------------------------------------------------------------------------------ admin steps ----

    def created(self, s: LState) -> Term:
        """spec/admin._created."""
        return z3.Or(s.phase == D_CREATING, s.phase == D_LIVE)

    def step(self, name: str, s: LState) -> tuple[Term, list[tuple[str, str, LState]]]:
        """(skipped, outcomes) of one spec/admin step on device 0: ``skipped`` is when the step returns
        SKIP; each outcome is (label, kind, state) with kind "ok", "create_failed" or "skip" (the
        Goto of spec/admin)."""
        made = self._creation(name, s)
        if made is not None:
            return z3.BoolVal(False), [("ok", "ok", made)]
        if name == "provider_put":  # admin.provider_put: the probe's reference, where it holds one
            return z3.Not(s.provider_ref), [
                ("ok", "ok", self.region_put(s.replace(provider_ref=z3.BoolVal(False))))
            ]
        if name == "device_add":  # admin.device_add: may fail (Config.add_failure)
            outs = [("ok", "ok", s.replace(phase=z3.IntVal(D_LIVE), registered=z3.BoolVal(True)))]
            return z3.BoolVal(False), outs + ([("EEXIST", "create_failed", s)] if self.add_failure else [])
        if name == "unregister_lock":  # admin.unregister_lock: M16's interruptible lock
            outs = [("ok", "ok", s)] + (
                [("EINTR", "skip", s)] if self.profile.unregister_can_be_interrupted else []
            )
            return z3.Not(self.created(s)), outs
        skip, after = self._teardown(name, s)
        return skip, [("ok", "ok", after)]

    def _creation(self, name: str, s: LState) -> LState | None:
        """The steps that always apply and cannot fail (None: not one of them)."""
        T, F = z3.BoolVal(True), z3.BoolVal(False)
        if name == "alloc_dax_region":  # admin.alloc_dax_region: kref_init + the devm action's ref
            prov = self.profile.provider_region_ref  # 6.1's probe holds one more until provider_put
            return s.replace(
                rg_phase=z3.IntVal(RG_LIVE),
                rg_kref=z3.IntVal(1 + prov),
                provider_ref=z3.BoolVal(prov),
                devm_ref=T,
            )
        if name == "dax_region_unregister":  # admin.dax_region_unregister: gone; the devm reference
            gone = s.replace(rg_phase=z3.IntVal(RG_GONE))
            return ite(s.devm_ref, self.region_put(gone.replace(devm_ref=F)), gone)
        if name == "region_get":  # admin.region_get: kref_get, a use after free if freed
            return ite(s.rg_freed, crash(s, OOPS_UAF), s.replace(rg_kref=s.rg_kref + 1, holds_region=T))
        if name == "cdev_add" and self.profile.cdev_per_binding:  # F2 fix: a new cdev per binding
            pin = b2i(s.cdev_ref == 0)
            return s.replace(
                cdev_ref=s.cdev_ref + 1, cdev_live=T, cdev_mapped=T, dev_ref=s.dev_ref + pin, added=T
            )
        if name == "cdev_add":  # admin.cdev_add: cdev_init (count 1) + cdev_add (pins parent)
            lost = s.lost + b2i(s.cdev_ref > 0)
            stale = z3.Or(s.icdev_stale, s.icdev_cached)
            return s.replace(
                cdev_ref=z3.IntVal(1),
                cdev_live=T,
                cdev_mapped=T,
                dev_ref=s.dev_ref + 1,
                added=T,
                lost=lost,
                icdev_stale=stale,
            )
        if name == "add_mappings":  # admin.add_mappings: mappingN children, pinned since M15's fix
            pin = self.ranges if self.profile.mapping_pins_parent else 0
            return s.replace(children=z3.IntVal(self.ranges), dev_ref=s.dev_ref + pin)
        simple: dict[str, dict[str, Term]] = {
            "ida_alloc_id": {"phase": z3.IntVal(D_CREATING), "id_held": T},
            "ida_alloc_minor": {"minor_held": T, "has_minor": T},  # one device: its minor is free
            "dax_inode_get": {},  # the inode is not modelled here
            "device_initialize": {"dev_ref": z3.IntVal(1), "init_ref": T},  # only put_device frees
            "set_alive": {"alive": T},
            "run_dax": {"alive": T, "bound": T, "dead": F},
            "kfree": {"phase": z3.IntVal(D_RELEASED), "alive": F},  # M18
        }
        return s.replace(**simple[name]) if name in simple else None

    def _teardown(self, name: str, s: LState) -> tuple[Term, LState]:
        """(skipped, state after) of the steps that may not apply (spec/admin returns SKIP)."""
        T, F = z3.BoolVal(True), z3.BoolVal(False)
        gone = z3.Not(self.created(s))
        if name == "clear_alive":  # admin.clear_alive: kill_dax
            skip = z3.Or(gone, z3.And(z3.Not(s.bound), z3.Not(s.alive))) if self.profile.bind_cycles else gone
            return skip, s.replace(alive=F, bound=F)
        if name in ("synchronize_start", "unmap_mapping_range"):  # admin: no CPUs and entries here
            skip = z3.Or(gone, s.dead) if self.profile.bind_cycles else gone
            return skip, s.replace(gp=T) if name == "synchronize_start" else s
        if name == "synchronize_wait":  # admin.synchronize_wait: no reader to wait for
            return z3.Not(s.gp), s.replace(gp=F)
        if name == "cdev_del":  # admin.cdev_del: out of kobj_map, drop the cdev's own ref
            return z3.Not(s.cdev_live), self.cdev_put(s.replace(cdev_live=F, cdev_mapped=F))
        if name == "device_del":  # admin.device_del: out of sysfs and devtmpfs, unbinds the driver
            return gone, self.cd_forget(s.replace(registered=F, bound=F))
        if name == "unregister_mappings":  # admin.unregister_mappings: children become zombies
            return z3.Or(gone, s.children == 0), s.replace(
                children=z3.IntVal(0), zombies=s.zombies + s.children
            )
        if name == "put_device":  # admin.put_device: device_initialize's reference
            phase = z3.If(s.phase == D_LIVE, D_LIVE, D_FAILED)
            return z3.Not(s.init_ref), self.device_put(s.replace(init_ref=F, phase=phase))
        if name == "ida_free_id":  # admin.ida_free_id
            return z3.Not(s.id_held), s.replace(id_held=F)
        if name == "ida_free_minor":  # admin.ida_free_minor (M22)
            return z3.Not(s.minor_held), s.replace(minor_held=F)
        raise ValueError(
            f"profile: step {name!r} of {self.profile.name} is not modelled by proofs/lifetime.py"
        )

    def finish(self, name: str, i: int, t: LState) -> LState:
        """spec/admin._finish: skip the steps that do not apply, then idle or resume the probe."""
        prog = self.program(name)
        if name == "create_failed":
            end = self.finish("probe", self.after_dev("probe"), t)
        else:
            end = t.replace(prog=z3.IntVal(IDLE), pc=z3.IntVal(0))
        for j in reversed(range(i, len(prog))):
            skip, _ = self.step(prog[j][0], t)
            end = ite(skip, end, t.replace(prog=z3.IntVal(CODE[name]), pc=z3.IntVal(j)))
        return end

    def run_from(self, name: str, s: LState, at: Term | None) -> list[tuple[str, Term, LState]]:
        """The next step of program ``name`` from position ``at`` (None: from 0, a fresh start):
        spec/admin.admin_steps skips what does not apply and runs the first step that does."""
        prog = self.program(name)
        out = []
        for k, (st, kill) in enumerate(prog):
            skips = [self.step(prog[j][0], s)[0] for j in range(k)]
            skip_k, outs = self.step(st, s)
            if at is None:
                guard = z3.And(*skips, z3.Not(skip_k))
            else:
                guard = z3.And(
                    at <= k, *(z3.Implies(at <= j, sk) for j, sk in enumerate(skips)), z3.Not(skip_k)
                )
            for label, kind, t in outs:
                if kind == "create_failed":
                    nxt = self.finish("create_failed", 0, t)
                elif kind == "skip":
                    nxt = self.finish(name, self.after_dev(name), t)
                else:
                    nxt = self.finish(name, k + 1, t.replace(dead=z3.BoolVal(True)) if kill else t)
                out.append((f"{name}:{st}:{label}", guard, nxt))
        return out

    def starts(self, s: LState) -> list[tuple[str, Term, LState]]:
        """spec/admin.admin_starts for one device and one generation."""
        out = [("probe", s.rg_phase == RG_NONE, s)]
        live = s.rg_phase == RG_LIVE
        if self.profile.bind_cycles:
            ready = z3.And(live, s.phase == D_LIVE, s.registered)
            out.append(
                ("unbind", z3.And(ready, s.bound, s.binds_left > 0), s.replace(binds_left=s.binds_left - 1))
            )
            out.append(("bind", z3.And(ready, z3.Not(s.bound), z3.Not(s.cdev_live)), s))
        out.append(("remove", live, s))
        return out

    # ------------------------------------------------------------------------------ transitions ----

    def actions(self, s: LState, t: LState, tag: str = "step") -> list[tuple[str, Term, Term | None]]:
        """(name, formula, file parameter or None): every step of the admin, of a user, and the
        asynchronous mapping_release, as a relation between s and t."""
        out: list[tuple[str, Term, Term | None]] = []
        for name in self.programs:
            for label, guard, nxt in self.run_from(name, s, s.pc):
                out.append((f"admin {label}", z3.And(s.prog == CODE[name], guard, t.equals(nxt)), None))
        for name, can, started in self.starts(s):
            for label, guard, nxt in self.run_from(name, started, None):
                out.append((f"admin start {label}", z3.And(s.prog == IDLE, can, guard, t.equals(nxt)), None))
        f = z3.Const(f"f@{tag}", self.fsort)
        out += self.file_actions(s, t, f)
        # mapping.mapping_release: a mappingN child's release frees its id from the parent's ida
        rel = s.replace(zombies=s.zombies - 1)
        done = self.device_put(rel) if self.profile.mapping_pins_parent else rel
        after = ite(s.phase == D_RELEASED, crash(rel, OOPS_UAF), done)
        out.append(("mapping_release", z3.And(s.zombies > 0, t.equals(after)), None))
        return out

    def file_actions(self, s: LState, t: LState, f: Term) -> list[tuple[str, Term, Term | None]]:
        """A user's open, close, mmap and munmap of file f."""
        T = z3.BoolVal(True)
        # file.do_open + chrdev_lookup: the cached i_cdev or kobj_map, while the cdev count is not 0
        found = z3.And(s.cdev_ref > 0, z3.Or(s.icdev_cached, s.cdev_mapped))
        null = z3.And(z3.BoolVal(self.profile.open_private_null_when_dead), z3.Not(s.alive))
        idx, slot, nfiles = appended(s.idx, s.slot, s.nfiles, f)
        opened = s.replace(
            cdev_ref=s.cdev_ref + 1,
            icdev_cached=T,
            opened=z3.Store(s.opened, f, True),
            fd=z3.Store(s.fd, f, True),
            pnull=z3.Store(s.pnull, f, null),
            nv=z3.Store(s.nv, f, 0),
            count=z3.Store(s.count, f, 1),
            idx=idx,
            slot=slot,
            nfiles=nfiles,
        )
        closed = self.file_put(s.replace(fd=z3.Store(s.fd, f, False)), f)  # file.do_close
        # vma.do_mmap of SHARED_RW: modern dax_mmap dereferences a NULL private_data (M21), else
        # check_vma: alive (an aligned shared mapping passes every other test)
        slot_free = z3.BoolVal(True)
        if self.vma_slots is not None:
            slot_free = z3.Sum(*(s.nv[x] for x in self.files)) < self.vma_slots
        mapped = s.replace(nv=z3.Store(s.nv, f, s.nv[f] + 1), count=z3.Store(s.count, f, s.count[f] + 1))
        # vma.do_munmap(all) -> vma_file_put -> file_put
        unmapped = self.file_put(s.replace(nv=z3.Store(s.nv, f, s.nv[f] - 1)), f)
        refuses = z3.And(z3.BoolVal(self.profile.open_refuses_dead), z3.Not(s.alive))  # F1 fix
        return [
            ("open", z3.And(z3.Not(s.opened[f]), s.has_minor, found, z3.Not(refuses), t.equals(opened)), f),
            (
                "open (ENXIO)",
                z3.And(z3.Not(s.opened[f]), s.has_minor, found, refuses, t.equals(s.replace(icdev_cached=T))),
                f,
            ),
            ("close", z3.And(s.fd[f], t.equals(closed)), f),
            (
                "mmap (NULL private_data)",
                z3.And(s.fd[f], slot_free, s.pnull[f], t.equals(crash(s, OOPS_NULL))),
                f,
            ),
            ("mmap", z3.And(s.fd[f], slot_free, z3.Not(s.pnull[f]), s.alive, t.equals(mapped)), f),
            ("munmap", z3.And(s.nv[f] > 0, t.equals(unmapped)), f),
        ]

    def init(self, s: LState) -> Term:
        """spec/system.init: nothing exists; the admin may run ``binds`` unbind/bind cycles (any
        number for a proof)."""
        F = z3.BoolVal(False)
        if self.binds is not None:
            binds = s.binds_left == self.binds
        else:
            binds = s.binds_left >= 0 if self.profile.bind_cycles else s.binds_left == 0
        zero = ["prog", "pc", "rg_kref", "dev_ref", "cdev_ref", "children", "zombies", "nfiles", "lost"]
        flat = [getattr(s, n) == 0 for n in zero]
        flags = [
            z3.Not(getattr(s, f.name))
            for f in fields(LState)
            if z3.is_bool(getattr(s, f.name)) and not z3.is_array(getattr(s, f.name))
        ]
        return z3.And(
            binds,
            *flat,
            *flags,
            s.rg_phase == RG_NONE,
            s.phase == D_NONE,
            s.oops == OOPS_NONE,
            s.opened == z3.K(self.fsort, F),
            s.fd == z3.K(self.fsort, F),
            s.pnull == z3.K(self.fsort, F),
            s.nv == z3.K(self.fsort, z3.IntVal(0)),
            s.count == z3.K(self.fsort, z3.IntVal(0)),
        )


@cache
def _ctx(profile: Profile, ranges: int) -> Ctx:
    cfg = Config(profile=base_name(profile), devices=1, generations=1, ranges=ranges, units=max(ranges, 1))
    return Ctx.of(cfg, profile)


# --------------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------------


def quiescent(m: Model, s: LState) -> Term:
    """spec/invariants.quiescent for one generation: idle, the provider removed, no file, no zombie."""
    return z3.And(s.prog == IDLE, s.rg_phase == RG_GONE, s.nfiles == 0, s.zombies == 0)


#: the admin-controlled fields, finite-valued: the rows of the learned table
TABLE_FIELDS = tuple(
    f.name
    for f in fields(LState)
    if f.name
    not in (
        "dev_ref",
        "cdev_ref",
        "oops",
        "icdev_stale",
        "opened",
        "fd",
        "pnull",
        "nv",
        "count",
        *GHOSTS[:-1],
    )
)


TABLE_DOC = "the admin-controlled flags take one of the rows learned from the spec"


def table_formula(m: Model, s: LState, rows: frozenset[tuple[int, ...]]) -> Term:
    """One disjunct per row; binds_left is compared only as 0 / more than 0 (its value is any)."""

    def eq(name: str, v: int) -> Term:
        x = getattr(s, name)
        if name == "binds_left":
            return x > 0 if v else x == 0
        return x == bool(v) if z3.is_bool(x) else x == v

    return z3.Or(*(z3.And(*(eq(n, v) for n, v in zip(TABLE_FIELDS, row, strict=True))) for row in rows))


#: each ``fn(model, state)``; ``serves``: the spec invariant a profile's finding about it is filed under
INVARIANTS: list[Inv[LState]] = [
    Inv(
        "alive_implies_registered",
        "a device is alive only while registered with its cdev in kobj_map, or while being created",
        lambda m, s: z3.Implies(z3.And(s.alive, z3.Not(m.creating(s))), z3.And(s.registered, s.cdev_mapped)),
        "alive_implies_registered",
        kind="spec",
    ),
    Inv(
        "removed_region_dead",
        "after provider removal the device is neither alive nor registered",
        lambda m, s: z3.Implies(s.rg_phase == RG_GONE, z3.And(z3.Not(s.alive), z3.Not(s.registered))),
        "removed_region_dead",
        kind="spec",
    ),
    Inv(
        "no_null_deref",
        "no mmap dereferences a NULL private_data",
        lambda m, s: s.oops != OOPS_NULL,
        "no_null_deref",
        kind="spec",
    ),
    Inv(
        "no_use_after_free",
        "no release or put touches freed memory, no open file points at a released device, and a "
        "device holding its region sees it unfreed",
        lambda m, s: z3.And(
            s.oops != OOPS_UAF,
            forall(m.fsort, lambda f: z3.Implies(s.opened[f], s.phase != D_RELEASED), "f"),
            z3.Implies(z3.And(s.holds_region, s.phase != D_RELEASED), z3.Not(s.rg_freed)),
        ),
        "no_use_after_free",
        kind="spec",
    ),
    Inv(
        "no_refcount_underflow",
        "no reference is dropped that was not taken",
        lambda m, s: s.oops != OOPS_REFCOUNT,
        "no_refcount_underflow",
        kind="spec",
    ),
    Inv(
        "no_list_corruption",
        "no /dev inode is evicted through a link into a re-initialised cdev list",
        lambda m, s: s.oops != OOPS_LIST,
        "no_list_corruption",
        kind="spec",
    ),
    Inv(
        "no_leak_at_quiescence",
        "once the provider is removed and every file closed, device and region are freed, the minor back",
        lambda m, s: z3.Implies(
            quiescent(m, s), z3.And(s.phase == D_RELEASED, s.rg_freed, z3.Not(s.minor_held))
        ),
        "no_leak_at_quiescence",
        kind="spec",
    ),
    Inv(
        "files_well_formed",
        "a file with an fd or a vma is open; a file without either is freed; counts are not negative",
        lambda m, s: forall(
            m.fsort,
            lambda f: z3.And(
                z3.Implies(s.fd[f], s.opened[f]),
                s.nv[f] >= 0,
                z3.Implies(s.opened[f], z3.Or(s.fd[f], s.nv[f] > 0)),
                z3.Implies(z3.Not(s.opened[f]), z3.And(s.nv[f] == 0, z3.Not(s.pnull[f]))),
            ),
            "f",
        ),
    ),
    Inv(
        "file_count_exact",
        "each open file's f_count is its fd and its vmas; a closed one has none",
        lambda m, s: forall(
            m.fsort, lambda f: z3.If(s.opened[f], s.count[f] == b2i(s.fd[f]) + s.nv[f], s.count[f] == 0), "f"
        ),
        kind="spec",
    ),
    Inv(
        "files_numbered",
        "ghost: the open files are numbered 0..nfiles-1 without gaps or repeats",
        lambda m, s: numbered(m.fsort, lambda f: s.opened[f], s.idx, s.slot, s.nfiles),
    ),
    Inv(
        "cdev_count_bounded",
        "the cdev count is at most its holders (cdev_add's reference and the open files)",
        lambda m, s: z3.And(s.cdev_ref >= 0, s.cdev_ref <= b2i(s.cdev_live) + s.nfiles),
    ),
    Inv(
        "cdev_count_exact",
        "the cdev count equals its holders and no device pin was lost (fails on a re-bind: F2)",
        lambda m, s: z3.And(s.cdev_ref == b2i(s.cdev_live) + s.nfiles, s.lost == 0),
        "refcount_exact_all",
    ),
    Inv(
        "device_count_exact",
        "the device count is device_initialize's reference, the mappingN pins, the cdev's pin, and the "
        "pins cdev_add took on top of one it held (ghost lost)",
        lambda m, s: z3.And(
            s.lost >= 0,
            s.dev_ref
            == b2i(s.init_ref)
            + b2i(s.cdev_ref > 0)
            + s.lost
            + (s.children + s.zombies if m.profile.mapping_pins_parent else 0),
        ),
    ),
    Inv(
        "forgotten_holder_pins",
        "a holder the cdev count forgot (a re-bind's cdev_init) comes with a lost pin",
        lambda m, s: z3.Implies(b2i(s.cdev_live) + s.nfiles > s.cdev_ref, s.lost >= 1),
    ),
    Inv(
        "released_at_zero",
        "a released device has no count left; before device_initialize nothing holds it",
        lambda m, s: z3.And(
            z3.Implies(s.phase == D_RELEASED, z3.And(s.dev_ref == 0, s.cdev_ref == 0, s.nfiles == 0)),
            z3.Implies(
                z3.And(z3.Not(s.init_ref), z3.Or(s.phase == D_NONE, s.phase == D_CREATING)),
                z3.And(s.dev_ref == 0, s.cdev_ref == 0, s.nfiles == 0, s.lost == 0),
            ),
            z3.Implies(
                z3.And(s.phase != D_RELEASED, z3.Or(s.init_ref, s.phase == D_LIVE, s.phase == D_FAILED)),
                s.dev_ref > 0,
            ),
        ),
    ),
    Inv(
        "opened_since_add",
        "a cdev count beyond cdev_add's own reference comes from an open since, which cached i_cdev; "
        "the cache lives only while the count does (cdev_default_release -> cdev_purge)",
        lambda m, s: z3.And(
            z3.Implies(s.cdev_ref > b2i(s.cdev_live), s.icdev_cached),
            z3.Implies(s.icdev_cached, s.cdev_ref > 0),
        ),
    ),
    Inv(
        "nothing_before_cdev_add",
        "before the first cdev_add nothing can open the device",
        lambda m, s: z3.Implies(
            z3.Not(s.added),
            z3.And(s.cdev_ref == 0, s.nfiles == 0, s.lost == 0, z3.Not(s.cdev_live), z3.Not(s.icdev_cached)),
        ),
    ),
    Inv(
        "no_null_private",
        "no open file stored a NULL private_data (stated where dax_open never stores one)",
        lambda m, s: forall(m.fsort, lambda f: z3.Not(s.pnull[f]), "f"),
        "no_null_deref",
    ),
    Inv(
        "oops_kinds",
        "a recorded crash is one of the kinds spec/ctx.oops records; an underflow, a stale /dev "
        "inode link and its list corruption only follow a holder the cdev count forgot (F2)",
        lambda m, s: z3.And(
            s.oops >= OOPS_NONE,
            s.oops <= OOPS_LIST,
            z3.Implies(z3.Or(s.oops == OOPS_REFCOUNT, s.oops == OOPS_LIST, s.icdev_stale), s.lost >= 1),
        ),
    ),
]


# --------------------------------------------------------------------------------------------------
# The learned admin table
# --------------------------------------------------------------------------------------------------


def learn_configs(profile: Profile) -> list[Config]:
    """Small enough to explore in about a second, large enough that every admin position is reached
    with and without files holding the device: two files, one vma slot, and (modern) no bind cycle
    left or two of them."""
    return [
        Config(
            profile=base_name(profile),
            devices=1,
            generations=1,
            ranges=2,
            units=2,
            files=2,
            vmas=1,
            cpus=0,
            binds=binds,
            add_failure=True,
            mmaps=(SHARED_RW,),
        )
        for binds in ((0, 2) if profile.bind_cycles else (0,))
    ]


def reachable(c: Ctx, limit: int = 200_000) -> list[tuple[SpecState, bool]]:
    """Every state of the spec reachable in configuration c, with the ghost ``added`` (a cdev_add
    step of device 0 on the way there)."""
    from devdax.spec.system import init

    return [x for x, _ in explore((init(c), False), moves(c), limit)]


def is_cdev_add(action: str, args: tuple[object, ...]) -> bool:
    """spec/system.admin_transitions: ("admin", (program, argument, step, step argument))."""
    return action == "admin" and args[2] == "cdev_add" and args[3] == 0


def abstract(c: Ctx, s: SpecState, added: bool = False) -> dict[str, object]:
    """The abstraction function: a spec state as this model's (non-ghost) variables, device 0.
    File records are listed per slot (opened, fd, private_null, number of vmas)."""
    a, d, rg = s.admin, s.devs[0], s.regions[0]
    files = tuple(
        (fl.dev == 0, fl.fd, fl.private_null, sum(1 for v in s.vmas if v.file == i), fl.f_count)
        for i, fl in enumerate(s.files)
    )
    own = {
        "prog": CODE[a.prog],
        "pc": a.pc if a.prog else 0,
        "binds_left": a.binds_left[0],
        "has_minor": d.minor >= 0,
        "gp": s.gp,
        "oops": oops_code(s.oops),
    }
    # every other field is the region's (REGION_FIELDS) or the device's under its own name
    scalars = {
        n: own[n] if n in own else getattr(rg, REGION_FIELDS[n]) if n in REGION_FIELDS else getattr(d, n)
        for n in OBS_FIELDS
    }
    return {**scalars, "files": files, "added": added}


#: LState's fields of spec/state.Region, by their name there
REGION_FIELDS = {"rg_phase": "phase", "rg_kref": "kref", "rg_freed": "freed"}
REGION_FIELDS |= {"provider_ref": "provider_ref", "devm_ref": "devm_ref"}


@cache
def explored(profile: Profile) -> list[tuple[Ctx, list[tuple[SpecState, bool]]]]:
    """The reachable states of each of ``learn_configs``, computed once per profile."""
    out = []
    for cfg in learn_configs(profile):
        c = Ctx.of(cfg, profile)
        out.append((c, reachable(c)))
    return out


@cache
def learn_table(profile: Profile) -> frozenset[tuple[int, ...]]:
    """The admin-controlled fields of every reachable spec state of ``learn_config`` (binds_left as
    0 / more): a candidate strengthening that the induction check then confirms or refutes."""
    rows = set()
    for c, states in explored(profile):
        for s, added in states:
            o = abstract(c, s, added)
            rows.add(
                tuple(
                    int(bool(o[n])) if n == "binds_left" else int(o[n])  # type: ignore[call-overload]
                    for n in TABLE_FIELDS
                )
            )
    return frozenset(rows)


# --------------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------------


#: the finite universe a counterexample is looked for in when the unbounded question is slow
FINITE_FILES = 3


@cache
def lifetime_system(profile: Profile, files: int = 0) -> engine.System[LState]:
    """The engine's system (proofs/engine.py): files == 0 for any number of files (the proofs), else a
    finite file sort of that many slots (where counterexamples are quick to find and just as real)."""
    if files:
        sort, elems = _file_slots(files)
        m = Model(profile, fsort=sort, files=tuple(elems))
    else:
        m = Model(profile)
    rows = learn_table(profile)
    invs = [i.bind(m) for i in invariants_for(profile)]
    invs.append(Inv("admin_table", TABLE_DOC, lambda s: table_formula(m, s, rows)))

    def step(s: LState, t: LState, tag: str) -> list[engine.Act]:
        return [(name, f, {} if p is None else {"f": p}) for name, f, p in m.actions(s, t, tag)]

    def render(mod: Term, states: Sequence[LState], params: Sequence[dict[str, Term]]) -> list[list[str]]:
        # a counterexample to induction marks the file of its one step
        param = params[0].get("f") if len(params) == 1 else None
        return [render_state(m, mod, s, param) for s in states]

    def small(s: LState, k: int) -> Term:
        """Small numbers: the solver's first model often has thousands of vmas; a person wants one or
        two."""
        return z3.And(
            forall(m.fsort, lambda f: s.nv[f] <= 2, "f"),
            s.nfiles <= 3,
            s.lost <= 2,
            s.dev_ref <= 8,
            s.cdev_ref <= 4,
            s.binds_left <= 1,
        )

    return engine.System(
        lambda tag: LState.fresh(f"{tag}{files}", m.fsort),
        m.init,
        step,
        invs,
        render,
        tidy=small,
        finite=None if files else lifetime_system(profile, FINITE_FILES),
        value=lambda mod, v: file_name(m, mod, v),
    )


def assumed(profile: Profile) -> list[str]:
    """A documented finding of the profile is checked but never assumed as a hypothesis."""
    return [i.name for i in lifetime_system(profile).invariants if finding_of(i.name) not in profile.findings]


def invariants_for(profile: Profile) -> list[Inv[LState]]:
    """no_null_private is stated where dax_open never stores a NULL private_data."""
    null = profile.open_private_null_when_dead
    return [i for i in INVARIANTS if not (null and i.name == "no_null_private")]


def finding_of(name: str) -> str:
    return next((i.serves for i in INVARIANTS if i.name == name), "")


def check(profile: Profile, name: str, timeout: float) -> Verdict:
    """Init => inv, then for every action: (the assumed invariants) /\\ inv /\\ action => inv'."""
    return engine.check_inductive(lifetime_system(profile), name, timeout, depth=0, assume=assumed(profile))


def _busy(s: SpecState) -> bool:
    """A live device with every file slot open and one of them mapped."""
    d = s.devs[0]
    files = all(fl.dev == 0 for fl in s.files) and any(v.file >= 0 for v in s.vmas)
    return d.phase == D_LIVE and d.alive and not s.oops and files


def check_not_vacuous(profile: Profile, timeout: float) -> Verdict:
    """The assumed invariants hold in a reachable state of the spec with a live device and two open
    files, one of them mapped: were they contradictory (or did they exclude users), every proof would
    pass for nothing. The state is the abstraction of a real spec state, so the question is ground
    (a finite file sort of two slots) and quick."""
    c, states = explored(profile)[-1]
    witness = next((x for x in states if _busy(x[0])), None)
    if witness is None:
        return Verdict(
            Status.VIOLATED,
            counterexample="the spec never reaches a live device with two "
            "open files, one mapped (learn_configs)",
        )
    m = replace(agreement_model(c), binds=None)
    S = LState.fresh("witness", m.fsort)
    o = abstract(c, *witness)
    d = witness[0].devs[0]
    pins = d.children + d.zombies if profile.mapping_pins_parent else 0
    lost = d.dev_ref - int(d.init_ref) - int(d.cdev_ref > 0) - pins  # the ghost, read off the counts
    state = z3.And(pin(m, S, observation(o)), S.lost == lost)
    hyps = set(assumed(profile))
    named = [(i.name, i.fn(m, S)) for i in invariants_for(profile) if i.name in hyps]
    named.append(("admin_table", table_formula(m, S, learn_table(profile))))
    deadline = time.monotonic() + timeout
    for name, formula in named:  # every variable is fixed by the pin: one question per invariant
        solver = engine.solver_for(max(0.001, deadline - time.monotonic()))
        solver.add(state, formula)
        r = solver.check()
        if r == z3.unknown:
            # the question is ground and normally answers in milliseconds, so unknown can only be its
            # timeout; seen once in six CI trials (the whole obligation usually takes 1 s), so it is
            # asked once more with a fresh budget. A second unknown stays UNKNOWN.
            solver = engine.solver_for(timeout)
            solver.add(state, formula)
            r = solver.check()
        if r != z3.sat:
            return Verdict(
                Status.VIOLATED if r == z3.unsat else Status.UNKNOWN,
                counterexample=f"{name} excludes a reachable live device with two open files "
                f"({r}): {witness[0]}",
            )
    return Verdict(Status.PROVED)


# --------------------------------------------------------------------------------------------------
# Counterexamples to induction, for people
# --------------------------------------------------------------------------------------------------


def position(m: Model, prog: int, pc: int) -> str:
    if prog == IDLE:
        return "idle"
    name = PROGS[prog] if 0 <= prog < len(PROGS) else str(prog)
    steps = m.program(name) if name in m.programs else ()
    at = f"before {steps[pc][0]}" if 0 <= pc < len(steps) else f"pc {pc}"
    return f"{name}, {at}"


def render_state(m: Model, mod: Term, s: LState, param: Term | None = None) -> list[str]:
    ev, num, flag = reader(mod)

    shown = "alive registered cdev_live cdev_mapped bound init_ref holds_region icdev_cached dead gp"
    flags = " ".join(n for n in shown.split() if flag(getattr(s, n)))
    lines = [
        f"admin: {position(m, num(s.prog), num(s.pc))}; binds left {num(s.binds_left)}",
        f"region: {RG_PHASES.get(num(s.rg_phase), '?')} kref={num(s.rg_kref)}"
        f"{' freed' if flag(s.rg_freed) else ''}",
        f"device: {ST.PHASE_NAMES.get(num(s.phase), '?')} dev_ref={num(s.dev_ref)} "
        f"cdev_ref={num(s.cdev_ref)} children={num(s.children)} zombies={num(s.zombies)} [{flags}]",
        f"open files: {num(s.nfiles)} (ghost lost pins {num(s.lost)}); oops: "
        f"{OOPS_NAMES.get(num(s.oops), num(s.oops))}",
    ]
    elems = list(m.files) or mod.get_universe(m.fsort) or []
    for i, x in enumerate(elems):
        if flag(s.opened[x]):
            lines.append(
                f"file{i}: fd={flag(s.fd[x])} vmas={num(s.nv[x])} f_count={num(s.count[x])} private_data="
                f"{'NULL' if flag(s.pnull[x]) else 'dev_dax'}"
                f"{'  <- the step' if param is not None and z3.eq(ev(param), x) else ''}"
            )
    return lines


def file_name(m: Model, mod: Term, term: Term) -> str:
    """file0, file1 ... for the file elements of the model (the lines of ``render_state``)."""
    val = mod.eval(term, model_completion=True)
    elems = list(m.files) or mod.get_universe(m.fsort) or []
    return next((f"file{i}" for i, x in enumerate(elems) if z3.eq(x, val)), "a file")


# --------------------------------------------------------------------------------------------------
# Obligations
# --------------------------------------------------------------------------------------------------


def lifetime_obligations(profile: Profile) -> list[Obligation]:
    """One obligation per invariant and strengthening (``life_`` names), the learned table, and the
    non-vacuity check; none for v4.7 (``supported``)."""
    if not supported(profile):
        return []
    vacuous = Obligation(
        "life_not_vacuous",
        "the lifetime invariants admit a live device with open files",
        "proofs/lifetime.py",
        partial(check_not_vacuous, profile),
    )
    invs = [*invariants_for(profile), Inv("admin_table", TABLE_DOC, table_formula)]
    src = "proofs/lifetime.py"
    return [vacuous, *invariant_obligations("life_", "files/vmas/binds", src, invs, partial(check, profile))]


__all__ = ["INVARIANTS", "LState", "Model", "abstract", "lifetime_obligations", "reachable"]


# --------------------------------------------------------------------------------------------------
# Agreement with the spec's explicit successors
# --------------------------------------------------------------------------------------------------

#: the non-ghost scalar fields, compared one by one
OBS_FIELDS = tuple(
    f.name
    for f in fields(LState)
    if f.name not in GHOSTS and f.name not in ("opened", "fd", "pnull", "nv", "count")
)
#: (the non-ghost scalars, each file slot as (opened, fd, private_null, vmas, f_count), the ghost
#: ``added``)
LObs = tuple[tuple[int, ...], tuple[tuple[int, ...], ...], bool]


def observation(o: dict[str, object]) -> LObs:
    """``abstract``'s dict as a value the agreement check can compare and pin."""
    recs: tuple[tuple[bool, bool, bool, int, int], ...] = o["files"]  # type: ignore[assignment]
    scalars = tuple(int(o[n]) for n in OBS_FIELDS)  # type: ignore[call-overload]
    return scalars, tuple(tuple(int(x) for x in rec) for rec in recs), bool(o["added"])


def same(o: LObs) -> Hashable:
    """What the agreement compares: the scalars, and the open files as a multiset (the spec opens
    the lowest free slot, the model any free file: names do not matter); not the ghost."""
    return o[0], tuple(sorted(rec for rec in o[1] if rec[0]))


def agreement_model(c: Ctx) -> Model:
    """The model with the configuration's own bounds: its files as a finite sort, its vma slots and
    bind cycles, device_add failing only if the configuration says it may."""
    cfg = c.cfg
    if (
        cfg.devices != 1
        or cfg.generations != 1
        or cfg.cpus != 0
        or cfg.mmaps != (SHARED_RW,)
        or cfg.fork
        or cfg.munmap_parts
        or cfg.open_rdonly
        or cfg.race
    ):
        raise ValueError(
            "config: the lifetime model compares one device, one generation, no CPU, shared-rw mmaps only"
        )
    sort, elems = _file_slots(cfg.files)
    return Model(
        c.prof,
        add_failure=cfg.add_failure,
        ranges=cfg.ranges,
        fsort=sort,
        files=tuple(elems),
        vma_slots=cfg.vmas,
        binds=cfg.binds,
    )


@cache
def _file_slots(n: int) -> tuple[Term, list[Term]]:
    """A finite file sort of n slots (z3 declares an enumeration sort once per name)."""
    sort, elems = z3.EnumSort(f"LFILE{n}", [f"slot{i}" for i in range(n)])
    return sort, list(elems)


def check_agreement(c: Ctx, model: Profile | None = None) -> tuple[int, list[Mismatch]]:
    """For every reachable spec state: each spec transition is a model step (or changes nothing the
    model keeps), and each model step is a spec transition (proofs/agreement.py). Returns (states,
    mismatches). ``model`` builds the step relation from another profile (a test plants a wrong one)."""
    m = agreement_model(c)
    if model is not None:
        m = replace(m, profile=model)
    S, T = LState.fresh("pre", m.fsort), LState.fresh("post", m.fsort)
    side: Side[LObs] = Side(
        [S, T],
        [(name, f, {}) for name, f, _ in m.actions(S, T)],
        lambda st, o: pin(m, st, o),
        complete=True,
        pin_target=lambda st, o: z3.Or(*(pin(m, st, o, perm) for perm in permutations(range(len(m.files))))),
        observe=lambda mod, st: observe_model(m, mod, st),
        key=same,
        incremental=True,
    )
    from devdax.spec.system import init

    start = (init(c), False)
    n, _, bad = agree(explore(start, moves(c), 200_000), lambda x: observation(abstract(c, *x)), side)
    return n, bad


def moves(c: Ctx) -> Callable[[tuple[SpecState, bool]], list[tuple[str, tuple[SpecState, bool]]]]:
    """The spec's transitions, carrying the ghost ``added`` (a cdev_add step of device 0 so far)."""
    from devdax.spec.system import successors

    def out(x: tuple[SpecState, bool]) -> list[tuple[str, tuple[SpecState, bool]]]:
        s, added = x
        return [
            (f"{tr.action}{tr.args} -> {tr.outcome}", (tr.state, added or is_cdev_add(tr.action, tr.args)))
            for tr in successors(c, s)
        ]

    return out


def pin(m: Model, s: LState, o: LObs, perm: Sequence[int] | None = None) -> Term:
    """Constrain a symbolic state to an observation (file slot i is element i; the ghost numbering
    follows the slots). With ``perm`` (a successor), slot i is element perm[i] and the ghosts are
    left free: the model may open any free file and number it as it likes."""
    scalars, recs, added = o
    parts = [
        getattr(s, n) == (bool(v) if z3.is_bool(getattr(s, n)) else v)
        for n, v in zip(OBS_FIELDS, scalars, strict=True)
    ]
    j = 0
    for i, (opened, fd, pnull, nv, cnt) in enumerate(recs):
        x = m.files[i if perm is None else perm[i]]
        parts += [s.opened[x] == bool(opened), s.fd[x] == bool(fd), s.pnull[x] == bool(pnull)]
        parts += [s.nv[x] == nv, s.count[x] == cnt]
        if opened and perm is None:
            parts += [s.idx[x] == j, s.slot[j] == x]
            j += 1
    if perm is None:
        parts += [s.nfiles == j, s.added == added]
    return z3.And(*parts)


def observe_model(m: Model, mod: Term, s: LState) -> LObs:
    def val(t: Term) -> int:
        v = mod.eval(t, model_completion=True)
        return int(z3.is_true(v)) if z3.is_bool(v) else int(v.as_long())

    files = tuple(
        (val(s.opened[x]), val(s.fd[x]), val(s.pnull[x]), val(s.nv[x]), val(s.count[x])) for x in m.files
    )
    return tuple(val(getattr(s, n)) for n in OBS_FIELDS), files, bool(val(s.added))
