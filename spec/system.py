"""The whole specification: Init, and Next as the union of every action instance.

Actors: the admin thread (probe, bind, unbind, removal: spec/admin.py), user programs (open, close,
mmap, munmap, fork, madvise: spec/file.py, spec/vma.py), CPUs in the fault handler
(spec/fault.py), and asynchronous kobject releases (spec/mapping.py). Next is their interleaving;
each transition is one atomic step of one actor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from devdax.spec import admin, fault, file, fops, mapping, vma
from devdax.spec.config import Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.state import (
    C_CHECKED,
    C_DONE,
    C_IDLE,
    C_LOCKED,
    R_FALLBACK,
    Admin,
    Cpu,
    Dev,
    File,
    Region,
    State,
    Vma,
    fast_record,
)


class Transition(NamedTuple):
    action: str  # the spec function: open, mmap, fault_lock, admin, ...
    args: tuple[object, ...]  # its arguments, for the trace and for replay
    outcome: str  # ok, an errno name, SIGBUS, NOPAGE, FALLBACK, ...
    state: State


fast_record(Transition)  # built for every successor of every state


def init(c: Ctx) -> State:
    """Nothing exists yet: no region, no device; every CPU will take cfg.faults faults."""
    cfg = c.cfg
    s = State(
        regions=(Region(),) * cfg.generations,
        devs=(Dev(),) * cfg.instances,
        files=(File(),) * cfg.files,
        vmas=(Vma(),) * cfg.vmas,
        entries=frozenset(),
        cpus=(Cpu(left=cfg.faults),) * cfg.cpus,
        minors=0,
        gp=False,
        admin=Admin(binds_left=(cfg.binds,) * cfg.instances),
        oops="",
    )
    return race_prefix(c, s) if cfg.race else s


def race_prefix(c: Ctx, s: State) -> State:
    """The fault-vs-teardown race starts with every device probed, opened and mapped whole: run
    those steps through the spec itself (no hand-made state)."""
    s = next(started for prog, _, started in admin.admin_starts(c, s) if prog == "probe")
    while s.admin.prog:
        s = admin.admin_steps(c, s)[0][3]
    for d in range(c.cfg.devices):
        r = file.do_open(c, s, d, True)
        assert r is not None and r[0] == "ok", r
        s = r[1]
    whole = MmapShape("whole", units=c.cfg.units)
    for f in range(c.cfg.devices):
        r = vma.do_mmap(c, s, f, whole)
        assert r is not None and r[0] == "ok", r
        s = r[1]
    return s


def admin_transitions(c: Ctx, s: State) -> list[Transition]:
    """Start a program (its first step runs with the start) or run the next step of the current one."""
    out = []
    if s.admin.prog:
        for name, arg, outcome, t in admin.admin_steps(c, s):
            out.append(Transition("admin", (s.admin.prog, s.admin.dev, name, arg), outcome, t))
        return out
    for prog, arg, started in admin.admin_starts(c, s):
        if c.cfg.race and prog != "remove":
            continue
        for name, sarg, outcome, t in admin.admin_steps(c, started):
            out.append(Transition("admin", (prog, arg, name, sarg), outcome, t))
    return out


def user_transitions(c: Ctx, s: State) -> list[Transition]:
    out: list[Transition] = []  # built, not yielded: a compiled generator costs more than its list
    cfg = c.cfg
    free_file = any(fl.dev < 0 for fl in s.files)
    if free_file:
        seen_nodes = set()
        for d, dev in enumerate(s.devs):
            if dev.minor < 0 or (dev.minor in seen_nodes and not dev.icdev_cached):
                continue
            seen_nodes.add(dev.minor)
            for writable in (True, False) if cfg.open_rdonly else (True,):
                r = file.do_open(c, s, d, writable)
                if r is not None:
                    out.append(Transition("open", (d, "O_RDWR" if writable else "O_RDONLY"), *r))
    free_vma = any(v.file < 0 for v in s.vmas)
    for f, fl in enumerate(s.files):
        if not fl.fd:
            continue
        r = file.do_close(c, s, f)
        if r is not None:
            out.append(Transition("close", (f,), *r))
        if free_vma:
            for shape in cfg.mmaps:
                r = vma.do_mmap(c, s, f, shape)
                if r is not None:
                    out.append(Transition("mmap", (f, shape.name), *r))
        if cfg.syscalls:
            out.append(Transition("read", (f,), fops.read(fl.readable), s))  # no .read in dax_fops
            out.append(Transition("ioctl", (f,), fops.ioctl(), s))  # no .unlocked_ioctl
    for v, m in enumerate(s.vmas):
        if m.file < 0:
            continue
        for part in ("all", "tail", "misaligned") if cfg.munmap_parts else ("all",):
            r = vma.do_munmap(c, s, v, part)
            if r is not None:
                out.append(Transition("munmap", (v, part), *r))
        if cfg.fork:
            r = vma.do_fork(c, s, v)
            if r is not None:
                out.append(Transition("fork", (v,), *r))
            r = vma.do_madvise_dontfork(c, s, v)
            if r is not None:
                out.append(Transition("madvise", (v, "MADV_DONTFORK"), *r))
    return out


def others(c: Ctx, s: State) -> list[Transition]:
    """Every actor but the CPUs, in Next's order: the admin, kobject releases, user programs."""
    out = admin_transitions(c, s)
    for d, dev in enumerate(s.devs):
        if dev.zombies:
            r = mapping.mapping_release(c, s, d)
            if r is not None:
                out.append(Transition("mapping_release", (d,), *r))
    if not c.cfg.race:
        out += user_transitions(c, s)
    return out


def movers(cpus: tuple[Cpu, ...]) -> Iterator[int]:
    """CPUs with identical records are interchangeable: only the first of each kind moves."""
    seen: set[Cpu] = set()
    for i, cpu in enumerate(cpus):
        if cpu not in seen:
            seen.add(cpu)
            yield i


def cpu_steps(c: Ctx, s: State, i: int) -> list[Transition]:
    """The steps CPU i can take: lock (a new fault, or the mm's retry one size down), check,
    insert, unlock."""
    out: list[Transition] = []  # built, not yielded: a compiled generator costs more than its list
    cpu = s.cpus[i]
    if cpu.pc == C_IDLE:
        if cpu.result == R_FALLBACK:
            r = fault.fault_lock(c, s, i, cpu.vma, cpu.addr)
            if r is not None:
                out.append(Transition("fault_lock", (i, cpu.vma, cpu.addr, cpu.size), *r))
            return out
        if cpu.left == 0:
            return out
        for v, m in enumerate(s.vmas):
            if m.file < 0:
                continue
            for addr in fault.fault_targets(c, s, v):
                r = fault.fault_lock(c, s, i, v, addr)
                if r is not None:
                    out.append(Transition("fault_lock", (i, v, addr, c.cfg.first_fault_bytes), *r))
    elif cpu.pc == C_LOCKED:
        r = fault.fault_check(c, s, i)
        if r is not None:
            out.append(Transition("fault_check", (i,), *r))
    elif cpu.pc == C_CHECKED:
        r = fault.fault_insert(c, s, i)
        if r is not None:
            out.append(Transition("fault_insert", (i,), *r))
    elif cpu.pc == C_DONE:
        r = fault.fault_unlock(c, s, i)
        if r is not None:
            out.append(Transition("fault_unlock", (i,), *r))
    return out


def successors(c: Ctx, s: State) -> list[Transition]:
    """Next: every enabled action instance from s."""
    out = others(c, s)
    for i in movers(s.cpus):
        out.extend(cpu_steps(c, s, i))
    return out


def make(cfg: Config) -> Ctx:
    return Ctx.of(cfg)
