"""The event log's record: one linearization point of the emulation (trace validation reads it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One linearization point: ``kind`` (step, alive_clear, gp_start, gp_end, unmap, get, put,
    release, open, close, mmap, munmap, fault_lock, alive_check, insert, unlock), the object it
    happened to (``dax0.0``, ``region0``, ``file3``...) and a detail (step outcome, refcount...)."""

    kind: str
    obj: str
    detail: str = ""
    seq: int = -1  # the number in the global order shared with the handler (tracing on; tracelog.py)
