"""Refcount exactness and no use after free for any number of files and vmas (v4.10+ cdev lifetime).

spec/invariants.refcount_exact_all says each count equals the number of its holders; a count of a set
is not first-order, so the proof carries a *ghost bijection* (the standard trick of Ivy proofs about
counters): the open files are numbered 0..nfiles-1 (``idx``/``slot`` are inverse), and each file's
vmas 0..nv(f)-1 (``vidx``/``vslot``). Opening appends, closing swaps the last into the hole. With the
bijection an invariant, ``cdev_ref == cdev_live + nfiles`` *is* "the cdev count equals the number of
open files plus cdev_add's own reference", for any number of files, and likewise for f_count.

The actions and their effects are those of spec/file.py (do_open, do_close, file_put), spec/vma.py
(do_mmap, do_munmap of a whole vma) and spec/kobject.py (cdev_put, device_put, dev_release), and the
admin's cdev_del and put_device (spec/admin.py), for one device of the cdev-kobject profiles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import z3

from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.proofs.smt import ARITH_SOLVER, Term

F = z3.DeclareSort("FILE")
V = z3.DeclareSort("VMAR")
B, N = z3.BoolSort(), z3.IntSort()


@dataclass(frozen=True)
class RState:
    cdev_live: Term       # Dev.cdev_live: cdev_add done, cdev_del not yet
    cdev_ref: Term        # Dev.cdev_ref
    dev_ref: Term         # Dev.dev_ref
    init_ref: Term        # Dev.init_ref
    released: Term        # Dev.phase == D_RELEASED
    opened: Term          # F -> Bool: File.dev == this device
    fd: Term              # F -> Bool: File.fd
    count: Term           # F -> Int: File.count (f_count)
    used: Term            # V -> Bool: Vma.file >= 0
    vfile: Term           # V -> F: Vma.file
    # ghosts: the numbering of open files and of each file's vmas
    nfiles: Term
    idx: Term             # F -> Int
    slot: Term            # Int -> F
    nv: Term              # F -> Int
    vidx: Term            # V -> Int
    vslot: Term           # F -> Int -> V

    @staticmethod
    def fresh(tag: str) -> RState:
        def arr(name: str, dom: Term, rng: Term) -> Term:
            return z3.Array(f"{name}@{tag}", dom, rng)
        return RState(z3.Bool(f"cdev_live@{tag}"), z3.Int(f"cdev_ref@{tag}"), z3.Int(f"dev_ref@{tag}"),
                      z3.Bool(f"init_ref@{tag}"), z3.Bool(f"released@{tag}"),
                      arr("opened", F, B), arr("fd", F, B), arr("count", F, N), arr("used", V, B),
                      arr("vfile", V, F), z3.Int(f"nfiles@{tag}"), arr("idx", F, N), arr("slot", N, F),
                      arr("nv", F, N), arr("vidx", V, N), z3.Array(f"vslot@{tag}", F, z3.ArraySort(N, V)))

    def replace(self, **changes: Term) -> RState:
        return RState(**{f.name: changes.get(f.name, getattr(self, f.name)) for f in fields(self)})

    def equals(self, o: RState) -> Term:
        return z3.And(*(getattr(self, f.name) == getattr(o, f.name) for f in fields(self)))


def _q(sort: Term, body: Callable[[Term], Term], name: str) -> Term:
    x = z3.Const(name, sort)
    return z3.ForAll([x], body(x))


# ----------------------------------------------------------------------------------- effects ----

def device_put(s: RState) -> RState:
    """kobject.device_put: the last device reference releases the device."""
    ref = s.dev_ref - 1
    return s.replace(dev_ref=ref, released=z3.Or(s.released, ref == 0))


def cdev_put(s: RState) -> RState:
    """kobject.cdev_put: on zero, cdev_default_release puts the parent device."""
    ref = s.cdev_ref - 1
    after = s.replace(cdev_ref=ref)
    put = device_put(after)
    return RState(**{f.name: z3.If(ref == 0, getattr(put, f.name), getattr(after, f.name))
                     for f in fields(RState)})


def file_put(s: RState, f: Term) -> RState:
    """file.file_put: the last reference of the file frees it and drops its cdev reference; the ghost
    numbering moves the last open file into the freed number."""
    cnt = s.count[f] - 1
    kept = s.replace(count=z3.Store(s.count, f, cnt))
    j, last = s.idx[f], s.slot[s.nfiles - 1]
    freed = kept.replace(opened=z3.Store(s.opened, f, False), fd=z3.Store(s.fd, f, False),
                         idx=z3.Store(s.idx, last, j), slot=z3.Store(s.slot, j, last), nfiles=s.nfiles - 1)
    freed = cdev_put(freed)
    return RState(**{x.name: z3.If(cnt == 0, getattr(freed, x.name), getattr(kept, x.name))
                     for x in fields(RState)})


def actions(s: RState, t: RState, tag: str = "step") -> list[tuple[str, Term]]:
    f = z3.Const(f"f@{tag}", F)
    v = z3.Const(f"v@{tag}", V)
    out: list[tuple[str, Term]] = []
    # do_open: chrdev_open finds the cdev while its kobject lives; the file takes a cdev reference
    opened = s.replace(opened=z3.Store(s.opened, f, True), fd=z3.Store(s.fd, f, True),
                       count=z3.Store(s.count, f, 1), cdev_ref=s.cdev_ref + 1,
                       idx=z3.Store(s.idx, f, s.nfiles), slot=z3.Store(s.slot, s.nfiles, f),
                       nfiles=s.nfiles + 1, nv=z3.Store(s.nv, f, 0))
    out.append(("open", z3.And(z3.Not(s.opened[f]), s.cdev_ref > 0, z3.Not(s.released), t.equals(opened))))
    # do_close: the fd goes; the file lives on while a vma holds it
    closing = s.replace(fd=z3.Store(s.fd, f, False))
    out.append(("close", z3.And(s.fd[f], t.equals(file_put(closing, f)))))
    # do_mmap: a new vma takes a file reference
    n = s.nv[f]
    mapped = s.replace(used=z3.Store(s.used, v, True), vfile=z3.Store(s.vfile, v, f),
                       count=z3.Store(s.count, f, s.count[f] + 1), vidx=z3.Store(s.vidx, v, n),
                       vslot=z3.Store(s.vslot, f, z3.Store(s.vslot[f], n, v)), nv=z3.Store(s.nv, f, n + 1))
    out.append(("mmap", z3.And(s.fd[f], z3.Not(s.used[v]), t.equals(mapped))))
    # do_munmap (whole vma): the vma's file reference is put
    g = s.vfile[v]
    j, last = s.vidx[v], s.vslot[g][s.nv[g] - 1]
    unmapped = s.replace(used=z3.Store(s.used, v, False), vidx=z3.Store(s.vidx, last, j),
                         vslot=z3.Store(s.vslot, g, z3.Store(s.vslot[g], j, last)),
                         nv=z3.Store(s.nv, g, s.nv[g] - 1))
    out.append(("munmap", z3.And(s.used[v], t.equals(file_put(unmapped, g)))))
    # admin cdev_del: out of kobj_map, drop the cdev's own reference
    out.append(("cdev_del", z3.And(s.cdev_live, t.equals(cdev_put(s.replace(cdev_live=z3.BoolVal(False)))))))
    # admin put_device: the device_initialize() reference
    put = device_put(s.replace(init_ref=z3.BoolVal(False)))
    out.append(("put_device", z3.And(s.init_ref, t.equals(put))))
    return out


def init(s: RState) -> Term:
    """After probe: cdev_add's reference on the cdev, which pins the device with init's reference."""
    return z3.And(s.cdev_live, s.cdev_ref == 1, s.dev_ref == 2, s.init_ref, z3.Not(s.released),
                  s.nfiles == 0, _q(F, lambda f: z3.And(z3.Not(s.opened[f]), z3.Not(s.fd[f])), "f"),
                  _q(V, lambda v: z3.Not(s.used[v]), "v"))


# -------------------------------------------------------------------------------- invariants ----

def b2i(b: Term) -> Term:
    return z3.If(b, 1, 0)


RINVARIANTS: list[tuple[str, str, Callable[[RState], Term]]] = [
    ("refcount_exact_cdev", "cdev kobject count == cdev_add's reference + number of open files",
     lambda s: s.cdev_ref == b2i(s.cdev_live) + s.nfiles),
    ("refcount_exact_device", "device kobject count == device_initialize's reference + the cdev's pin",
     lambda s: s.dev_ref == b2i(s.init_ref) + b2i(s.cdev_ref > 0)),
    ("refcount_exact_file", "each file's f_count == its fd + number of its vmas",
     lambda s: _q(F, lambda f: z3.Implies(s.opened[f], s.count[f] == b2i(s.fd[f]) + s.nv[f]), "f")),
    ("no_use_after_free", "no open file points at a released device, no vma at a freed file",
     lambda s: z3.And(_q(F, lambda f: z3.Implies(s.opened[f], z3.Not(s.released)), "f"),
                      _q(V, lambda v: z3.Implies(s.used[v], s.opened[s.vfile[v]]), "v"))),
    ("ghost_files_numbered", "open files are numbered 0..nfiles-1 without gaps or repeats",
     lambda s: z3.And(s.nfiles >= 0,
                      _q(F, lambda f: z3.Implies(s.opened[f], z3.And(
                          s.idx[f] >= 0, s.idx[f] < s.nfiles, s.slot[s.idx[f]] == f)), "f"),
                      _q(N, lambda i: z3.Implies(z3.And(i >= 0, i < s.nfiles), z3.And(
                          s.opened[s.slot[i]], s.idx[s.slot[i]] == i)), "i"),
                      _q(F, lambda f: z3.Implies(s.fd[f], s.opened[f]), "f"))),
    ("ghost_vmas_numbered", "each open file's vmas are numbered 0..nv(f)-1 without gaps or repeats",
     lambda s: z3.And(
         _q(F, lambda f: z3.Implies(s.opened[f], s.nv[f] >= 0), "f"),
         _q(V, lambda v: z3.Implies(s.used[v], z3.And(
             s.vidx[v] >= 0, s.vidx[v] < s.nv[s.vfile[v]], s.vslot[s.vfile[v]][s.vidx[v]] == v)), "v"),
         _q(F, lambda f: _q(N, lambda i: z3.Implies(z3.And(s.opened[f], i >= 0, i < s.nv[f]), z3.And(
             s.used[s.vslot[f][i]], s.vfile[s.vslot[f][i]] == f, s.vidx[s.vslot[f][i]] == i)), "i"), "f"))),
    ("counts_nonnegative", "no count is negative, and a released device has no reference left",
     lambda s: z3.And(s.cdev_ref >= 0, s.dev_ref >= 0, z3.Implies(s.released, s.dev_ref == 0))),
]


def check(name: str, timeout: float, assume: Sequence[str] | None = None) -> Verdict:
    """Init => inv and (invariants) /\\ step => inv' for every step. ``assume`` narrows the invariants
    taken as hypotheses (a counterexample search among fewer quantified hypotheses is faster; a proof
    always assumes them all)."""
    deadline = time.monotonic() + timeout
    S, T = RState.fresh("pre"), RState.fresh("post")
    inv = {n: fn for n, _, fn in RINVARIANTS}[name]
    solver = z3.Solver()
    solver.set("timeout", int(timeout * 1000))
    solver.add(init(S), z3.Not(inv(S)))
    r = solver.check()
    if r != z3.unsat:
        return Verdict(Status.VIOLATED if r == z3.sat else Status.UNKNOWN, counterexample=f"Init: {r}")
    for act, formula in actions(S, T):
        left = deadline - time.monotonic()
        if left <= 0:
            return Verdict(Status.UNKNOWN, counterexample=f"timeout before {act}")
        solver = z3.Solver()
        solver.set("timeout", max(1, int(left * 1000)))
        solver.set("arith.solver", ARITH_SOLVER)
        solver.add(*(fn(S) for n, _, fn in RINVARIANTS if assume is None or n in assume), formula,
                   z3.Not(inv(T)))
        r = solver.check()
        if r == z3.sat:
            return Verdict(Status.VIOLATED, counterexample=render_cti(solver.model(), S, T, act))
        if r == z3.unknown:
            return Verdict(Status.UNKNOWN, counterexample=f"{act}: solver unknown: {solver.reason_unknown()}")
    return Verdict(Status.PROVED)


def check_not_vacuous(timeout: float) -> Verdict:
    """A run of the model (open, open, mmap, close, cdev_del) reaches a state where every invariant
    holds with two files open: the invariants describe real states, the proofs are not vacuous."""
    S = [RState.fresh(f"run{i}") for i in range(6)]
    solver = z3.Solver()
    solver.set("timeout", max(1, int(timeout * 1000)))
    solver.add(init(S[0]))
    for i, name in enumerate(("open", "open", "mmap", "close", "cdev_del")):
        solver.add(dict(actions(S[i], S[i + 1], f"run{i}"))[name])
    f0, f1 = z3.Const("f@run0", F), z3.Const("f@run1", F)
    solver.add(z3.Distinct(f0, f1), z3.Const("f@run2", F) == f0, z3.Const("f@run3", F) == f0)
    solver.add(*(fn(S[5]) for _, _, fn in RINVARIANTS), S[5].nfiles == 2)
    r = solver.check()
    if r == z3.sat:
        return Verdict(Status.PROVED)
    return Verdict(Status.VIOLATED if r == z3.unsat else Status.UNKNOWN,
                   counterexample=f"the planned run does not reach a state of the invariants: {r}")


def render_cti(m: Term, s: RState, t: RState, act: str) -> str:
    """The device's counts before and after the step (the files and vmas that matter are the step's
    parameters, named f and v)."""
    def ev(x: Term) -> Term:
        return m.eval(x, model_completion=True)

    def line(st: RState) -> str:
        return (f"cdev_live={ev(st.cdev_live)} cdev_ref={ev(st.cdev_ref)} dev_ref={ev(st.dev_ref)} "
                f"init_ref={ev(st.init_ref)} released={ev(st.released)} open files={ev(st.nfiles)}")
    return "\n".join(["counterexample to induction", f"state before: {line(s)}", f"step: {act}",
                      f"state after:  {line(t)}"])


def refcount_obligations() -> list[Obligation]:
    """For profiles with the cdev-kobject lifetime and no re-bind (v4.10): re-binding runs cdev_init()
    on a cdev that old files still hold, which the spec reports as the modern profile's finding."""
    out = [Obligation("ind_refcount_not_vacuous", "the refcount invariants hold after a real run",
                      "proofs/refcount.py", check_not_vacuous)]
    for name, doc, _ in RINVARIANTS:
        def goal(timeout: float, name: str = name) -> Verdict:
            return check(name, timeout)
        out.append(Obligation(f"ind_{name}", f"inductive for any files/vmas: {doc}",
                              "spec/invariants.py refcount_exact_all, no_use_after_free", goal))
    return out
