"""The trace checker: a run (trace.py) is accepted only if its log is a path of the spec.

Every log event is the spec step at that position: each admin step event must be the step the spec's
admin program takes next (same name, same outcome; a step the impl skipped must be one the spec
skips), applied at its linearization point; each close is do_close of the file's slot; each handler
point is the step of its CPU (fault_lock, fault_check with the mm's fallback retries taken at once,
since the handler negotiates the size inside one section, fault_insert, fault_unlock) and must agree
with the spec on alive, the decision, the size and whether the entry was already there;
``synchronize_wait`` is blocked while a CPU that was inside its read section at ``synchronize_start``
has not left it. Separately, impl's own SRCU must have waited, at each ``gp_done``, for every section
open at the ``gp_flip`` before it.

A touch has no step of its own: its outcome must be what an access sees at some point of its window
(ok: an entry covers the address; SIGBUS: a fault there would end in SIGBUS). A user file operation
that succeeded is the spec's do_open/do_mmap/do_munmap/do_close at its log event (same outcome); one
that failed must fail alike (ENXIO, modern's M21 OOPS) at some point of its window. Every spec state
on the path must satisfy the state invariants except the profile's findings, and the end state must
be abstraction(impl). The search is a memoised DFS over (log position, spec state, touches done);
its only choices are where each touch (and failed user call) takes effect and the relaxations below.

The user's mapping is touched by a user toucher while the user thread unmaps it: a fault in flight
there must end (read_unlock) before the munmap event (spec/vma.py do_munmap waits for it; impl's
MappingCore._mm_write), a fault whose vma is gone is logged by nothing (the mm's bad_area), and a
touch of that mapping may end in SIGSEGV where the spec's mapping is gone.

Three relaxations, where impl's steps are finer than the spec's or where the emulation differs from
the kernel on purpose: unmap_mapping_range zaps the device's entries one at a time; run_dax
(core.revive_device) zaps the device's vmas after setting alive (an entry installed in between
vanishes, and a fault racing the zap may keep one unit of a vma and lose another); until that zap,
and during a kill, a poison marker a fault of the dead device left may answer SIGBUS, and an install
may find such a unit present (impl's units are 512 PTEs, and its markers are sticky; see
``_relaxations``).

``TraceChecker`` has one method per log event kind (``on_event``: the main process's events;
``on_point``: the handler's points) and one per kind of touch; each checks its event against the
spec state of the path and returns the states after it. Nothing here imports impl: the log is read
in the spec's terms that trace.py's records already carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from devdax.spec import admin
from devdax.spec.ctx import Ctx
from devdax.spec.fault import covered, fault_check, fault_insert, fault_lock, fault_unlock
from devdax.spec.file import do_close, do_open
from devdax.spec.geometry import SIZE_NAMES, next_fault_size
from devdax.spec.invariants import state_invariants
from devdax.spec.state import C_CHECKED, C_DONE, C_IDLE, C_LOCKED, R_FALLBACK, Admin, Cpu, State
from devdax.spec.vma import do_mmap, do_munmap

from .abstraction import diff, project
from .trace import SHAPE_2, AdminRec, HRec, Run, TouchRec, UserRec

#: a search node: (log position, spec state, touches done per run thread, admin actions started)
Node = tuple[int, State, tuple[int, ...], int]
#: what an event leaves: the spec states after it, each with the admin actions started by then
Succ = list[tuple[State, int]]


class TraceRejected(AssertionError):
    pass


# ------------------------------------------------------------------------------ spec helpers ----


def _start_program(c: Ctx, s: State, rec: AdminRec) -> State:
    """The spec program an admin action stands for, started (first inapplicable steps skipped)."""
    g = s.admin.generation - 1
    if c.prof.bind_cycles:
        prog, arg = ("unbind" if rec.kind == "disable" else "bind"), rec.node
    elif rec.kind == "disable":
        prog, arg = "remove", g
    else:
        prog, arg = "probe", g + 1
    gen = s.admin.generation + (prog == "probe")
    a = s.admin._replace(prog=prog, dev=arg, pc=0, generation=gen)
    return admin._finish(c, s._replace(admin=a))


def _keep_left(s: State, j: int, left: int) -> State:
    """The bound on faults is the checker's, not the kernel's: keeping it constant lets the memo
    merge states that differ only in faults taken."""
    if s.cpus[j].left == left:
        return s
    return s._replace(cpus=tuple(x._replace(left=left) if k == j else x for k, x in enumerate(s.cpus)))


def _lock(c: Ctx, s: State, j: int, v: int, addr: int) -> State | None:
    """fault_lock of CPU j. The spec's fault_lock refuses an address an entry covers (the mm does
    not call the driver then), but impl's handler may be servicing a fault whose unit another
    worker installed after the mm saw it missing (the kernel's insert then says -EBUSY): the step
    is taken as if the entry were not there yet, and the entry stays."""
    r = fault_lock(c, s._replace(entries=frozenset()), j, v, addr)
    return None if r is None else r[1]._replace(entries=s.entries)


def _check_chain(c: Ctx, s: State, j: int) -> tuple[str, State] | None:
    """fault_check of CPU j and, while it says FALLBACK at a size with a smaller one, the mm's
    retry (unlock, lock one size down, check): impl's handler negotiates the size inside one read
    section (dax_policy), so its one check point stands for this chain taken at once."""
    r = fault_check(c, s, j)
    while r is not None and r[0] != "OOPS":
        cpu = r[1].cpus[j]
        if cpu.result != R_FALLBACK:
            return r
        if cpu.pc == C_DONE:
            if next_fault_size(cpu.size) is None:
                return r
            u = fault_unlock(c, r[1], j)
            assert u is not None
            cpu = u[1].cpus[j]
            r = (r[0], u[1])
        if cpu.pc != C_IDLE:
            return r
        lk = fault_lock(c, r[1], j, cpu.vma, cpu.addr)
        if lk is None:
            return None
        r = fault_check(c, lk[1], j)
    return r


def would_sigbus(c: Ctx, s: State, v: int, addr: int) -> bool:
    """A CPU faulting on (v, addr) in state s would end in SIGBUS (run on an extra idle CPU)."""
    if covered(s, v, addr):
        return False
    j = len(s.cpus)
    t = s._replace(cpus=(*s.cpus, Cpu(left=1)))
    lk = _lock(c, t, j, v, addr)
    if lk is None:
        return False
    r = _check_chain(c, lk, j)
    return r is not None and r[1].cpus[j].pc != C_CHECKED


# ------------------------------------------------------------------ what the log alone shows ----


def _srcu_check(run: Run) -> str | None:
    """impl's own grace period against its readers, from the log alone: every read section that
    was open at a gp_flip must be closed before the next gp_done (the SRCU guarantee the teardown
    relies on, docs/semantics.md#teardown). Returns the violation, if any."""
    open_: set[int] = set()
    waited: set[int] = set()
    for k in range(run.k_start, len(run.events)):
        h = run.hrecs.get(k)
        if h is None:
            continue
        if h.kind == "read_lock":
            open_.add(h.cpu)
        elif h.kind == "read_unlock":
            open_.discard(h.cpu)
            waited.discard(h.cpu)
        elif h.kind == "gp_flip":
            waited = set(open_)
        elif h.kind == "gp_done" and waited:
            return (
                f"log event {k}: grace period ended while cpu{sorted(waited)} were still in sections "
                "begun before its flip"
            )
    return None


#: admin steps whose effect is a store the handler reads, done with its event in one traced section:
#: the step is applied at that event, not at the "step" event that follows when the step returns
_LIN_EVENT = {"clear_alive": "alive_clear", "set_alive": "alive_set", "run_dax": "alive_set"}


def _linearization_points(run: Run, steps_at: list[int]) -> dict[int, int]:
    """Steps logged at k whose linearization point is an earlier event: log index of the point ->
    log index of the step event (the step is applied at the point, and skipped at its event)."""
    events = run.events
    step_at: dict[int, int] = {}
    for k in steps_at:
        name, _, out = events[k].detail.rpartition(" ")
        if k >= run.k_start and name in _LIN_EVENT and out == "ok":
            inner = next(
                (
                    x
                    for x in range(k - 1, run.k_start - 1, -1)
                    if events[x].kind == _LIN_EVENT[name] and events[x].obj == events[k].obj
                ),
                None,
            )
            if inner is not None:
                step_at[inner] = k
    return step_at


def _touch_ends(run: Run, steps_at: list[int]) -> list[list[int]]:
    """Per run thread and touch, the log position by which the touch must have taken effect.

    A step's effect precedes its "step" event (logged when the step function returns), so a touch
    that returned before event k1 may already have seen the effect of the admin step in progress
    then: the touch must end before the event *after* the first step event at or after k1."""

    def end_of(rec: TouchRec | UserRec) -> int:
        later = [k for k in steps_at if k >= rec.k1]
        return later[0] + 1 if later else rec.k1

    return [[end_of(r) for r in recs] for recs in run.touches]


def _relaxations(run: Run, steps_at: list[int]) -> tuple[dict[int, int], set[int]]:
    """Where impl's steps are finer than the spec's: (log index -> spec device whose entries the
    search may zap one at a time there, log indices where a poison marker may answer SIGBUS).

    A zap is atomic per entry, not per vma: the kernel's unmap_mapping_range walks i_mmap vma by
    vma (mm/memory.c unmap_mapping_range_tree) and each vma entry by entry, each under the page
    table lock a fault's install also takes (zap_pmd_range, mm/huge_memory.c zap_huge_pmd); impl's
    zap is one MADV_DONTNEED per vma, which a concurrent UFFDIO_CONTINUE interleaves page by page.
    While the step runs, a touch may find one entry zapped and another not yet, and a fault racing
    the zap may keep its unit in one place of a vma and lose it in another. The search may
    therefore zap single entries of the device early, between the previous step event and the step
    event; the step itself then zaps the rest."""
    events = run.events
    unmap_at: dict[int, int] = {}
    stale: set[int] = set()
    prev = run.k_start - 1
    for k in steps_at:
        if k < run.k_start:
            continue
        name = events[k].detail.rpartition(" ")[0]
        if name == "unmap_mapping_range" and events[k].obj in run.devs:
            for x in range(prev + 1, k + 1):
                unmap_at[x] = run.devs[events[k].obj]
            # a unit is 512 PTEs here: a fault that saw alive and one that saw dead on the same
            # unit during the kill can leave it part installed, part poisoned, so a toucher whose
            # fault saw alive may still meet a marker (the kernel's PMD insert is all or nothing)
            kill = [x for x in range(run.k_start, k) if events[x].kind == "alive_clear"]
            if kill:
                stale.update(range(kill[-1], k + 2))
        # impl's run_dax: alive = 1 (the step's point), then core.revive_device's grace period and
        # zap of the device's vmas (it clears the emulation's poison markers; the kernel has
        # none). A fault between the two installs an entry the zap then removes: entries of the
        # device may vanish until just after the step event (losing an entry only costs a refault)
        if name == "run_dax" and events[k].obj in run.devs:
            for x in range(prev + 1, k + 2):
                unmap_at[x] = run.devs[events[k].obj]
            # until that zap, a poison marker left by a fault of the dead device still answers
            # SIGBUS (the emulation's markers are sticky; the kernel's handler would refault)
            stale.update(range(prev + 1, k + 2))
        prev = k
    return unmap_at, stale


# --------------------------------------------------------------------------------- the checker ----


class TraceChecker:
    """The search for a spec path that explains one run's log. Event methods take (log position,
    spec state, admin actions started) and return the states after the event; a method that finds
    none records why with ``note``, at the depth of the node being expanded (``self.depth``), and
    the deepest notes are the rejection report."""

    def __init__(
        self, c: Ctx, run: Run, findings: dict[str, str] | None = None, budget: int = 400_000
    ) -> None:
        self.c = c
        self.run = run
        self.budget = budget
        findings = c.prof.findings if findings is None else findings
        self.invs = [i for i in state_invariants() if i.name not in findings and i.check is not None]
        self.events = run.events
        self.ops = [op for op in run.admin_ops if op.outcome == "ok"]
        steps_at = [k for k, e in enumerate(run.events) if e.kind == "step"]
        self.step_at = _linearization_points(run, steps_at)
        self.moved = set(self.step_at.values())
        self.ends = _touch_ends(run, steps_at)
        self.unmap_at, self.stale = _relaxations(run, steps_at)
        self.target = project(run.final)
        self.best: tuple[int, list[str]] = (-1, [])
        self.pruned: list[str] = []  # invariant violations that cut a path
        self.depth = 0
        # The user's file and mapping in the spec. Slots are the spec's free_slot choices; they
        # depend only on the file operations before, which the log orders, so every path gives
        # the user's file and mapping the same slots and one table serves all paths.
        self.fslot = dict(run.files)  # impl file name -> spec slot (the user's file added)
        self.vslot: dict[tuple[str, str], int] = {}  # (file, impl start) -> spec vma slot
        self.ustart: dict[int, int] = {}  # that slot -> the spec vma's start
        #: the main process's log events, by kind (a kind not listed changes no spec state)
        self.on_event: dict[str, Callable[[int, State, int], Succ]] = {
            "step": self.step,
            "alive_clear": self.alive_store,
            "alive_set": self.alive_store,
            "open": self.open,
            "close": self.close,
            "mmap": self.mmap,
            "munmap": self.munmap,
        }
        #: the handler's points, by kind: the step of the point's CPU
        self.on_point: dict[str, Callable[[int, HRec, State], State | None]] = {
            "read_lock": self.read_lock,
            "check": self.check_point,
            "insert": self.insert,
            "poison": self.poison,
            "read_unlock": self.read_unlock,
            "gp_flip": self.srcu_point,
            "gp_done": self.srcu_point,
        }

    # ---------------------------------------------------------------------------- the search --

    def check(self) -> None:
        """Return if some path of the spec explains the run; else raise TraceRejected."""
        run, c = self.run, self.c
        for op in run.admin_ops:
            if op.outcome.startswith(("contract", "KernelBug")):
                head = f"impl stopped the admin program: {op.outcome} (no spec step fails that way)"
                raise TraceRejected(report(run, c, head, (0, [f"admin {op.kind} stopped by {op.outcome}"])))
        err0 = _srcu_check(run)
        if err0:
            raise TraceRejected(report(run, c, "impl's SRCU broke its guarantee", (0, [err0])))
        start: Node = (run.k_start, run.s0, (0,) * len(run.touches), 0)
        stack = [start]
        seen: set[Node] = {start}
        explored = 0
        while stack:
            node = stack.pop()
            explored += 1
            if explored > self.budget:
                raise TraceRejected(
                    report(run, c, f"search budget of {self.budget} nodes exhausted", self.best)
                )
            self.depth = node[0] + sum(node[2])
            if self.at_end(node):
                return
            for nxt in self.successors(node):
                if nxt in seen:
                    continue
                err = self.bad(nxt[1])
                if err:
                    self.note(err, nxt[0] + sum(nxt[2]))
                    if err not in self.pruned and len(self.pruned) < 3:
                        self.pruned.append(err)
                    continue
                seen.add(nxt)
                stack.append(nxt)
        why = "no path of the spec explains this log"
        if self.pruned:
            why += "; paths cut by invariants: " + " | ".join(self.pruned)
        raise TraceRejected(report(run, c, why, self.best))

    def note(self, why: str, depth: int | None = None) -> None:
        """Keep why a path ended, if no path got further (up to 8 reasons at the furthest depth)."""
        depth = self.depth if depth is None else depth
        if depth > self.best[0]:
            self.best = (depth, [why])
        elif depth == self.best[0] and len(self.best[1]) < 8:
            self.best[1].append(why)

    def bad(self, s: State) -> str | None:
        for inv in self.invs:
            assert inv.check is not None
            err = inv.check(self.c, s)
            if err:
                return f"invariant {inv.name}: {err}"
        return None

    def at_end(self, node: Node) -> bool:
        """The node explains the whole run: log and touches done, no admin program running, and
        the spec state is abstraction(impl)."""
        i, s, tidx, _ = node
        T = self.run.touches
        done = all(tidx[j] == len(T[j]) for j in range(len(T)))
        if not (i == len(self.events) and done and not s.admin.prog):
            return False
        if project(s._replace(admin=Admin(generation=s.admin.generation))) == self.target:
            return True
        self.note(
            "end of log, but abstraction(impl) != spec state:\n      "
            + "\n      ".join(diff(self.target, project(s))),
            self.depth + 1,
        )
        return False

    def successors(self, node: Node) -> list[Node]:
        """The next log event (unless a touch that returned before it is still unfinished), an
        early zap of one entry inside an unmap, and each run thread's next touch taking effect."""
        i, s, tidx, aidx = node
        T = self.run.touches
        succ: list[Node] = []
        blocked = any(tidx[j] < len(T[j]) and self.ends[j][tidx[j]] <= i for j in range(len(T)))
        if i < len(self.events) and not blocked:
            succ += [(i + 1, t, tidx, a) for t, a in self.event(i, s, aidx)]
        if i in self.unmap_at:
            d = self.unmap_at[i]
            for e in s.entries:
                if s.files[s.vmas[e.vma].file].dev == d:
                    succ.append((i, s._replace(entries=s.entries - {e}), tidx, aidx))
        # a toucher's access takes effect (the touches of one thread in order, each in its window)
        for j in range(len(T)):
            if tidx[j] == len(T[j]):
                continue
            rec = T[j][tidx[j]]
            after = self.touch_effect(i, s, rec) if rec.k0 <= i else None
            if after is not None:
                nxt = list(tidx)
                nxt[j] += 1
                succ.append((i, after, tuple(nxt), aidx))
        return succ

    def event(self, i: int, s: State, aidx: int) -> Succ:
        """Log event i on the spec: a handler point by its kind, else a main-process event."""
        h = self.run.hrecs.get(i)
        if h is not None:
            t = self.point(i, h, s)
            return [] if t is None else [(t, aidx)]
        on = self.on_event.get(self.events[i].kind)
        return [(s, aidx)] if on is None else on(i, s, aidx)

    # ------------------------------------------------------------------------ admin steps --

    def step(self, i: int, s: State, aidx: int) -> Succ:
        """A "step" event: the admin program's next step, unless it was applied at its point."""
        if i in self.moved:
            return [(s, aidx)]
        return self.admin_step(i, i, s, aidx)

    def alive_store(self, i: int, s: State, aidx: int) -> Succ:
        """alive_clear / alive_set: the linearization point of the step logged after it."""
        if i in self.step_at:
            return self.admin_step(i, self.step_at[i], s, aidx)
        return [(s, aidx)]

    def admin_step(self, i: int, k: int, s: State, aidx: int) -> Succ:
        """The step of step event k, applied at log position i: the step the spec's admin program
        offers next with the same name and outcome (the next admin action starts a program)."""
        ev = self.events[k]
        name, _, outcome = ev.detail.rpartition(" ")
        if outcome == "skipped":
            return [(s, aidx)]
        s1, a1 = s, aidx
        if not s1.admin.prog:
            if aidx >= len(self.ops):
                self.note(f"log event {k} ({ev.obj} {ev.detail}) but no admin action runs")
                return []
            s1, a1 = _start_program(self.c, s, self.ops[aidx]), aidx + 1
        steps = admin.admin_steps(self.c, s1)
        ok = [t for nm, _, lab, t in steps if nm == name and lab == outcome]
        if not ok:
            offered = ", ".join(f"{nm} {lab}" for nm, _, lab, _ in steps) or "nothing (blocked)"
            where = f"log event {i}" + (f" (the point of step event {k})" if i != k else "")
            self.note(
                f"{where}: impl step {ev.obj} '{name} {outcome}'; the spec's {s1.admin.prog} "
                f"program offers: {offered}"
            )
        return [(t, a1) for t in ok]

    # --------------------------------------------------------------- user file operations --

    def open(self, i: int, s: State, aidx: int) -> Succ:
        r = do_open(self.c, s, self.run.node, True)
        if r is not None and r[0] == "ok":
            self.fslot[self.events[i].obj] = next(
                k for k, (x, y) in enumerate(zip(s.files, r[1].files, strict=True)) if x != y
            )
        return self.file_op_done(i, r, aidx)

    def close(self, i: int, s: State, aidx: int) -> Succ:
        slot = self.file_slot(i)
        if slot is None:
            return []
        return self.file_op_done(i, do_close(self.c, s, slot), aidx)

    def mmap(self, i: int, s: State, aidx: int) -> Succ:
        slot = self.file_slot(i)
        if slot is None:
            return []
        r = do_mmap(self.c, s, slot, SHAPE_2)
        if r is not None and r[0] == "ok":
            ev = self.events[i]
            new = next(k for k, (x, y) in enumerate(zip(s.vmas, r[1].vmas, strict=True)) if x != y)
            self.vslot[(ev.obj, ev.detail.split("+")[0])] = new
            self.ustart[new] = r[1].vmas[new].start
        return self.file_op_done(i, r, aidx)

    def munmap(self, i: int, s: State, aidx: int) -> Succ:
        if self.file_slot(i) is None:
            return []
        ev = self.events[i]
        v = self.vslot.get((ev.obj, ev.detail.split("+")[0]))
        return self.file_op_done(i, do_munmap(self.c, s, v, "all") if v is not None else None, aidx)

    def file_slot(self, i: int) -> int | None:
        """The spec slot of the file event i names (the spec must have opened it)."""
        ev = self.events[i]
        if ev.obj not in self.fslot:
            self.note(f"log event {i}: {ev.kind} of {ev.obj}, a file the spec never opened")
            return None
        return self.fslot[ev.obj]

    def file_op_done(self, i: int, r: tuple[str, State] | None, aidx: int) -> Succ:
        """A file operation that succeeded in impl must succeed in the spec at its event."""
        if r is None or r[0] != "ok":
            ev = self.events[i]
            self.note(
                f"log event {i}: impl's {ev.kind} of {ev.obj} succeeded, the spec's "
                f"{'cannot run here' if r is None else 'ends ' + r[0]}"
            )
            return []
        return [(r[1], aidx)]

    def user_vma(self, key: tuple[str, str], off: int, what: str) -> tuple[int, int] | None:
        """(spec slot, spec address) of an offset in the user's mapping; the slot is the one its
        mmap event took (the same on every path), so it is known once a path has passed that event."""
        v = self.vslot.get(key)
        if v is None:
            self.note(f"{what}: the user's mapping {key} is not mapped in the spec yet")
            return None
        return v, self.ustart[v] + off

    # --------------------------------------------------------------------- handler points --

    def point(self, i: int, h: HRec, s: State) -> State | None:
        """The spec step of the handler point h (CPU h.cpu), or None with a note why not."""
        if h.ukey is not None:
            at = self.user_vma(h.ukey, h.addr, f"log event {i}: cpu{h.cpu} {h.kind}")
            if at is None:
                return None
            h = dataclasses.replace(h, vma=at[0], addr=at[1], ukey=None)
        return self.on_point.get(h.kind, self.srcu_point)(i, h, s)

    def read_lock(self, i: int, h: HRec, s: State) -> State | None:
        cpu = s.cpus[h.cpu]
        if h.vma < 0:
            self.note(f"{_who(i, h)}: a fault outside every vma of the run")
            return None
        t = _lock(self.c, s, h.cpu, h.vma, h.addr) if cpu.pc == C_IDLE and cpu.result != R_FALLBACK else None
        if t is None:
            self.note(f"{_who(i, h)}: the spec CPU cannot begin a fault (pc {cpu.pc}, result {cpu.result})")
        return t

    def check_point(self, i: int, h: HRec, s: State) -> State | None:
        """The handler's check: alive as impl read it, and its decision and size, are the spec's."""
        j, who = h.cpu, _who(i, h)
        cpu = s.cpus[j]
        r = _check_chain(self.c, s, j) if cpu.pc == C_LOCKED else None
        if r is None or r[0] == "OOPS":
            self.note(f"{who}: the spec CPU cannot check ({'OOPS: ' + r[0] if r else f'pc {cpu.pc}'})")
            return None
        d = s.files[s.vmas[cpu.vma].file].dev
        if int(s.devs[d].alive) != h.alive:
            self.note(f"{who}: impl read alive={h.alive}, the spec's dax{d} has {s.devs[d].alive}")
            return None
        got = r[1].cpus[j]
        if h.install != (got.pc == C_CHECKED) or (h.install and got.size != h.size):
            spec = f"install {SIZE_NAMES.get(got.size)}" if got.pc == C_CHECKED else "SIGBUS"
            self.note(
                f"{who}: impl decided {'install' if h.install else 'SIGBUS'} "
                f"{SIZE_NAMES.get(h.size, '')} ({h.reason}), the spec's check {r[0]} -> {spec}"
            )
            return None
        return _keep_left(r[1], j, cpu.left)

    def insert(self, i: int, h: HRec, s: State) -> State | None:
        """Whether impl's ioctl found the unit present (0 bytes changed) is whether the spec's
        entry is there (EBUSY), except where a stale poison marker may have answered."""
        who = _who(i, h)
        r = fault_insert(self.c, s, h.cpu)
        if r is None:
            self.note(f"{who}: the spec CPU is not ready to insert (pc {s.cpus[h.cpu].pc})")
            return None
        if i not in self.stale and r[0] != "ok" and h.changed > 0:
            self.note(f"{who}: impl installed {h.changed:#x} bytes, the spec's entry is there (EBUSY)")
            return None
        if i not in self.stale and r[0] == "ok" and h.changed == 0:
            self.note(f"{who}: impl found the unit present, the spec installs it")
            return None
        if h.changed < 0:
            self.note(f"{who}: impl's install ioctl failed")
            return None
        return r[1]

    def poison(self, i: int, h: HRec, s: State) -> State | None:
        pc = s.cpus[h.cpu].pc
        if pc != C_DONE:
            self.note(f"{_who(i, h)}: impl poisons (SIGBUS) but the spec CPU is at pc {pc}")
            return None
        return s

    def read_unlock(self, i: int, h: HRec, s: State) -> State | None:
        cpu = s.cpus[h.cpu]
        r = fault_unlock(self.c, s, h.cpu)
        if r is None:
            self.note(f"{_who(i, h)}: the spec CPU is not in a fault (pc {cpu.pc})")
            return None
        return _keep_left(r[1], h.cpu, cpu.left)

    def srcu_point(self, i: int, h: HRec, s: State) -> State | None:
        """gp_flip / gp_done: impl's own grace period, checked from the log by _srcu_check."""
        return s

    # ---------------------------------------------------------------------------- touches --

    def touch_effect(self, i: int, s: State, rec: TouchRec | UserRec) -> State | None:
        """A run thread's next record may take effect at log position i: the state then."""
        if isinstance(rec, UserRec):
            return self.failed_user_call(i, s, rec)
        return self.touch(i, s, rec)

    def failed_user_call(self, i: int, s: State, rec: UserRec) -> State | None:
        """A failed file operation of the user thread may take effect at i: the spec's fails alike
        (the state after it: unchanged, or the spec's oops for an OOPS)."""
        r: tuple[str, State] | None = None
        if rec.kind == "open":
            r = do_open(self.c, s, self.run.node, True)
        elif rec.kind == "mmap" and rec.file in self.fslot:
            r = do_mmap(self.c, s, self.fslot[rec.file], SHAPE_2)
        if r is not None and r[0] == rec.outcome:
            return r[1]
        self.note(
            f"log event {i}: the user's {rec.kind} failed {rec.outcome} (window [{rec.k0}, "
            f"{rec.k1}]); the spec's {'cannot run' if r is None else 'ends ' + r[0]} here"
        )
        return None

    def touch(self, i: int, s: State, rec: TouchRec) -> State | None:
        """The toucher's access may take effect at log position i with its outcome: the state then.
        A touch of the user's mapping may also end in SIGSEGV: where the mapping is gone (munmap
        before the access; the mm finds no vma)."""
        if rec.ukey is not None:
            at = self.user_vma(rec.ukey, rec.addr, f"log event {i}: user toucher")
            if at is None:
                return None
            rec = dataclasses.replace(rec, vma=at[0], addr=at[1], ukey=None)
            if rec.outcome == "SIGSEGV":
                if s.vmas[rec.vma].file < 0:
                    return s
                self.note(
                    f"log event {i}: toucher{rec.cpu}'s touch of the user's mapping ended SIGSEGV "
                    f"(window [{rec.k0}, {rec.k1}]) while the spec's is mapped"
                )
                return None
        if rec.outcome == "ok":
            ok = covered(s, rec.vma, rec.addr)
        elif rec.outcome == "SIGBUS":
            ok = i in self.stale or would_sigbus(self.c, s, rec.vma, rec.addr)
        else:
            self.note(f"cpu{rec.cpu} touch {rec.addr:#x}: outcome {rec.outcome}, which no spec fault gives")
            return None
        if not ok:
            act = "write" if rec.write else "read"
            self.note(
                f"log event {i}: toucher{rec.cpu}'s {act} of vma{rec.vma} {rec.addr:#x} "
                f"(window [{rec.k0}, {rec.k1}]) ended {rec.outcome}; the spec disagrees here"
            )
            return None
        return s


def _who(i: int, h: HRec) -> str:
    return f"log event {i}: cpu{h.cpu} {h.kind} (toucher{h.toucher} vma{h.vma} {h.addr:#x})"


def check_trace(c: Ctx, run: Run, findings: dict[str, str] | None = None, budget: int = 400_000) -> None:
    """Raise TraceRejected with a readable report unless the run is a path of the spec."""
    TraceChecker(c, run, findings, budget).check()


def report(run: Run, c: Ctx, head: str, best: tuple[int, list[str]]) -> str:
    """The rejection: the command that replays the run, why the furthest paths ended, and the
    log with every touch, user call and admin action and its window."""
    lines = [
        f"TRACE REJECTED (profile {c.prof.name}, seed {run.seed}): {head}",
        f"  rerun{' (exactly: scheduled)' if run.scheduled else ' (same plan; the OS interleaves)'}: "
        f"{run.rerun()}",
        "  furthest the spec got explains:",
    ]
    lines += [f"    - {w}" for w in best[1]]
    lines += [f"  {x}" for x in run.notes]
    lines.append("  log since the race began (index kind obj detail):")
    for k in range(run.k_start, len(run.events)):
        e = run.events[k]
        lines.append(f"    {k:3} {e.kind} {e.obj} {e.detail}")
    for j, recs in enumerate(run.touches):
        for r in recs:
            if isinstance(r, TouchRec):
                act = "write" if r.write else "read"
                lines.append(
                    f"  toucher{j}: {act} vma{r.vma} {r.addr:#x} in window [{r.k0}, {r.k1}] -> {r.outcome}"
                )
    for u in run.user_ops:
        lines.append(f"  user: {u.kind} {u.file} in window [{u.k0}, {u.k1}] -> {u.outcome}")
    for a in run.admin_ops:
        lines.append(f"  admin: {a.kind} in window [{a.k0}, {a.k1}] -> {a.outcome}")
    return "\n".join(lines)
