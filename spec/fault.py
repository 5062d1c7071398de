"""A page fault on a device-dax vma, split into the steps a CPU takes and another CPU can interleave.

Seed commit 2: "Faults are handled under rcu_read_lock to synchronize with the enabled state of the
device." dev_dax_huge_fault(): read-lock; check_vma (alive); size negotiation; pgoff_to_phys; insert
one entry; read-unlock (docs/semantics.md#faults). The fault holds mmap_lock for read, so the vma does
not change under it.

Check, negotiation and translation read only the vma (stable under mmap_lock), the immutable layout
and `alive`; they are one step because nothing another CPU does can come between them and change
their result except `alive`, which is read first. Inserting is a separate step: that is where the
race with unmap_mapping_range lives.
"""

from __future__ import annotations

from devdax.spec.ctx import Ctx, oops
from devdax.spec.geometry import (
    PAGE_SIZE,
    PMD_SIZE,
    PUD_SIZE,
    SIZE_NAMES,
    FaultResult,
    check_vma,
    dax_huge_fault,
    next_fault_size,
    round_down,
)
from devdax.spec.profiles import ReadLock
from devdax.spec.state import (
    C_CHECKED,
    C_DONE,
    C_IDLE,
    C_LOCKED,
    D_RELEASED,
    R_FALLBACK,
    R_NONE,
    R_NOPAGE,
    R_SIGBUS,
    RESULT_NAMES,
    Cpu,
    Entry,
    Outcome,
    State,
    set_at,
)
from devdax.spec.vma import vma_flags


def covered(s: State, v: int, addr: int) -> bool:
    """An entry maps addr already: the access does not fault at all."""
    return any(e.vma == v and e.addr <= addr < e.addr + e.size for e in s.entries)


def fault_targets(c: Ctx, s: State, v: int) -> list[int]:
    """One faulting address per align unit of the vma: within a unit every address gives the same
    block for every fault size <= align, and for a larger size the block depends only on the unit."""
    vma = s.vmas[v]
    align = c.vma_align(s, v)
    base = round_down(vma.start, align)
    return [
        a if a >= vma.start else vma.start
        for a in range(base, vma.end, align)
        if not covered(s, v, max(a, vma.start))
    ]


def _put_cpu(s: State, i: int, cpu: Cpu) -> State:
    return s._replace(cpus=set_at(s.cpus, i, cpu))


def fault_lock(c: Ctx, s: State, i: int, v: int, addr: int, size: int | None = None) -> Outcome | None:
    """The mm calls ->huge_fault (first at the largest size); it takes dax_read_lock()/
    rcu_read_lock(). A reader that enters now is not one the current grace period waits for."""
    cpu = s.cpus[i]
    if cpu.pc != C_IDLE:
        return None
    if cpu.result == R_FALLBACK:  # the mm retries the same address one size down
        if (v, addr) != (cpu.vma, cpu.addr):
            return None
        size = cpu.size
    else:
        if cpu.left == 0 or s.vmas[v].file < 0 or covered(s, v, addr):
            return None
        size = size if size is not None else first_size(c, s.vmas[v].nohuge)
    cpu = Cpu(C_LOCKED, cpu.left, cpu.nest + 1, False, v, addr, size, R_NONE, 0)
    return ("ok", _put_cpu(s, i, cpu))


def first_size(c: Ctx, nohuge: bool, pmd_table: bool = False) -> int:
    """The mm's first attempt: the largest size it may use (cfg.first_fault), or a pte fault when
    the vma has VM_NOHUGEPAGE (thp_vma_allowable_order says no). pmd_table: a page table already
    fills the PUD slot, so __handle_mm_fault, which tries create_huge_pud only "if
    (pud_none(*vmf.pud) ...)", starts at PMD size (see leaves_pmd_table)."""
    if nohuge:
        return PAGE_SIZE
    size = c.cfg.first_fault_bytes
    return min(size, PMD_SIZE) if pmd_table else size


def leaves_pmd_table(last_size: int) -> bool:
    """Whether a fault whose last attempt was at last_size left a pmd table in its PUD slot:
    __handle_mm_fault calls pmd_alloc() before any attempt below PUD size, and the table stays
    whatever the attempt ends in. MADV_DONTNEED (zap_page_range) keeps page tables; only munmap's
    free_pgtables frees them, with the last vma of the slot. So on a 1G device one pte-sized fault
    (after MADV_NOHUGEPAGE) makes every later fault of that 1G slot start at PMD size and SIGBUS
    (__dev_dax_pmd_fault: align > PMD_SIZE), MADV_HUGEPAGE or not (recorded: k37 on 6.1, 6.12,
    7.2). A pte table is installed only by a successful pte fault (finish_fault), so a 2M device
    has no such memory."""
    return last_size < PUD_SIZE


def fault_check(c: Ctx, s: State, i: int) -> Outcome | None:
    """check_vma (alive first), fault-size negotiation, pgoff_to_phys."""
    cpu = s.cpus[i]
    if cpu.pc != C_LOCKED:
        return None
    vma = s.vmas[cpu.vma]
    d = s.files[vma.file].dev
    dev = s.devs[d]
    if dev.phase == D_RELEASED:
        return ("OOPS", oops(s, f"uaf: fault on released dax{d}"))
    rules = c.prof.fault_rules
    ranges = c.layout.ranges[d]
    align = c.align_of(d)
    pgoff = vma.pgoff if c.prof.check_vma_pgoff else None
    ok = (
        check_vma(dev.alive, vma_flags(vma), vma.start, vma.end, align, c.prof.private_test, vm_pgoff=pgoff)
        == 0
    )
    dec = dax_huge_fault(cpu.size, cpu.addr, vma.start, vma.end, vma.pgoff, align, ranges, ok, rules)
    tag = f"@{SIZE_NAMES[cpu.size]}" + (f":{dec.reason}" if dec.reason else "")
    if dec.result is FaultResult.NOPAGE:
        return (
            "NOPAGE" + tag,
            _put_cpu(s, i, cpu._replace(pc=C_CHECKED, result=R_NOPAGE, addr=dec.addr, phys=dec.phys)),
        )
    if (
        dec.result is FaultResult.FALLBACK
        and c.prof.default_case_leaks_lock
        and not rules.pud_supported
        and cpu.size == PUD_SIZE
    ):
        # M20: "default: return VM_FAULT_FALLBACK;" inside rcu_read_lock(): no unlock
        nxt = next_fault_size(cpu.size) or cpu.size
        return ("FALLBACK" + tag, _put_cpu(s, i, cpu._replace(pc=C_IDLE, result=R_FALLBACK, size=nxt)))
    res = R_FALLBACK if dec.result is FaultResult.FALLBACK else R_SIGBUS
    return (RESULT_NAMES[res] + tag, _put_cpu(s, i, cpu._replace(pc=C_DONE, result=res)))


def fault_insert(c: Ctx, s: State, i: int) -> Outcome | None:
    """vmf_insert_mixed / vmf_insert_pfn_pmd / _pud: install exactly one entry of the fault size.
    Another CPU may have installed it first (-EBUSY counts as success). May sleep (pte_alloc)."""
    cpu = s.cpus[i]
    if cpu.pc != C_CHECKED:
        return None
    s = _put_cpu(s, i, cpu._replace(pc=C_DONE))
    if covered(s, cpu.vma, cpu.addr):
        return ("EBUSY", s)
    return ("ok", s._replace(entries=s.entries | {Entry(cpu.vma, cpu.addr, cpu.size, cpu.phys)}))


def fault_unlock(c: Ctx, s: State, i: int) -> Outcome | None:
    """dax_read_unlock(); the handler returns NOPAGE, SIGBUS or FALLBACK to the mm."""
    cpu = s.cpus[i]
    if cpu.pc != C_DONE:
        return None
    nest = cpu.nest - 1
    outcome = {R_NOPAGE: "NOPAGE", R_SIGBUS: "SIGBUS", R_FALLBACK: "FALLBACK"}[cpu.result]
    if cpu.result == R_FALLBACK:
        nxt = next_fault_size(cpu.size)
        if nxt is not None:
            return (
                outcome,
                _put_cpu(
                    s,
                    i,
                    Cpu(
                        C_IDLE, cpu.left, nest, cpu.pre_gp and nest > 0, cpu.vma, cpu.addr, nxt, R_FALLBACK, 0
                    ),
                ),
            )
        outcome = "SIGBUS"
    return (outcome, _put_cpu(s, i, Cpu(C_IDLE, cpu.left - 1, nest, cpu.pre_gp and nest > 0)))


def sleeps_in_rcu(c: Ctx, action: str) -> bool:
    """M5: inserting may allocate a page table and sleep; under plain RCU that is illegal."""
    return "fault_insert" in action.split("+") and c.prof.read_lock is ReadLock.RCU
