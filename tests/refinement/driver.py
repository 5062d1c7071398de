"""One user program run on the impl and on the spec together, compared after every operation.

The spec side is a single-threaded interpreter like devdax/scenario/spec_backend.py: every operation is the
spec action it stands for (do_open, do_mmap, ...), a touch is one fault on CPU 0 through
fault_lock/check/insert/unlock, disable/enable run the admin programs to completion. The impl side is
the same call on real objects. After each operation ``Driver.check`` demands: equal outcomes,
project(abstraction(impl)) == project(spec), every state invariant on the abstraction except the
profile's documented findings, and the step properties on the spec's transition.

Used by test_lockstep.py (hypothesis picks the operations) and by the variant tests (a fixed program).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass

import icontract

from devdax.impl import sys as dsys
from devdax.impl.dax import MADV, MAP, PROT, DaxBus, DaxFile, Event, KernelBug, VmArea
from devdax.impl.ida import Ida
from devdax.impl.vmcore import reserve
from devdax.spec import admin, fault, fops, mapping, mm
from devdax.spec.config import REGION_BASE, Config, Layout, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.file import do_close, do_open
from devdax.spec.geometry import PAGE_SIZE
from devdax.spec.invariants import INVARIANTS, state_invariants
from devdax.spec.profiles import Profile, get_profile
from devdax.spec.state import C_CHECKED, C_IDLE, C_LOCKED, R_FALLBACK, File, State, Vma
from devdax.spec.system import Transition, init
from devdax.spec.vma import do_fork, do_madvise_dontfork, do_mmap, do_munmap

from .abstraction import Refinement, abstraction, diff, project

M2 = 2 << 20
#: impl minors live at MINOR_BASE + the spec's minor: a private ida far above the module-wide one,
#: so that buses of other tests in the same process can never share a kobj_map slot with ours
MINOR_BASE = 1 << 19

SHAPES = (
    MmapShape("shared-rw"),
    MmapShape("shared-ro", write=False),
    MmapShape("shared-2", units=2),
    MmapShape("private-rw", shared=False),
    MmapShape("private-rw-noreserve", shared=False, noreserve=True),
    MmapShape("misaligned-len", extra_bytes=PAGE_SIZE),
    MmapShape("misaligned-off", offset_bytes=PAGE_SIZE),
    MmapShape("offset-1", offset_units=1),
    MmapShape("fixed-misaligned", fixed_bytes=PAGE_SIZE),
    MmapShape("fixed-unaligned-offset", fixed_bytes=0, offset_bytes=PAGE_SIZE),
    MmapShape("oversized", units=3),
)


class RefinementError(AssertionError):
    """impl and spec disagree: the message says where, after which operations."""


class HookedLog(list[Event]):
    """impl's event log with a callback on every append: the driver follows impl's admin programs
    step by step (impl logs a "step" event after each step, under the bus lock)."""

    def __init__(self, hook: Callable[[Event], None]) -> None:
        super().__init__()
        self.hook = hook

    def append(self, ev: Event) -> None:
        super().append(ev)
        self.hook(ev)


def start_program(c: Ctx, s: State, prog: str, arg: int) -> State:
    """The spec's admin starting ``prog`` (as admin.run_program does), first inapplicable steps
    skipped; the caller then takes admin.admin_steps one at a time."""
    gen = s.admin.generation + (prog == "probe")
    return admin._finish(c, s._replace(admin=s.admin._replace(prog=prog, dev=arg, pc=0, generation=gen)))


class OffsetIda:
    """An Ida whose ids are base + the inner ida's (duck-types impl.ida.Ida for DaxBus)."""

    def __init__(self, base: int, limit: int = 1 << 16) -> None:
        self.base = base
        self.inner = Ida("refinement minors", limit)

    def alloc(self, bounded: bool = True) -> int:
        return self.base + self.inner.alloc(bounded)

    def free(self, i: int) -> None:
        self.inner.free(i - self.base)

    @property
    def used(self) -> frozenset[int]:
        return frozenset(self.base + i for i in self.inner.used)

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and (i - self.base) in self.inner


def spec_config(profile: str, devices: int = 1, generations: int = 3, cpus: int = 1) -> Config:
    modern = profile == "modern"
    return Config(
        profile=profile,
        align="2M",
        devices=devices,
        units=2,
        ranges=2 if modern else 1,
        generations=1 if modern else generations,
        files=6,
        vmas=8,
        cpus=cpus,
        faults=1 << 30,
        binds=1 << 30,
        first_fault="pud",
        open_rdonly=True,
        fork=True,
        munmap_parts=True,
        mmaps=SHAPES,
    )


@dataclass
class Op:
    text: str
    impl: str
    spec: str


class Driver:
    """impl (built with ``impl_profile``) and spec (``spec_profile``, the reference) side by side."""

    def __init__(
        self,
        cfg: Config,
        impl_profile: Profile | None = None,
        spec_profile: Profile | None = None,
        workers: int = 2,
        bus: DaxBus | None = None,
        minor_base: int = MINOR_BASE,
    ) -> None:
        """``bus``: run on this bus (kept open by close(), which then undoes what this driver made)
        instead of a new one; its minor ida and event log are replaced by this driver's."""
        base = get_profile(cfg.profile)
        self.spec_prof = spec_profile or base
        self.impl_prof = impl_profile or base
        self.c = Ctx(cfg, self.spec_prof, Layout.of(cfg))
        self.ref = Refinement()
        self.minor_base = minor_base
        self.minors = OffsetIda(minor_base, cfg.nr_minors or 1 << 16)
        self.events: list[Event] = HookedLog(self._on_event)
        self._shadow: State | None = None  # the spec's admin while impl runs a program
        self._prog = ""
        self.own_bus = bus is None
        if bus is None:
            # the emulated mm asks the spec's first fault size first (Config.first_fault), as the spec's
            bus = DaxBus(
                workers=workers,
                minor_ida=self.minors,  # type: ignore[arg-type]
                events=self.events,
                mm_first_fault=cfg.first_fault_bytes,
            )
        else:
            bus.minor_ida = self.minors  # type: ignore[assignment]
            bus.events = self.events
        self.bus = bus
        self._dmesg = len(bus.dmesg)
        self.history: list[Op] = []
        self.region_size, self.spans = self._layout()
        try:
            self.s = init(self.c)
            self._program("probe", 0, self._probe_impl)
            self.check("probe")
        except BaseException:
            self.close()
            raise

    # --- plumbing ------------------------------------------------------------------------------------
    def _layout(self) -> tuple[int, list[list[tuple[int, int]]]]:
        c = self.c
        spans = [
            [(r.start - REGION_BASE, r.end - r.start + 1) for r in c.layout.ranges[d]]
            for d in range(c.cfg.devices)
        ]
        top = max(s + n for sp in spans for s, n in sp)
        size = (top + c.align - 1) // c.align * c.align + c.align
        return size, spans

    def _probe_impl(self) -> None:
        if not self.ref.regions:
            r = self.bus.create_region(self.region_size, self.c.align, self.spans, profile=self.impl_prof)
        else:
            old = self.ref.regions[-1]
            r = self.bus.enable(old.devices[0]).region
        if r not in self.ref.regions:
            self.ref.regions.append(r)

    def close(self) -> None:
        # cleanup after a failure may meet the same defect again (a contract, a KernelBug): the
        # first report is the one that counts
        if self.own_bus:
            with contextlib.suppress(Exception):
                self.bus.close()
        else:
            with contextlib.suppress(Exception):
                self.undo()
            # the provider (its namespace) goes with the run: the memory is freed with the last
            # region that still uses it, not kept until the shared bus closes
            for r in self.ref.regions[:1]:
                with contextlib.suppress(Exception):
                    self.bus.release_backing(r.backing)

    def undo(self) -> None:
        """What process exit and provider removal do, on a bus that stays open: unmap every vma and
        close every fd this driver made, remove its regions still probed."""
        bus = self.bus
        with bus._lock:
            for a, _, _ in list(self.ref.vmas.values()):
                if a in bus._areas:
                    a.handle._drop(a)
            for f, _ in list(self.ref.files.values()):
                if f.fd_open:
                    f.close()
            for r in self.ref.regions:
                if not r.gone:
                    bus.remove_region(r)

    def generation(self) -> int:
        return len(self.ref.regions) - 1

    def spec_dev(self, i: int) -> int:
        return self.generation() * self.c.cfg.devices + i

    def live_files(self) -> list[tuple[DaxFile, int]]:
        return sorted(((f, k) for f, k in self.ref.files.values() if f.fd_open), key=lambda x: x[1])

    def live_vmas(self) -> list[tuple[VmArea, int, int]]:
        live = {id(a) for a in self.bus._areas}
        return sorted((x for x in self.ref.vmas.values() if id(x[0]) in live), key=lambda x: x[1])

    def _impl(self, fn: object) -> str:
        try:
            out = fn()  # type: ignore[operator]
        except KernelBug as e:
            self.ref.note_oops(str(e))
            return "OOPS"
        except icontract.ViolationError as e:
            # impl's own contracts (icontract, on in tests) refuse the step before it runs
            self.fail(f"impl's own contract refused a step: {str(e).splitlines()[1:3]}")
        except OSError as e:
            return errno.errorcode.get(e.errno or 0, "EIO")
        return out if isinstance(out, str) else "ok"

    def _scan_dmesg(self) -> None:
        new, self._dmesg = self.bus.dmesg[self._dmesg :], len(self.bus.dmesg)
        for msg in new:
            if "underflow" in msg:
                self.ref.note_oops(f"refcount underflow: {msg}")
            elif msg.startswith("BUG: list_del"):
                self.ref.note_oops(msg.removeprefix("BUG: "))
            elif (
                msg.startswith("BUG: sleeping function") and "no_sleep_in_rcu" not in self.spec_prof.findings
            ):
                # the handler's CONFIG_DEBUG_ATOMIC_SLEEP report: an insert inside plain RCU (M5)
                self.fail(f"step property no_sleep_in_rcu broken by impl: dmesg says {msg!r}")

    def record(
        self, text: str, impl: str, spec: str, tr: Transition | None = None, before: State | None = None
    ) -> None:
        self.history.append(Op(text, impl, spec))
        self._scan_dmesg()
        if impl != spec:
            self.fail(f"outcome of {text}: impl {impl}, spec {spec}")
        if tr is not None and before is not None:
            for inv in INVARIANTS.values():
                if inv.kind == "step" and inv.step is not None and inv.name not in self.spec_prof.findings:
                    err = inv.step(self.c, before, tr)
                    if err:
                        self.fail(f"step property {inv.name} broken by {text}: {err}")
        self.check(text)

    def fail(self, what: str) -> None:
        lines = [
            f"REFINEMENT FAILURE ({self.impl_prof.name} impl vs {self.spec_prof.name} spec): {what}",
            "operations so far (impl outcome / spec outcome):",
        ]
        lines += [f"  {i:2}. {op.text}: {op.impl} / {op.spec}" for i, op in enumerate(self.history)]
        steps = [f"{e.obj} {e.detail}" for e in self.events if e.kind == "step"]
        if steps:
            lines.append("impl admin steps: " + ", ".join(steps[-24:]))
        raise RefinementError("\n".join(lines))

    # --- admin programs, step by step -------------------------------------------------------------
    def _program(self, prog: str, arg: int, run: Callable[[], object]) -> str:
        """Run an impl admin call while the spec's admin follows each step impl logs; the spec
        state becomes the program's end. Returns impl's outcome."""
        self._prog = f"{prog}({arg})"
        self._shadow = start_program(self.c, self.s, prog, arg)
        try:
            out = self._impl(run)
            sh = self._shadow
            if out == "ok" and sh.admin.prog:
                nxt = ", ".join(f"{n} {lab}" for n, _, lab, _ in admin.admin_steps(self.c, sh))
                self.fail(
                    f"impl finished {self._prog}, but the spec's program still has steps: "
                    f"next {nxt or 'nothing (blocked)'}"
                )
            self.s = sh
        finally:
            self._shadow = None
        return out

    def _on_event(self, ev: Event) -> None:
        sh = self._shadow
        if sh is None or ev.kind != "step":
            return
        name, _, out = ev.detail.rpartition(" ")
        if out == "skipped":
            return
        what = f"impl step '{name} {out}' of {ev.obj} in {self._prog}"
        if not sh.admin.prog:
            self.fail(f"{what}: the spec's program has already ended")
        steps = admin.admin_steps(self.c, sh)
        nxt = [t for n, _, lab, t in steps if n == name and lab == out]
        if not nxt:
            offered = ", ".join(f"'{n} {lab}'" for n, _, lab, _ in steps) or "nothing (blocked)"
            self.fail(f"{what}: the spec's {sh.admin.prog} program offers {offered} here")
        t = nxt[0]
        # modern mappingN children: the spec leaves unregistered children to an asynchronous
        # mapping_release; impl's children have no other holder and release inside the step
        for g, r in enumerate(self.ref.regions):
            for dv in r.devices:
                k = g * self.c.cfg.devices + dv.index
                while t.devs[k].zombies > dv.zombies:
                    res = mapping.mapping_release(self.c, t, k)
                    assert res is not None
                    t = res[1]
        nxt[0] = t
        self._shadow = nxt[0]
        if self._prog.startswith("probe") and len(self.ref.regions) < nxt[0].admin.generation:
            self.ref.regions.append(self.bus.regions[-1])  # create_region adds it before probing
        self.history.append(Op(f"  step {name} of {ev.obj}", out, out))
        self._scan_dmesg()  # a WARN inside the step (refcount underflow) is its oops
        _, arg, kill_end = admin.program(self.c, sh.admin.prog, sh.admin.dev)[sh.admin.pc]
        # impl sets the ghost `dead` of a kill-completing step right after logging it
        self._compare(nxt[0], f"{name} of {ev.obj} in {self._prog}", arg if kill_end else -1)

    def check(self, text: str) -> None:
        self._compare(self.s, text)

    def _compare(self, spec: State, text: str, dead_of: int = -1) -> None:
        a = abstraction(self.c, self.bus, self.ref, minor_base=self.minor_base)
        a = a._replace(admin=a.admin._replace(prog=spec.admin.prog, dev=spec.admin.dev, pc=spec.admin.pc))
        if dead_of >= 0:
            a = a._replace(
                devs=tuple(x._replace(dead=True) if k == dead_of else x for k, x in enumerate(a.devs))
            )
        pa, ps = project(a), project(spec)
        if pa != ps:
            self.fail(f"abstraction(impl) != spec state after {text}:\n    " + "\n    ".join(diff(pa, ps)))
        # resources below the spec: a released device gives its core slot back (else the core runs
        # out of device slots after 64 devices)
        slots = {d.slot for r in self.bus.regions for d in r.devices if d.slot >= 0}
        if set(self.bus.core._devices) != slots:
            self.fail(
                f"core device slots {sorted(self.bus.core._devices)} != slots of unreleased "
                f"devices {sorted(slots)} after {text}"
            )
        for inv in state_invariants():
            if inv.name in self.spec_prof.findings or inv.check is None:
                continue
            err = inv.check(self.c, a)
            if err:
                self.fail(f"invariant {inv.name} fails on abstraction(impl) after {text}: {err}")

    # --- operations ----------------------------------------------------------------------------------
    def open(self, node: int, writable: bool) -> None:
        d = self.spec_dev(node)
        res = do_open(self.c, self.s, d, writable)
        if res is None:
            return
        spec, t = res
        dev = self.ref.regions[-1].devices[node]
        box: list[DaxFile] = []
        impl = self._impl(lambda: box.append(self.bus.open(dev, os.O_RDWR if writable else os.O_RDONLY)))
        if spec == "ok":
            slot = next(i for i, (x, y) in enumerate(zip(self.s.files, t.files, strict=True)) if x != y)
            if box:
                self.ref.add_file(box[0], slot)
        self.s = t
        self.record(f"open(dax node {node}, {'O_RDWR' if writable else 'O_RDONLY'})", impl, spec)

    def close_file(self, k: int) -> None:
        files = self.live_files()
        if not files:
            return
        f, slot = files[k % len(files)]
        res = do_close(self.c, self.s, slot)
        assert res is not None
        impl = self._impl(f.close)
        self.s = res[1]
        self.record(f"close(file slot {slot})", impl, res[0])

    def mmap(self, k: int, shape: MmapShape) -> None:
        files = self.live_files()
        if not files:
            return
        f, slot = files[k % len(files)]
        before = self.s
        res = do_mmap(self.c, self.s, slot, shape)
        if res is None:
            return
        spec, t = res
        align = self.c.align
        length = shape.units * align + shape.extra_bytes
        offset = shape.offset_units * align + shape.offset_bytes
        prot = PROT["PROT_READ"] | (PROT["PROT_WRITE"] if shape.write else 0)
        flags = MAP["MAP_SHARED"] if shape.shared else MAP["MAP_PRIVATE"]
        if shape.noreserve:
            flags |= MAP["MAP_NORESERVE"]
        fixed = None
        if shape.fixed_bytes is not None:
            span = length + shape.fixed_bytes + PAGE_SIZE
            base = reserve(span, align)
            dsys.munmap(base, span)
            fixed = base + shape.fixed_bytes
            flags |= MAP["MAP_FIXED"]
        box: list[object] = []
        impl = self._impl(lambda: box.append(f.mmap(length, prot, flags, offset, fixed)))
        tr = Transition("mmap", (slot, shape.name), spec, t)
        if spec == "ok" and box:
            v = next(i for i, (x, y) in enumerate(zip(self.s.vmas, t.vmas, strict=True)) if x != y)
            handle = box[0]
            (area,) = handle.areas  # type: ignore[attr-defined]
            self.ref.add_vma(area, v, t.vmas[v].start - area.start)
        self.s = t
        self.record(f"mmap(file slot {slot}, {shape.name})", impl, spec, tr, before)

    def _vma(self, k: int) -> tuple[VmArea, int, int] | None:
        vmas = self.live_vmas()
        return vmas[k % len(vmas)] if vmas else None

    def munmap(self, k: int, part: str) -> None:
        x = self._vma(k)
        if x is None:
            return
        a, v, _ = x
        res = do_munmap(self.c, self.s, v, part)
        if res is None:
            return
        h = a.handle
        align = self.c.align
        if part == "all":
            off, n = a.start - h.base, a.end - a.start
        elif part == "tail":
            off, n = a.end - align - h.base, align
        else:
            off, n = a.start - h.base, PAGE_SIZE
        impl = self._impl(lambda: h.munmap(off, n))
        self.s = res[1]
        self.record(f"munmap(vma slot {v}, {part})", impl, res[0])

    def madvise_dontfork(self, k: int) -> None:
        x = self._vma(k)
        if x is None:
            return
        a, v, _ = x
        res = do_madvise_dontfork(self.c, self.s, v)
        if res is None:
            return
        h = a.handle
        impl = self._impl(lambda: h.madvise(a.start - h.base, a.end - a.start, MADV["MADV_DONTFORK"]))
        self.s = res[1]
        self.record(f"madvise(vma slot {v}, MADV_DONTFORK)", impl, res[0])

    def touch(self, k: int, unit: int, write: bool) -> None:
        x = self._vma(k)
        if x is None:
            return
        a, v, _ = x
        offset = unit * self.c.align + 0x1234
        h = a.handle
        impl = self._impl(lambda: h.touch(a.start - h.base + offset, write))
        spec = self._spec_access(v, self.s.vmas[v].start + offset, write)
        self.record(f"touch(vma slot {v}, unit {unit}, {'write' if write else 'read'})", impl, spec)

    def syscall(self, k: int, call: str) -> None:
        """A file call dax_fops does not implement (spec/fops.py): the same errno, no state change."""
        files = self.live_files()
        if not files:
            return
        f, slot = files[k % len(files)]
        fl = self.s.files[slot]
        impl_call: dict[str, tuple[Callable[[], object], str]] = {
            "read": (lambda: f.read(4096), fops.read(fl.readable)),
            "write": (lambda: f.write(b"x"), fops.write(fl.writable)),
            "fsync": (f.fsync, fops.fsync()),
            "lseek": (lambda: f.lseek(0), fops.lseek()),
            "ioctl": (lambda: f.ioctl(0x541B), fops.ioctl()),  # FIONREAD
            "fallocate": (lambda: f.fallocate(0, 0, 4096), fops.fallocate(fl.writable)),
        }
        run, spec = impl_call[call]
        impl = self._impl(run)
        self.record(f"{call}(file slot {slot})", impl, spec)

    def fork_touch(self, k: int, unit: int, write: bool) -> None:
        x = self._vma(k)
        if x is None:
            return
        a, v, _ = x
        vma = self.s.vmas[v]
        offset = unit * self.c.align + 0x1234
        if vma.dontcopy or not vma.start + offset < vma.end:
            spec = "SIGSEGV"
        else:
            if write and vma.write and vma.read:
                # impl's fork_touch(write) first reads the byte in the parent (to store it back
                # unchanged from the child): that access may fault the unit in the parent too
                self._spec_access(v, vma.start + offset, False)
            res = do_fork(self.c, self.s, v)
            if res is None:
                return
            before = self.s
            self.s = res[1]
            (w,) = [
                i
                for i, (p, q) in enumerate(zip(before.vmas, self.s.vmas, strict=True))
                if p.file < 0 <= q.file
            ]
            spec = self._spec_access(w, vma.start + offset, write)
            r = do_munmap(self.c, self.s, w, "all")
            assert r is not None
            self.s = r[1]
        h = a.handle
        impl = self._impl(lambda: h.fork_touch(a.start - h.base + offset, write))
        self.record(f"fork_touch(vma slot {v}, unit {unit}, {'write' if write else 'read'})", impl, spec)

    def _spec_access(self, v: int, addr: int, write: bool) -> str:
        vma = self.s.vmas[v]
        if not vma.start <= addr < vma.end:
            return "SIGSEGV"
        if (write and not vma.write) or not vma.read:
            return "SIGSEGV"
        if mm.entry_at(self.s, v, addr) is not None:
            return "ok"
        return self._spec_fault(v, addr)

    def _spec_fault(self, v: int, addr: int) -> str:
        """One fault on CPU 0 through the spec's steps (as devdax/scenario/spec_backend.py)."""
        c = self.c
        res = fault.fault_lock(c, self.s, 0, v, addr)
        assert res is not None
        self.s = res[1]
        outcome = "SIGBUS"
        while True:
            cpu = self.s.cpus[0]
            before = self.s
            if cpu.pc == C_IDLE:
                if cpu.result != R_FALLBACK:
                    return outcome
                res = fault.fault_lock(c, self.s, 0, cpu.vma, cpu.addr)
                name = "fault_lock"
            elif cpu.pc == C_LOCKED:
                res, name = fault.fault_check(c, self.s, 0), "fault_check"
            elif cpu.pc == C_CHECKED:
                res, name = fault.fault_insert(c, self.s, 0), "fault_insert"
            else:
                res, name = fault.fault_unlock(c, self.s, 0), "fault_unlock"
                assert res is not None
                outcome = "ok" if res[0] == "NOPAGE" else res[0]
            assert res is not None
            self.s = res[1]
            tr = Transition(name, (0,), res[0], self.s)
            for inv in INVARIANTS.values():
                if inv.kind == "step" and inv.step is not None and inv.name not in self.spec_prof.findings:
                    err = inv.step(c, before, tr)
                    if err:
                        self.fail(f"step property {inv.name}: {err}")

    def disable(self, node: int) -> None:
        c = self.c
        dev = self.ref.regions[-1].devices[node]
        if c.prof.bind_cycles:
            d = self.spec_dev(node)
            if not self.s.devs[d].bound:
                spec = "ENODEV"
                impl = self._impl(lambda: self.bus.disable(dev))
            else:
                spec = "ok"
                impl = self._program("unbind", d, lambda: self.bus.disable(dev))
        else:
            if self.ref.regions[-1].gone:
                return
            spec = "ok"
            impl = self._program("remove", self.generation(), lambda: self.bus.disable(dev))
        self.record(f"disable(node {node})", impl, spec)

    def remove(self) -> None:
        """Provider removal (the remove program of the current generation): with it modern devices
        reach their release too (unbind/bind alone never releases a device)."""
        r = self.ref.regions[-1]
        if r.gone:
            return
        impl = self._program("remove", self.generation(), lambda: self.bus.remove_region(r))
        self.record("remove provider", impl, "ok")

    def enable(self, node: int) -> None:
        c = self.c
        dev = self.ref.regions[-1].devices[node]
        if c.prof.bind_cycles:
            d = self.spec_dev(node)
            if self.s.devs[d].bound or not self.s.devs[d].registered:
                spec = "EBUSY" if self.s.devs[d].bound else "ENODEV"  # bind needs a device
                impl = self._impl(lambda: self.bus.enable(dev))
            else:
                spec = "ok"
                impl = self._program("bind", d, lambda: self.bus.enable(dev))
        else:
            if not self.ref.regions[-1].gone or len(self.ref.regions) >= c.cfg.generations:
                return
            spec = "ok"
            impl = self._program("probe", self.generation() + 1, self._probe_impl)
        self.record(f"enable(node {node})", impl, spec)


_ = (File, Vma)
