"""The spec's prediction for a scenario: every step runs through the state machine, in order.

This backend adds nothing to the semantics. It only translates a user program into spec actions:
a touch becomes one fault on CPU 0 (lock, check, insert, unlock, retrying after FALLBACK); disable
and enable run the admin's unbind/bind programs (modern) or provider removal and a new probe (older
profiles); mm range calls go to spec/mm.py and the calls dax_fops lacks to spec/fops.py. The bytes
written through mappings live in a dict keyed by physical address, which is all `check` needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from devdax.scenario import format as fmt
from devdax.spec import admin, fault, fops, mm
from devdax.spec.abi import PROT, flags_of
from devdax.spec.config import MM_WINDOW, REGION_BASE, Config, Layout, MmapShape
from devdax.spec.ctx import Ctx, bugged
from devdax.spec.file import do_close, do_open
from devdax.spec.geometry import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PUD_SIZE,
    dax_get_unmapped_area,
    device_size,
    make_ranges,
    pfn_huge,
    prot_readable,
    round_up,
    unmapped_area_topdown,
)
from devdax.spec.profiles import get_profile
from devdax.spec.state import C_CHECKED, C_IDLE, C_LOCKED, R_FALLBACK, Entry, Outcome, State, Vma
from devdax.spec.system import init
from devdax.spec.vma import do_fork, do_mmap, do_munmap

SLOTS = 32


class SpecBound(ValueError):
    """The scenario needs more files or vmas at once than the spec's state has slots for."""


@dataclass
class _Map:
    base: int
    slots: list[int]


@dataclass
class _Run:
    c: Ctx
    s: State
    region: list[int] = field(default_factory=list)  # scenario device -> its namespace's region now
    order: list[int] = field(default_factory=list)  # region -> its scenario device (probes())
    fds: dict[str, int] = field(default_factory=dict)  # handle -> file slot (-1 once closed)
    paths: set[str] = field(default_factory=set)  # O_PATH handles still open: no file slot at all
    maps: dict[str, _Map] = field(default_factory=dict)
    memory: dict[int, int] = field(default_factory=dict)  # physical byte -> value
    pmd_tables: set[int] = field(default_factory=set)  # PUD slots a pmd table fills (leaves_pmd_table)


#: Each region instance's ranges sit GENERATION apart in the spec's physical space (so entries of
#: two probes are never confused), but a re-probe is over the same memory: bytes are kept per offset
#: within a generation, and each device keeps its offset in the scenario's region.
GENERATION = 1 << 36


def _cell(phys: int) -> int:
    return phys % GENERATION


def _byte(e: Entry, addr: int) -> int:
    """The memory cell a load or store at addr reaches through entry e: the block the page table
    really maps (geometry.pfn_huge), not the address the driver computed."""
    return _cell(pfn_huge(e.phys, e.size) + (addr - e.addr))


def probes(sc: fmt.Scenario) -> list[int]:
    """The scenario device of every region the scenario can probe, in order: first one per device,
    then one per later probe of a namespace (enable-namespace; enable in profiles without binding).

    Each scenario device is a namespace of its own, and dax_pmem's probe (dax_pmem_probe ->
    devm_create_dev_dax with a static id from the namespace) gives each namespace its own dax region
    with one device: so removing one device's namespace leaves the others alone, as the kernels did
    in k44 (6.1, 6.12, 7.2)."""
    rebind = get_profile(sc.profile).bind_cycles
    out = list(range(len(sc.setup.devices)))
    for st in sc.steps:
        if isinstance(st, fmt.EnableNamespace) or (isinstance(st, fmt.Enable) and not rebind):
            out.append(st.dev)
    return out


def context(sc: fmt.Scenario) -> Ctx:
    """The spec context of a scenario: its profile, one single-device region per namespace probe."""
    prof = get_profile(sc.profile)
    devs = sc.setup.devices
    order = probes(sc)
    cfg = Config(
        profile=sc.profile,
        align={4096: "4K", 2 << 20: "2M", 1 << 30: "1G"}[sc.setup.align],
        devices=1,
        generations=len(order),
        files=SLOTS,
        vmas=SLOTS,
        cpus=1,
        faults=1 << 30,
        binds=1 << 30,
        first_fault="pud",
    )
    ranges = tuple(
        make_ranges([(REGION_BASE + g * GENERATION + devs[d].start, devs[d].size)])
        for g, d in enumerate(order)
    )
    return Ctx(cfg, prof, Layout(sc.setup.align, ranges))


class SpecBackend:
    """`devdax scenario run --backend spec`."""

    name = "spec"

    def run(self, scenario: fmt.Scenario) -> list[str]:
        c = context(scenario)
        order = probes(scenario)
        ndev = len(scenario.setup.devices)
        r = _Run(c, init(c), region=list(range(ndev)), order=order)
        for g in range(ndev):
            r.s = admin.run_program(c, r.s, "probe", g)

        def step(i: int, st: fmt.Step) -> str:
            try:
                return _step(r, st)
            except SpecBound as e:
                raise fmt.ScenarioError(scenario.file, i, st.op, str(e)) from None

        return fmt.run_steps(scenario, step)


def _instance(r: _Run, dev: int) -> int:
    """The spec's device instance of a scenario device: the one device of its current region."""
    return r.region[dev]


def _reprobe(r: _Run, dev: int) -> None:
    """A new probe of dev's namespace, over the same memory: the first region probes() set aside for
    it that is still unprobed."""
    g = next(g for g in range(r.region[dev] + 1, len(r.order)) if r.order[g] == dev)
    r.region[dev] = g
    r.s = admin.run_program(r.c, r.s, "probe", g)


def _new_slots(before: State, after: State) -> list[int]:
    return [v for v, (a, b) in enumerate(zip(before.vmas, after.vmas, strict=True)) if a.file < 0 <= b.file]


def _step(r: _Run, st: fmt.Step) -> str:
    handler = _HANDLERS[type(st)]
    before = r.s
    outcome = handler(r, st)
    if bugged(before, r.s):
        outcome = "OOPS"
    # free_pgtables: a PUD slot that no vma touches any more has lost its pmd table
    r.pmd_tables = {p for p in r.pmd_tables if any(_in_slot(v, p) for v in r.s.vmas if v.file >= 0)}
    return outcome


def _in_slot(v: Vma, slot: int) -> bool:
    return v.start < (slot + 1) * PUD_SIZE and slot * PUD_SIZE < v.end


def _open(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Open)
    refused = fops.path_lookup(r.s.devs[_instance(r, st.dev)].registered, st.flags)
    if refused:
        return refused
    if fops.open_flags(st.flags) != "ok":
        return fops.open_flags(st.flags)
    if fops.path_only(st.flags):
        if st.as_:
            r.paths.add(st.as_)
            r.fds.pop(st.as_, None)
        return "ok"
    writable = bool({"O_RDWR", "O_WRONLY"} & st.flags)
    readable = "O_WRONLY" not in st.flags
    res = do_open(r.c, r.s, _instance(r, st.dev), writable, readable)
    if res is None:
        raise SpecBound(f"more than {SLOTS} files open at once (the spec state's bound)")
    outcome, s = res
    if outcome == "ok":
        f = next(i for i, (a, b) in enumerate(zip(r.s.files, s.files, strict=True)) if a != b)
        if st.as_:
            r.fds[st.as_] = f
            r.paths.discard(st.as_)
    r.s = s
    return outcome


def _fd(r: _Run, name: str) -> int:
    f = r.fds.get(name, -1)
    return f if f >= 0 and r.s.files[f].fd else -1


def _close(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Close)
    if st.fd in r.paths:
        r.paths.discard(st.fd)
        return "ok"
    f = _fd(r, st.fd)
    if f < 0:
        return "EBADF"
    res = do_close(r.c, r.s, f)
    assert res is not None
    r.s = res[1]
    r.fds[st.fd] = -1
    return res[0]


def _mmap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mmap)
    if st.fd in r.paths:
        return fops.PATH_FD
    f = _fd(r, st.fd)
    if f < 0:
        return "EBADF"
    kinds = {"MAP_SHARED", "MAP_PRIVATE", "MAP_SHARED_VALIDATE"} & st.flags
    if len(kinds) != 1 or "MAP_HUGETLB" in st.flags:
        return "EINVAL"  # do_mmap: one mapping type; hugetlb needs hugetlbfs
    validate = "MAP_SHARED_VALIDATE" in kinds
    align = r.c.align_of(r.s.files[f].dev)
    fixed = None if st.fixed_offset is None else st.fixed_offset
    shape = MmapShape(
        "scenario",
        units=st.length // align,
        extra_bytes=st.length % align,
        offset_units=st.offset // align,
        offset_bytes=st.offset % align,
        shared="MAP_PRIVATE" not in kinds,
        write="PROT_WRITE" in st.prot,
        noreserve="MAP_NORESERVE" in st.flags,
        fixed_bytes=fixed,
        hint=not {"MAP_FIXED", "MAP_FIXED_NOREPLACE"} & st.flags,
        sync=validate and "MAP_SYNC" in st.flags,
        growsdown="MAP_GROWSDOWN" in st.flags,
        stack="MAP_STACK" in st.flags,
        read=prot_readable(flags_of(st.prot, PROT, "prot")),
    )
    res = do_mmap(r.c, r.s, f, shape, partial(_topdown, r))
    if res is None:
        raise SpecBound(f"more than {SLOTS} vmas at once (the spec state's bound)")
    outcome, s = res
    if outcome == "ok":
        slots = _new_slots(r.s, s)
        r.s = s
        m = _Map(s.vmas[slots[0]].start, slots)
        if st.as_:
            r.maps[st.as_] = m
        if "MAP_POPULATE" in st.flags:
            vma = r.s.vmas[slots[0]]
            # a unit past the device end SIGBUSes and changes nothing, and populate ignores
            # failures: only the units the device has are faulted (issue 14 class 2)
            size = device_size(r.c.layout.ranges[r.s.files[f].dev])
            end = min(vma.end, vma.start + max(0, size - vma.pgoff * PAGE_SIZE))
            for a in range(vma.start, end, max(align, PAGE_SIZE)):
                _access(r, m, a - m.base, write=False, value=None)
        return "ok"
    r.s = s
    return outcome


def _topdown(r: _Run, length: int) -> int:
    """The scenario's mm->get_unmapped_area: the kernel's top-down search over the mappings this
    scenario holds, from the spec's window (one page past a 1G boundary, so never aligned by luck
    until an earlier mapping makes it so)."""
    busy = [(v.start, v.end) for v in r.s.vmas if v.file >= 0]
    return unmapped_area_topdown(busy, length, MM_WINDOW)


def _vma_at(r: _Run, m: _Map, addr: int) -> int:
    for v in m.slots:
        vma = r.s.vmas[v]
        if vma.file >= 0 and vma.start <= addr < vma.end:
            return v
    return -1


def _fault(r: _Run, v: int, addr: int) -> str:
    """One fault on CPU 0 through the spec's steps; FALLBACK makes the mm retry one size down. A
    fault that went below PUD size leaves a pmd table in its PUD slot (fault.leaves_pmd_table)."""
    slot = addr // PUD_SIZE
    size = fault.first_size(r.c, r.s.vmas[v].nohuge, slot in r.pmd_tables)
    res = fault.fault_lock(r.c, r.s, 0, v, addr, size)
    assert res is not None
    r.s = res[1]
    outcome = "SIGBUS"
    while True:
        cpu = r.s.cpus[0]
        if cpu.pc == C_IDLE:
            if cpu.result != R_FALLBACK:
                if fault.leaves_pmd_table(size):
                    r.pmd_tables.add(slot)
                return outcome
            size = cpu.size
            res = fault.fault_lock(r.c, r.s, 0, cpu.vma, cpu.addr)
        elif cpu.pc == C_LOCKED:
            res = fault.fault_check(r.c, r.s, 0)
        elif cpu.pc == C_CHECKED:
            res = fault.fault_insert(r.c, r.s, 0)
        else:
            res = fault.fault_unlock(r.c, r.s, 0)
            assert res is not None
            outcome = "ok" if res[0] == "NOPAGE" else res[0]
        assert res is not None
        r.s = res[1]


def _access(r: _Run, m: _Map, offset: int, write: bool, value: int | None) -> str:
    addr = m.base + offset
    v = _vma_at(r, m, addr)
    if v < 0:
        return "SIGSEGV"  # no vma: SEGV_MAPERR
    vma = r.s.vmas[v]
    if (write and not vma.write) or not vma.read:
        return "SIGSEGV"  # SEGV_ACCERR
    e = mm.entry_at(r.s, v, addr)
    if e is None:
        outcome = _fault(r, v, addr)
        if outcome != "ok":
            return outcome
        e = mm.entry_at(r.s, v, addr)
        assert e is not None
    if write and value is not None:
        r.memory[_byte(e, addr)] = value
    return "ok"


def _touch(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Touch)
    return _access(r, r.maps[st.map], st.offset, st.access == "write", st.value)


def _check(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Check)
    m = r.maps[st.map]
    outcome = _access(r, m, st.offset, False, None)
    if outcome != "ok":
        return outcome
    addr = m.base + st.offset
    e = mm.entry_at(r.s, _vma_at(r, m, addr), addr)
    assert e is not None
    return "ok" if r.memory.get(_byte(e, addr), 0) == st.value else "mismatch"


def _fork_touch(r: _Run, st: fmt.Step) -> str:
    """The child gets copies of the parent's vmas (not VM_DONTCOPY ones) and touches there; its
    exit unmaps them again. Modern children start with no entries and refault."""
    assert isinstance(st, fmt.ForkTouch)
    m = r.maps[st.map]
    v = _vma_at(r, m, m.base + st.offset)
    if v < 0 or r.s.vmas[v].dontcopy:
        return "SIGSEGV"
    before = r.s
    res = do_fork(r.c, r.s, v)
    assert res is not None
    r.s = res[1]
    (w,) = _new_slots(before, r.s)
    write = st.access == "write"
    outcome = _access(r, _Map(m.base, [w]), st.offset, write, fmt.FORK_STORE if write else None)
    res = do_munmap(r.c, r.s, w, "all")
    assert res is not None
    r.s = res[1]
    return outcome


def _range(r: _Run, m: _Map, offset: int, length: int) -> tuple[int, int, list[int]]:
    lo = m.base + offset
    hi = lo + round_up(length, PAGE_SIZE)
    hit = [v for v in m.slots if r.s.vmas[v].file >= 0 and r.s.vmas[v].start < hi and lo < r.s.vmas[v].end]
    return lo, hi, hit


def _covered(r: _Run, lo: int, hi: int, vmas: list[int]) -> bool:
    spans = sorted((r.s.vmas[v].start, r.s.vmas[v].end) for v in vmas)
    at = lo
    for a, b in spans:
        if a > at:
            return False
        at = max(at, b)
    return at >= hi


RangeFn = Callable[[Ctx, State, int, int, int], Outcome]


def _apply(r: _Run, m: _Map, lo: int, hi: int, vmas: list[int], fn: RangeFn) -> str:
    """munmap: all or nothing, as do_vmi_munmap splits at both ends (may_split) before it removes
    anything; each vma's change is tried on the state before anything changes."""
    for v in vmas:
        outcome, _ = fn(r.c, r.s, v, lo, hi)
        if outcome != "ok":
            return outcome
    for v in vmas:
        before = r.s
        outcome, r.s = fn(r.c, r.s, v, lo, hi)
        if outcome != "ok":
            return outcome
        m.slots.extend(_new_slots(before, r.s))
    m.slots[:] = [v for v in m.slots if r.s.vmas[v].file >= 0]
    return "ok"


def _munmap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Munmap)
    m = r.maps[st.map]
    if st.length == 0 or mm.check_range(m.base + st.offset, st.length):
        return "EINVAL"
    lo, hi, vmas = _range(r, m, st.offset, st.length)
    return _apply(r, m, lo, hi, vmas, lambda c, s, v, a, b: mm.change(c, s, v, a, b, None))


def _walk(r: _Run, m: _Map, st: fmt.Mprotect | fmt.Madvise, fn: RangeFn, past_gaps: bool) -> str:
    """A range operation vma by vma in address order (mm.walk): not all or nothing, a refusal
    stops it with the vmas before changed; a hole is ENOMEM, at once for mprotect, at the end for
    madvise."""
    lo, hi, vmas = _range(r, m, st.offset, st.length)
    visit, gap = mm.walk([(r.s.vmas[v].start, r.s.vmas[v].end) for v in vmas], lo, hi, past_gaps)
    for i in visit:
        before = r.s
        outcome, r.s = fn(r.c, r.s, vmas[i], lo, hi)
        m.slots.extend(_new_slots(before, r.s))
        if outcome != "ok":
            return outcome
    m.slots[:] = [v for v in m.slots if r.s.vmas[v].file >= 0]
    return "ENOMEM" if gap else "ok"


def _mprotect(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mprotect)
    m = r.maps[st.map]
    if mm.check_range(m.base + st.offset, st.length):
        return "EINVAL"
    read, write = prot_readable(flags_of(st.prot, PROT, "prot")), "PROT_WRITE" in st.prot
    return _walk(r, m, st, lambda c, s, v, a, b: mm.mprotect(c, s, v, a, b, read, write), past_gaps=False)


def _madvise(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Madvise)
    m = r.maps[st.map]
    if mm.check_range(m.base + st.offset, st.length):
        return "EINVAL"
    lo, hi, vmas = _range(r, m, st.offset, st.length)
    if st.advice in ("MADV_POPULATE_READ", "MADV_POPULATE_WRITE"):
        return _populate(r, m, lo, hi, vmas, st.advice.endswith("WRITE"))
    if not vmas:
        return "ENOMEM"
    return _walk(r, m, st, lambda c, s, v, a, b: mm.madvise(c, s, v, a, b, st.advice), past_gaps=True)


def _populate(r: _Run, m: _Map, lo: int, hi: int, vmas: list[int], write: bool) -> str:
    """madvise_populate: vma by vma up to the first hole (ENOMEM there); mm.populate_vma refuses
    a vma first (EINVAL), then each unit faults in, and a SIGBUS is EFAULT."""
    visit, gap = mm.walk([(r.s.vmas[v].start, r.s.vmas[v].end) for v in vmas], lo, hi, past_gaps=False)
    for i in visit:
        vma = r.s.vmas[vmas[i]]
        refused = mm.populate_vma(vma, write)
        if refused:
            return refused
        for a in range(max(lo, vma.start), min(hi, vma.end), PAGE_SIZE):
            if _access(r, m, a - m.base, write, None) != "ok":
                return "EFAULT"  # faultin_page_range: VM_FAULT_SIGBUS -> -EFAULT
    return "ENOMEM" if gap else "ok"


def _msync(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Msync)
    m = r.maps[st.map]
    bad = fops.msync_flags(st.flags)
    if bad or mm.check_range(m.base + st.offset, st.length):
        return bad or "EINVAL"
    lo, hi, vmas = _range(r, m, st.offset, st.length)
    for v in sorted(vmas, key=lambda v: r.s.vmas[v].start):
        outcome = fops.msync_vma(st.flags, r.s.vmas[v].shared)
        if outcome != "ok":
            return outcome
    return "ok" if _covered(r, lo, hi, vmas) else "ENOMEM"


def _mremap(r: _Run, st: fmt.Step) -> str:
    """mm.mremap_path decides; a move places the new vma as mmap does and the handle then names
    the remapped range (base + offset is its start), as on the kernel runner."""
    assert isinstance(st, fmt.Mremap)
    m = r.maps[st.map]
    addr = m.base + st.offset
    v = _vma_at(r, m, addr)
    vma = r.s.vmas[v] if v >= 0 else None
    old_len, new_len = round_up(st.old_length, PAGE_SIZE), round_up(st.new_length, PAGE_SIZE)
    room = vma is not None and _free(r, vma.end, vma.end + new_len - old_len)
    path = mm.mremap_path(addr, old_len, new_len, st.move, vma and (vma.end, vma.mayshare), room)
    before = r.s
    if path == "same":
        return "ok"
    if path == "shrink":  # do_vmi_munmap of the tail, across every vma it covers (all or nothing)
        lo, hi, vmas = _range(r, m, st.offset + new_len, old_len - new_len)
        return _apply(r, m, lo, hi, vmas, lambda c, s, w, a, b: mm.change(c, s, w, a, b, None))
    elif path == "expand":
        outcome, r.s = mm.mremap_grow(r.c, r.s, v, addr + new_len)
    elif path == "move":
        assert vma is not None
        pgoff = vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT)
        align = r.c.vma_align(r.s, v)
        new_addr = dax_get_unmapped_area(0, new_len, pgoff, align, partial(_topdown, r))
        outcome, r.s = mm.mremap_move(r.c, r.s, v, addr, old_len, new_addr, new_len)
        if outcome == "ok":
            m.base = new_addr - st.offset
    else:
        return path
    m.slots.extend(_new_slots(before, r.s))  # a cut leaves a tail vma; a move, the new one
    m.slots[:] = [w for w in m.slots if r.s.vmas[w].file >= 0]
    return outcome


def _free(r: _Run, lo: int, hi: int) -> bool:
    """vma_expandable(): nothing mapped in [lo, hi), and under the window's top, above which the
    runner's own mappings sit."""
    return hi <= MM_WINDOW and not any(v.file >= 0 and v.start < hi and lo < v.end for v in r.s.vmas)


def _fd_call(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Read | fmt.Write | fmt.Fsync | fmt.Lseek | fmt.Fallocate | fmt.Ioctl)
    if st.fd in r.paths:
        return fops.PATH_FD
    f = _fd(r, st.fd)
    if f < 0:
        return "EBADF"
    fl = r.s.files[f]
    if isinstance(st, fmt.Read):
        return fops.read(fl.readable)
    if isinstance(st, fmt.Write):
        return fops.write(fl.writable)
    if isinstance(st, fmt.Fsync):
        return fops.fsync()
    if isinstance(st, fmt.Lseek):
        return fops.lseek()
    if isinstance(st, fmt.Fallocate):
        return fops.fallocate(fl.writable, st.offset, st.length)
    return fops.ioctl()


def _disable(r: _Run, st: fmt.Step) -> str:
    """Modern: unbind device_dax (dev_dax_kill, dev_dax_cdev_del). Older profiles have no driver
    binding: disabling is the removal of the device's provider, and so of its region."""
    assert isinstance(st, fmt.Disable)
    d = _instance(r, st.dev)
    if r.c.prof.bind_cycles:
        if not r.s.devs[d].bound:
            return "ENODEV"
        r.s = admin.run_program(r.c, r.s, "unbind", d)
    else:
        r.s = admin.run_program(r.c, r.s, "remove", d)
    return "ok"


def _enable(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Enable)
    if r.c.prof.bind_cycles:
        d = _instance(r, st.dev)
        if r.s.devs[d].bound:
            return "EBUSY"
        r.s = admin.run_program(r.c, r.s, "bind", d)
    else:
        _reprobe(r, st.dev)
    return "ok"


def _remove(r: _Run, st: fmt.Step) -> str:
    """The device's namespace goes away: its provider's removal (unregister_dev_dax of its one
    device, then the region's devm action). The other namespaces' devices stay."""
    assert isinstance(st, fmt.Remove)
    r.s = admin.run_program(r.c, r.s, "remove", _instance(r, st.dev))
    return "ok"


def _disable_namespace(r: _Run, st: fmt.Step) -> str:
    """The provider is unbound (ndctl disable-namespace): its remove program. Like ndctl, disabling a
    disabled namespace does nothing and succeeds (recorded: k46 step 7 on 6.1, 6.12 and 7.2)."""
    assert isinstance(st, fmt.DisableNamespace)
    d = _instance(r, st.dev)
    if not r.s.devs[d].registered:
        return "ok"
    r.s = admin.run_program(r.c, r.s, "remove", d)
    return "ok"


def _enable_namespace(r: _Run, st: fmt.Step) -> str:
    """The provider probes again over the same memory: a new region's probe program; an enabled
    namespace is left as it is (ndctl enable-namespace succeeds; recorded: k46 step 11)."""
    assert isinstance(st, fmt.EnableNamespace)
    if r.s.devs[_instance(r, st.dev)].registered:
        return "ok"
    _reprobe(r, st.dev)
    return "ok"


_HANDLERS = {
    fmt.Open: _open,
    fmt.Close: _close,
    fmt.Mmap: _mmap,
    fmt.Munmap: _munmap,
    fmt.Mprotect: _mprotect,
    fmt.Mremap: _mremap,
    fmt.Touch: _touch,
    fmt.Check: _check,
    fmt.ForkTouch: _fork_touch,
    fmt.Read: _fd_call,
    fmt.Write: _fd_call,
    fmt.Fsync: _fd_call,
    fmt.Lseek: _fd_call,
    fmt.Fallocate: _fd_call,
    fmt.Ioctl: _fd_call,
    fmt.Madvise: _madvise,
    fmt.Msync: _msync,
    fmt.Disable: _disable,
    fmt.Enable: _enable,
    fmt.Remove: _remove,
    fmt.DisableNamespace: _disable_namespace,
    fmt.EnableNamespace: _enable_namespace,
}

_ = Vma
