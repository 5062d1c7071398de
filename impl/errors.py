"""How the device layer fails: the kernel's answer, the caller's mistake, or the kernel's own bug.

``OSError(errno)`` is what a syscall returns; ``ValueError`` names the argument the caller got
wrong, so a test tells API misuse from a kernel answer; ``KernelBug`` (impl/kobject.py) is where the
kernel itself would oops or WARN. Arguments are checked before any lock is taken or anything is
created, so a bad one leaves nothing behind (issue 14, class 5).
"""

from __future__ import annotations

import os

from .kobject import KernelBug


def check_int(field: str, v: object, lo: int = 0, hi: int | None = None) -> int:
    """A non-bool int within [lo, hi]; anything else is the caller's mistake: ValueError naming it."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{field}: expected an int, got {type(v).__name__}")
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{field}: {v} outside [{lo}, {hi if hi is not None else 'inf'}]")
    return v


def os_error(code: int, what: str) -> OSError:
    """The errno the spec's outcome names, with what was refused (strerror alone hides the step)."""
    return OSError(code, f"{os.strerror(code)}: {what}")


class StepFailed(Exception):
    """A step left its program (spec/admin.py Goto): run ``prog`` for the device, or skip it."""

    def __init__(self, code: int, prog: str) -> None:
        super().__init__(os.strerror(code))
        self.code = code
        self.prog = prog


__all__ = ["KernelBug", "StepFailed", "check_int", "os_error"]
