"""struct ida: lowest-free integer ids, with an optional limit (lib/idr.c ida_alloc_range).

ida_alloc() returns the lowest free id >= min; ida_alloc_max(ida, max) fails with -ENOMEM once every
id in [0, max] is taken (the kernel returns -ENOSPC from the radix tree and ida_alloc_* turn it into
-ENOMEM for callers like alloc_dax). The emulation keeps the free ids in a heap so an allocation is
O(log n) however many were freed.
"""

from __future__ import annotations

import errno
import heapq
import threading

import icontract

from . import contracts


@icontract.invariant(lambda self: all(i >= 0 for i in self._used), enabled=contracts.ENABLED)
class Ida:
    """Ids in [0, limit) (limit None: unbounded, like v4.10's ida_simple_get(&ida, 0, 0)).

    The limit is the bound the owner passes to ida_alloc_max; the ida itself has none, so an owner
    that forgets the bound (variant M19: V410/V411 ``ida_simple_get(&dax_minor_ida, 0, 0, ...)``
    while only ``nr_dax`` minors were reserved) allocates past it with ``alloc(bounded=False)``.
    """

    def __init__(self, name: str, limit: int | None = None) -> None:
        if limit is not None and limit <= 0:
            raise ValueError(f"ida {name}: limit must be positive, got {limit}")
        self.name = name
        self.limit = limit
        self._used: set[int] = set()
        self._free: list[int] = []  # freed ids below _next, as a heap
        self._next = 0  # every id >= _next is free
        self._lock = threading.Lock()

    @icontract.ensure(lambda self, result: result in self._used, enabled=contracts.ENABLED)
    @icontract.ensure(
        lambda self, bounded, result: not bounded or self.limit is None or result < self.limit,
        enabled=contracts.ENABLED,
    )
    def alloc(self, bounded: bool = True) -> int:
        """ida_alloc_max(ida, limit - 1): the lowest free id; OSError(ENOMEM) when the limit is reached.
        ``bounded=False``: ida_alloc() without the owner's bound (M19)."""
        with self._lock:
            while self._free:
                if bounded and self.limit is not None and self._free[0] >= self.limit:
                    break  # only ids an unbounded alloc handed out are free above
                i = heapq.heappop(self._free)
                if i not in self._used and i < self._next:
                    self._used.add(i)
                    return i
            if bounded and self.limit is not None and self._next >= self.limit:
                raise OSError(errno.ENOMEM, f"{self.name}: all {self.limit} ids are in use")
            i = self._next
            self._next += 1
            self._used.add(i)
            return i

    @icontract.ensure(lambda self, i: i not in self._used, enabled=contracts.ENABLED)
    def free(self, i: int) -> None:
        """ida_free(): returning an id that is not allocated is a kernel WARN ("ida_free called for
        id=%d which is not allocated")."""
        from .kobject import KernelBug

        with self._lock:
            if i not in self._used:
                raise KernelBug(f"ida_free called for id={i} which is not allocated ({self.name})")
            self._used.discard(i)
            heapq.heappush(self._free, i)

    def __contains__(self, i: object) -> bool:
        return i in self._used

    @property
    def used(self) -> frozenset[int]:
        return frozenset(self._used)
