"""The shared-memory table the main process and the fault-handler process both map.

Why shared memory: the handler must decide a fault without asking the main process anything (the
main process may be the one blocked in that fault, holding its GIL). So everything a decision reads --
per-device ``alive`` and ranges, per-vma descriptors -- lives here, written by the main process with
plain stores and read by the handler inside its SRCU read-side section. Counters flow the other way:
each handler worker owns a private row (no atomics needed: one writer per row), the main process sums.

Layout (all u64, fixed capacity so both sides agree without negotiation)::

    Header | DeviceDesc[MAX_DEVICES] | VmaDesc[MAX_VMAS] | WorkerStats[MAX_WORKERS] | SRCU area | trace area
    | pmd_tables[PUD_SLOTS]
"""

from __future__ import annotations

import ctypes
from enum import IntEnum
from typing import Final

from . import srcu
from .tracelog import TraceArea, TraceLog

MAGIC: Final = 0x6465_7664_6178_3031  # "devdax01"
MAX_DEVICES: Final = 64
MAX_RANGES: Final = 16
MAX_VMAS: Final = 1024
MAX_WORKERS: Final = 8
LAT_RING: Final = 4096
#: 1G slots of the 47-bit user address space (x86_64 4-level paging: 128 TiB / 1 GiB), one PUD
#: entry each: the mm whose page tables pmd_tables mirrors has no address above it
PUD_SLOTS: Final = 1 << 17
PUD_SHIFT: Final = 30

U64 = ctypes.c_uint64

# VmaDesc.flags bits (the vm_flags check_vma reads)
VMA_MAYSHARE: Final = 1 << 0
VMA_SHARED: Final = 1 << 1
VMA_WRITE: Final = 1 << 2
#: the vma has VM_NOHUGEPAGE (MADV_NOHUGEPAGE): the mm faults it at PTE size only
VMA_NOHUGE: Final = 1 << 8

# DeviceDesc.rules bits: which version of dev_dax_huge_fault the device's driver has (the profile's
# fault_rules, read_lock and default_case_leaks_lock; 0 = the fixed driver, spec FaultRules())
DEV_NO_FALLBACK: Final = 1 << 0  # M3/M4: fault_size > align proceeds instead of FALLBACK
DEV_NO_VMA_BOUNDS: Final = 1 << 1  # M3/M4: no check that the huge block lies inside the vma
DEV_NO_PUD: Final = 1 << 2  # no CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD
DEV_RCU: Final = 1 << 3  # M5: the read side is rcu_read_lock(), which may not sleep
DEV_DEFAULT_LEAKS: Final = 1 << 4  # M20: the dispatcher's "default:" returns inside the lock


class C(IntEnum):
    """Counter indices in WorkerStats.counters."""

    MSGS = 0  # uffd messages read (all events)
    FAULTS = 1  # page-fault events
    CHILD_FAULTS = 2  # of which on a forked child's userfaultfd context
    INSTALL_PTE = 3  # UFFDIO_CONTINUE of one 4K unit
    INSTALL_PMD = 4  # ... of one 2M unit
    INSTALL_PUD = 5  # ... of one 1G unit
    SIGBUS = 6  # faults ended in UFFDIO_POISON (the toucher gets SIGBUS / EFAULT)
    SIGBUS_DEAD = 7  # ... because alive was false (check_vma step 1)
    SIGBUS_VMA = 8  # ... because check_vma failed otherwise
    SIGBUS_FAULT = 9  # ... size negotiation, vma bounds or pgoff_to_phys
    SIGBUS_NO_VMA = 10  # ... the address is in no registered vma
    FALLBACK = 11  # VM_FAULT_FALLBACK steps during size negotiation
    EEXIST = 12  # entry already present (a racing fault installed it): woken, not installed
    EAGAIN = 13  # mm changing (fork/remap in flight): retried
    ENOENT = 14  # vma vanished under the fault (munmap raced): woken
    FORK_EVENTS = 15  # UFFD_EVENT_FORK: a new child context adopted
    CHILD_CTX_CLOSED = 16
    ERRORS = 17  # unexpected errno from an ioctl
    SLEEP_IN_ATOMIC = 18  # an install (may allocate a page table: may sleep) inside a non-sleepable section
    LOCK_HELD_RETURN = 19  # a fault returned to user space holding more read locks than it entered with
    NCOUNTERS = 32


class RangeDesc(ctypes.Structure):
    """geometry.Range: [start, end] inclusive in backing-file offsets, and the device pgoff it starts at."""

    _fields_ = (("start", U64), ("end", U64), ("pgoff", U64))


class DeviceDesc(ctypes.Structure):
    _fields_ = (
        ("used", U64),
        ("alive", U64),
        ("align", U64),
        ("nranges", U64),
        ("gen", U64),
        ("rules", U64),  # DEV_* bits
        ("ranges", RangeDesc * MAX_RANGES),
        ("page", U64),  # the page size of the device's memory (4K, or its hugetlb size): the
        # smallest range one CONTINUE or POISON may cover on its vmas (handler._fill)
    )


class VmaDesc(ctypes.Structure):
    _fields_ = (
        ("used", U64),
        ("start", U64),
        ("end", U64),
        ("pgoff", U64),
        ("dev", U64),
        ("align", U64),
        ("flags", U64),
        ("_pad", U64),
    )


class WorkerStats(ctypes.Structure):
    _fields_ = (
        ("counters", U64 * C.NCOUNTERS),
        ("dev_installs", U64 * MAX_DEVICES),
        ("dev_sigbus", U64 * MAX_DEVICES),
        ("busy", U64),  # 1 while the worker services a fault (set before its read lock, cleared
        # after its unlock): DaxBus.read_nesting waits for 0
        ("mm_addr", U64),  # the emulated mmap_lock read side: the fault's page address | 1 from
        # before its vma lookup to after its install/poison (0: none); the
        # main process's munmap waits for those in its range (MappingCore._mm_write)
        ("lat_idx", U64),
        ("lat_ns", U64 * LAT_RING),  # message read -> decision made (handler CPU time, mostly)
        ("ioctl_ns", U64 * LAT_RING),  # the CONTINUE/POISON ioctl(s), including any preemption
        # by the toucher it wakes (so: wall time, not service cost)
    )


class Header(ctypes.Structure):
    _fields_ = (
        ("magic", U64),
        ("nworkers", U64),
        ("handler_pid", U64),
        ("ready", U64),
        ("policy_arg", U64),  # a knob for alternative policies (slow_policy: delay in microseconds)
        ("mm_first", U64),  # 0: the mm asks the largest size whose block fits the vma; else this size
        ("_pad", U64 * 2),
    )


SRCU_SIZE: Final = (srcu.shared_size(MAX_WORKERS) + 63) & ~63


class Layout(ctypes.Structure):
    _fields_ = (
        ("hdr", Header),
        ("devices", DeviceDesc * MAX_DEVICES),
        ("vmas", VmaDesc * MAX_VMAS),
        ("workers", WorkerStats * MAX_WORKERS),
        ("srcu", ctypes.c_uint8 * SRCU_SIZE),
        ("trace", TraceArea),  # tracelog.py: the global order of linearization points (tests)
        # per 1G slot of the mm, 1 while a pmd table fills its PUD entry (spec/fault.py
        # leaves_pmd_table): a byte each, so that workers set them with plain stores
        ("pmd_tables", ctypes.c_uint8 * PUD_SLOTS),
    )


TABLE_SIZE: Final = (ctypes.sizeof(Layout) + 4095) & ~4095


class SharedTable:
    """A view of the table at ``addr``; ``init=True`` only in the creating (main) process."""

    def __init__(self, addr: int, *, init: bool = False) -> None:
        self.addr = addr
        self.t = Layout.from_address(addr)
        srcu_addr = addr + Layout.srcu.offset
        if init:
            ctypes.memset(addr, 0, ctypes.sizeof(Layout))
            self.t.hdr.magic = MAGIC
        elif self.t.hdr.magic != MAGIC:
            raise ValueError("shared table: bad magic (not created by MappingCore?)")
        self.srcu = srcu.Srcu(srcu_addr, MAX_WORKERS, init=init)
        self.trace = TraceLog(addr + Layout.trace.offset)

    def mm_busy(self, lo: int, hi: int) -> list[int]:
        """Workers holding the emulated mmap_lock for a fault at an address in [lo, hi)."""
        out = []
        for w in range(MAX_WORKERS):
            a = int(self.t.workers[w].mm_addr)
            if a and lo <= a & ~1 < hi:
                out.append(w)
        return out

    def pmd_table(self, addr: int) -> bool:
        """Whether a pmd table fills the PUD entry of addr's 1G slot (the mm's page tables, not one
        vma's: every vma in the slot shares it)."""
        slot = addr >> PUD_SHIFT
        return slot < PUD_SLOTS and bool(self.t.pmd_tables[slot])

    def leave_pmd_table(self, addr: int) -> None:
        """pmd_alloc() of a fault below PUD size (handler side): the table stays until munmap."""
        slot = addr >> PUD_SHIFT
        if slot < PUD_SLOTS:
            self.t.pmd_tables[slot] = 1

    def free_pgtables(self, lo: int, hi: int) -> None:
        """munmap of [lo, hi) (main side, the vma already retired): free_pgtables frees the pmd table
        of a 1G slot only when no vma is left in it (its floor and ceiling are the neighbouring vmas)."""
        first, last = lo >> PUD_SHIFT, min((hi - 1) >> PUD_SHIFT, PUD_SLOTS - 1)
        if hi <= lo or first > last or not any(self.t.pmd_tables[first : last + 1]):
            return
        vmas = [(int(v.start), int(v.end)) for v in self.t.vmas if v.used]
        for slot in range(first, last + 1):
            base = slot << PUD_SHIFT
            if not any(s < base + (1 << PUD_SHIFT) and base < e for s, e in vmas):
                self.t.pmd_tables[slot] = 0

    def counters(self) -> dict[str, int]:
        """Counter name -> sum over workers."""
        out: dict[str, int] = {}
        for c in C:
            if c is C.NCOUNTERS:
                continue
            out[c.name.lower()] = sum(int(w.counters[c]) for w in self.t.workers)
        return out

    def device_counts(self, dev: int) -> tuple[int, int]:
        """(installs, sigbus) for one device, over all workers."""
        return (
            sum(int(w.dev_installs[dev]) for w in self.t.workers),
            sum(int(w.dev_sigbus[dev]) for w in self.t.workers),
        )

    def latencies_ns(self, which: str = "decide") -> list[int]:
        """Recent per-fault times: "decide" (message read -> decision, inside the read section) or
        "ioctl" (the install/poison ioctl, wall time: it wakes the toucher, which may preempt us)."""
        out: list[int] = []
        for w in self.t.workers:
            n = min(int(w.lat_idx), LAT_RING)
            ring = w.lat_ns if which == "decide" else w.ioctl_ns
            out.extend(int(ring[i]) for i in range(n))
        return out

    def reset_stats(self) -> None:
        """Zero the counters (benchmarks). Racy against a busy handler by design: call it when idle."""
        for w in self.t.workers:
            ctypes.memset(ctypes.addressof(w), 0, ctypes.sizeof(WorkerStats))
