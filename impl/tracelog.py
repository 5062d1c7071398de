"""One total order of linearization points across the main process and the fault-handler process.

Why: trace validation (tests/refinement/trace.py) accepts a concurrent run only if its log is a path
of the spec, and the fault steps happen in the handler process while the admin steps happen in the
main process. Timestamps cannot order them: a handler that logs "read alive = 1" a little after the
read could be placed after the main process's "alive = 0" although the read came first. So every
linearization point is *done* inside one critical section shared by both processes: a process-shared
pthread mutex in the shared table. Under it the operation happens (the store of ``alive``, the read
of ``alive`` and the decision, the UFFDIO_CONTINUE, the SRCU slot store, the phase flip) and takes
the next number of one global sequence counter. The order of the numbers is then the order in which
the operations took effect.

The main process keeps its events as Python objects (impl/event.py ``Event``, with the number); the
handler writes fixed-size records into a ring in shared memory (slot ``seq % RING``), which the test
drains after a run. Off (``on == 0``, the default) nothing takes the mutex and nothing is recorded.

An optional *scheduler* (``sched``) makes runs reproducible: before each traced section a thread
announces itself in its gate and waits until the scheduler (a thread of the test) opens that gate;
see tests/refinement/scheduler.py ``Scheduler``. Gates live here, in shared memory, because handler
workers wait at them too.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
import time
from collections.abc import Iterator
from typing import Final

U64 = ctypes.c_uint64

RING: Final = 8192
GATES: Final = 16  # gate 0..7: handler workers (by wid); 8..15: threads of the main process
MAIN_GATE0: Final = 8

# record kinds written by the handler (and srcu's flip); the main process's kinds are Event.kind names
LOCK, CHECK, INSERT, POISON, UNLOCK, GP_FLIP, GP_DONE = 1, 2, 3, 4, 5, 6, 7
KIND_NAMES: Final = {
    LOCK: "read_lock",
    CHECK: "check",
    INSERT: "insert",
    POISON: "poison",
    UNLOCK: "read_unlock",
    GP_FLIP: "gp_flip",
    GP_DONE: "gp_done",
}

#: Decision.reason values, by their index in a CHECK record (b = size << 8 | reason << 1 | install)
REASONS: Final = ("ok", "dead", "check_vma", "fault", "no_vma")
UNKNOWN_REASON: Final = 0x7F


def reason_code(reason: str) -> int:
    """A reason's index in REASONS (UNKNOWN_REASON for one added since: still logged, shown as ?)."""
    return REASONS.index(reason) if reason in REASONS else UNKNOWN_REASON


_PTHREAD_PROCESS_SHARED: Final = 1
_MUTEX_BYTES: Final = 64  # sizeof(pthread_mutex_t) is 40 on x86_64 glibc; room to spare


class TraceRec(ctypes.Structure):
    """One handler-side linearization point: ``seq`` (the global number; a slot whose seq does not
    match the one looked for was overwritten or never written), the kind, the worker (spec CPU), the
    faulting thread, the fault address, the vma table index and two kind-specific values."""

    _fields_ = (
        ("seq", U64),
        ("kind", U64),
        ("wid", U64),
        ("ptid", U64),
        ("addr", U64),
        ("vma", U64),
        ("a", U64),
        ("b", U64),
    )


class Gate(ctypes.Structure):
    """A waiting point of the scheduler: ``waiting`` = the announced next kind (0: not waiting),
    ``go`` = set by the scheduler to let exactly this thread through once, ``tid`` = the waiting
    thread, ``ptid`` = the thread a handler worker's fault is for, ``passes`` = times let through."""

    _fields_ = (
        ("waiting", U64),
        ("go", U64),
        ("tid", U64),
        ("ptid", U64),
        ("passes", U64),
        ("_pad", U64 * 3),
    )


class TraceArea(ctypes.Structure):
    _fields_ = (
        ("on", U64),
        ("seq", U64),
        ("sched", U64),
        ("inited", U64),
        ("_pad", U64 * 4),
        ("mutex", ctypes.c_uint8 * _MUTEX_BYTES),
        ("gates", Gate * GATES),
        ("ring", TraceRec * RING),
    )


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_attr_t = ctypes.c_uint8 * 16


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(rc, f"{what} failed")


class TraceLog:
    """The shared trace area at ``addr`` as seen by one process (both processes build one)."""

    def __init__(self, addr: int) -> None:
        self.addr = addr
        self.area = TraceArea.from_address(addr)
        self._mutex = ctypes.c_void_p(addr + TraceArea.mutex.offset)
        self._local = threading.local()

    # --- switching on and off (main process, while no traced section runs) ---------------------------
    def enable(self) -> None:
        """Initialise the mutex (once) and start recording. Call while the handler is idle."""
        a = self.area
        if not a.inited:
            attr = _attr_t()
            _check(_libc.pthread_mutexattr_init(attr), "pthread_mutexattr_init")
            _check(_libc.pthread_mutexattr_setpshared(attr, _PTHREAD_PROCESS_SHARED), "setpshared")
            _check(_libc.pthread_mutex_init(self._mutex, attr), "pthread_mutex_init")
            a.inited = 1
        a.on = 1

    def disable(self) -> None:
        self.area.on = 0

    @property
    def on(self) -> bool:
        return bool(self.area.on)

    @property
    def scheduled(self) -> bool:
        """A scheduler drives the gates (tests/refinement/scheduler.py)."""
        return bool(self.area.sched)

    def now(self) -> int:
        """The next number to be given out (an unlocked read: a window bound, not an event)."""
        return int(self.area.seq)

    # --- the critical section ----------------------------------------------------------------------
    def set_gate(self, gate: int | None) -> None:
        """The scheduler gate of the calling thread (None: this thread is not scheduled)."""
        self._local.gate = gate

    @contextlib.contextmanager
    def section(self, kind: int = 0, ptid: int = 0) -> Iterator[None]:
        """Hold the global log lock (reentrant per thread). With a scheduler running, a thread that
        has a gate first waits there until the scheduler lets it through (outermost section only);
        ``ptid``: the thread a handler worker acts for (the scheduler orders waiters by it)."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self.gate(kind, ptid)
            _check(_libc.pthread_mutex_lock(self._mutex), "pthread_mutex_lock")
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                _check(_libc.pthread_mutex_unlock(self._mutex), "pthread_mutex_unlock")

    def take(self) -> int:
        """The next sequence number (inside a section)."""
        a = self.area
        seq = int(a.seq)
        a.seq = seq + 1
        return seq

    def emit(
        self,
        kind: int,
        wid: int = 0,
        ptid: int = 0,
        addr: int = 0,
        vma: int = 0,
        a: int = 0,
        b: int = 0,
        seq: int | None = None,
    ) -> int:
        """Record one handler-side point in the ring (inside a section); returns its number. ``seq``:
        a number taken earlier in the same section (an operation that wakes another thread -- the
        install ioctl -- takes its number first, so what the woken thread logs comes after it)."""
        seq = self.take() if seq is None else seq
        r = self.area.ring[seq % RING]
        m = 2**64 - 1
        r.kind, r.wid, r.ptid, r.addr, r.vma, r.a, r.b = kind, wid, ptid, addr, vma & m, a & m, b & m
        r.seq = seq
        return seq

    def records(self, lo: int, hi: int) -> list[TraceRec]:
        """The ring's records numbered in [lo, hi) (main-process numbers are not in the ring)."""
        if hi - lo > RING:
            raise ValueError(f"records: {hi - lo} numbers do not fit the ring of {RING}")
        out = []
        for seq in range(lo, hi):
            r = self.area.ring[seq % RING]
            if int(r.seq) == seq and r.kind:
                out.append(TraceRec.from_buffer_copy(r))
        return out

    # --- the scheduler's gates -------------------------------------------------------------------------
    def gate(self, kind: int = 0, ptid: int = 0) -> None:
        """With a scheduler running and a gate set for this thread: wait there for its go."""
        gate = getattr(self._local, "gate", None)
        if gate is not None and self.area.sched:
            self.wait_turn(gate, kind or 99, ptid)

    def wait_turn(self, gate: int, kind: int, ptid: int = 0) -> None:
        """Announce ``kind`` at ``gate`` and spin (sleeping) until the scheduler says go."""
        g = self.area.gates[gate]
        g.go = 0
        g.tid = threading.get_native_id()
        g.ptid = ptid
        g.waiting = kind
        delay = 1e-6
        while not g.go:
            if not self.area.sched:
                break
            time.sleep(delay)
            delay = min(delay * 2, 2e-4)
        g.waiting = 0
        g.go = 0
        g.passes += 1


__all__ = [
    "CHECK",
    "GATES",
    "GP_DONE",
    "GP_FLIP",
    "INSERT",
    "KIND_NAMES",
    "LOCK",
    "MAIN_GATE0",
    "POISON",
    "REASONS",
    "RING",
    "UNKNOWN_REASON",
    "UNLOCK",
    "TraceArea",
    "TraceLog",
    "TraceRec",
    "reason_code",
]
