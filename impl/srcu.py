"""A real read-side lock with grace periods, shared between processes: SRCU in user space.

Why not a mutex or a rwlock: the kernel's fault path runs under ``dax_read_lock()`` (SRCU; RCU before
4.12), whose readers never block the writer's *progress* except by being in a section, and whose
writer (``kill_dax`` -> ``synchronize_srcu``) waits only for sections that began before it. The
teardown argument in docs/semantics.md#teardown depends on exactly that, so the emulation needs the
same primitive, not something stronger.

Model: liburcu's "memb" flavour. Each reader (one per fault-handler thread, i.e. one per emulated CPU)
owns a 64-bit slot in shared memory and only ever does plain stores to it:

* ``read_lock``: if not nested, copy the global counter ``gp_ctr`` (count 1 plus the current phase
  bit) into the slot; if nested, increment the slot.
* ``read_unlock``: decrement the slot.

The writer's ``synchronize`` (called from the main process) issues ``membarrier``, waits until no
reader is active in the *other* phase, flips the phase bit, issues a full barrier, waits again until no
reader is active in the pre-flip phase, and issues ``membarrier`` again. A reader that enters after the
flip copies the new phase and is never waited for, so a steady stream of new readers cannot starve a
grace period. The ``membarrier`` calls are what make the readers' plain stores safe on x86 (TSO still
lets a reader's load of ``alive`` pass its own store to the slot): MEMBARRIER_CMD_GLOBAL_EXPEDITED
forces a full barrier on every CPU running a thread of a process that registered with
:func:`register_reader_process`; if the expedited command is unavailable we fall back to
MEMBARRIER_CMD_GLOBAL (a synchronize_rcu in the kernel: slower, same guarantee, no registration).
PRIVATE_EXPEDITED would be wrong here: it only reaches threads of the caller's own mm.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator
from typing import Final, Protocol

from . import sys as _sys

NEST_MASK: Final = 0xFFFF_FFFF
GP_COUNT: Final = 1
GP_PHASE: Final = 1 << 32
SLOT_STRIDE: Final = 8  # u64 words per slot: one cache line, so readers never share a line


class SrcuShared(ctypes.Structure):
    """Header of the shared SRCU area; ``slots`` follows, ``nslots * SLOT_STRIDE`` u64 words."""

    _fields_ = (("gp_ctr", ctypes.c_uint64), ("nslots", ctypes.c_uint64), ("_pad", ctypes.c_uint64 * 6))


class Tracer(Protocol):
    """What synchronize needs of impl/tracelog.TraceLog (kept structural: srcu imports nothing)."""

    @property
    def on(self) -> bool: ...

    @property
    def scheduled(self) -> bool: ...

    def section(self, kind: int = 0) -> contextlib.AbstractContextManager[None]: ...

    def emit(
        self, kind: int, wid: int = 0, ptid: int = 0, addr: int = 0, vma: int = 0, a: int = 0, b: int = 0
    ) -> int: ...


#: tracelog's record kinds for the writer's two points (kept equal to tracelog.GP_FLIP / GP_DONE)
TRACE_GP_FLIP: Final = 6
TRACE_GP_DONE: Final = 7


def shared_size(nslots: int) -> int:
    """Bytes the shared area needs for ``nslots`` readers."""
    return ctypes.sizeof(SrcuShared) + nslots * SLOT_STRIDE * 8


_expedited_lock = threading.Lock()
_expedited: bool | None = None


def _barrier_cmd() -> int:
    """GLOBAL_EXPEDITED when the kernel offers it (tens of microseconds), else GLOBAL (milliseconds)."""
    global _expedited
    with _expedited_lock:
        if _expedited is None:
            try:
                _expedited = bool(
                    _sys.membarrier(_sys.MEMBARRIER_CMD_QUERY) & _sys.MEMBARRIER_CMD_GLOBAL_EXPEDITED
                )
            except OSError:
                _expedited = False
        return _sys.MEMBARRIER_CMD_GLOBAL_EXPEDITED if _expedited else _sys.MEMBARRIER_CMD_GLOBAL


def register_reader_process() -> None:
    """Opt this process into GLOBAL_EXPEDITED barriers; every process that hosts readers must call it.

    Without it an expedited barrier would skip this process's CPUs and a reader's slot store could
    still be invisible when the writer scans. Harmless when only GLOBAL is available.
    """
    if _barrier_cmd() == _sys.MEMBARRIER_CMD_GLOBAL_EXPEDITED:
        _sys.membarrier(_sys.MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)


def memory_barrier() -> None:
    """smp_mb() for the writer *and* every registered reader CPU (the asymmetric fence's heavy side)."""
    _sys.membarrier(_barrier_cmd())


class Srcu:
    """One SRCU domain living at ``addr`` (shared memory mapped in every participating process).

    The same object type serves both sides; a process uses ``read_lock``/``read_unlock`` with the slot
    it owns, or ``synchronize``. Slots are owned by exactly one thread each, which is what lets the
    reader side be plain loads and stores with no atomic read-modify-write.
    """

    def __init__(self, addr: int, nslots: int, *, init: bool = False) -> None:
        self._hdr = SrcuShared.from_address(addr)
        slots_addr = addr + ctypes.sizeof(SrcuShared)
        self._slots = (ctypes.c_uint64 * (nslots * SLOT_STRIDE)).from_address(slots_addr)
        self.nslots = nslots
        self._writer = threading.Lock()
        self.grace_periods = 0
        #: set by trace validation: the phase flip and the end of the grace period become logged
        #: linearization points (the flip is done inside the log's critical section, so a reader's
        #: logged read_lock is either before it -- waited for -- or after it -- not waited for)
        self.tracer: Tracer | None = None
        if init:
            self._hdr.gp_ctr = GP_COUNT
            self._hdr.nslots = nslots
            for i in range(nslots):
                self._slots[i * SLOT_STRIDE] = 0
        elif self._hdr.nslots != nslots:
            raise ValueError(f"srcu: shared area has {self._hdr.nslots} slots, caller expects {nslots}")

    # --- read side ------------------------------------------------------------------------------
    def read_lock(self, slot: int) -> None:
        """Enter a read-side section on ``slot`` (nestable). Plain stores only."""
        i = slot * SLOT_STRIDE
        v = self._slots[i]
        if v & NEST_MASK == 0:
            self._slots[i] = self._hdr.gp_ctr
        else:
            self._slots[i] = v + 1

    def read_unlock(self, slot: int) -> None:
        i = slot * SLOT_STRIDE
        v = self._slots[i]
        if v & NEST_MASK == 0:
            raise RuntimeError(f"srcu: read_unlock on slot {slot} outside a read-side section")
        self._slots[i] = v - 1

    def nesting(self, slot: int) -> int:
        return int(self._slots[slot * SLOT_STRIDE] & NEST_MASK)

    def reset_readers(self) -> None:
        """Forget every reader: only for when all reader processes are known to be dead."""
        for s in range(self.nslots):
            self._slots[s * SLOT_STRIDE] = 0

    # --- write side -----------------------------------------------------------------------------
    def _old_readers(self) -> list[int]:
        """Slots active in a phase other than the current one (they began before the last flip)."""
        gp = self._hdr.gp_ctr
        out = []
        for s in range(self.nslots):
            v = self._slots[s * SLOT_STRIDE]
            if v & NEST_MASK and (v ^ gp) & GP_PHASE:
                out.append(s)
        return out

    def _wait(self, deadline: float | None) -> None:
        delay = 1e-6
        # under trace validation's scheduler a waiting writer must notice a reader's unlock well
        # inside the scheduler's settle time (it decides only when no thread can still move)
        cap = 5e-5 if self.tracer is not None and self.tracer.scheduled else 1e-3
        while self._old_readers():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"srcu: grace period blocked by reader slots {self._old_readers()}")
            time.sleep(delay)
            delay = min(delay * 2, cap)

    def synchronize(self, timeout: float | None = None) -> None:
        """Wait for every read-side section that began before this call to end.

        Sections that begin after the phase flip are not waited for; they are ordered after whatever
        the caller stored before calling (e.g. ``alive = 0``) and will see it. ``timeout`` turns a
        reader stuck in its section (the V4.10 ``default:`` path that never unlocks) into a
        TimeoutError instead of a hang; the domain stays usable.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        tr = self.tracer if self.tracer is not None and self.tracer.on else None
        with self._writer:
            memory_barrier()
            self._wait(deadline)  # readers still in the phase before the previous flip
            with self._traced(tr, TRACE_GP_FLIP):
                self._hdr.gp_ctr ^= GP_PHASE
            memory_barrier()
            self._wait(deadline)  # readers that entered before this flip
            memory_barrier()
            with self._traced(tr, TRACE_GP_DONE):
                self.grace_periods += 1

    @staticmethod
    @contextlib.contextmanager
    def _traced(tr: Tracer | None, kind: int) -> Iterator[None]:
        """Run the block as one logged point (or plainly when not tracing)."""
        if tr is None:
            yield
            return
        with tr.section(kind):
            yield
            tr.emit(kind)
