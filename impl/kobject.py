"""Reference counts with release callbacks: struct kref and the kobject refcount, as real counters.

Why real objects (not the spec's integers): the emulation must show that a release runs exactly on
the last put, in the process that drops it, and that the chain file -> cdev -> device -> {region,
inode -> minor} unwinds in one call stack the way kobject_put() does (lib/kobject.c kobject_release,
lib/kref.c kref_put). A put on a count that is already zero is what refcount_t reports as
"refcount_t: underflow; use-after-free." (lib/refcount.c refcount_warn_saturate): here it raises
KernelBug instead of corrupting anything, so a test sees the exact faulty put.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import icontract

from . import contracts

Release = Callable[[], None]


class KernelBug(Exception):
    """What the kernel would oops or WARN on: refcount underflow, use after free, a double release.

    The emulation raises it instead of continuing in a state the kernel could never be in; tests that
    provoke a kernel bug on purpose assert it.
    """


@icontract.invariant(lambda self: self.count >= 0, enabled=contracts.ENABLED)
class Kref:
    """struct kref: kref_init (count 1), kref_get, kref_put with a release on the last put.

    The release runs synchronously, outside the counter lock (the kernel calls it from the putter's
    context), exactly once. A get after release is a use after free (kref_get on a zero count WARNs:
    "refcount_t: addition on 0; use-after-free").
    """

    def __init__(self, name: str, release: Release | None = None, count: int = 1) -> None:
        if count < 0:
            raise ValueError(f"kref {name}: initial count {count} < 0")
        self.name = name
        self._release = release
        self._count = count
        self._lock = threading.Lock()
        self.released = False

    @property
    def count(self) -> int:
        return self._count

    def get(self) -> None:
        """kref_get(): refuses a count of zero (the object may already be freed)."""
        with self._lock:
            if self._count <= 0 or self.released:
                raise KernelBug(f"refcount_t: addition on 0; use-after-free ({self.name})")
            self._count += 1

    def get_unless_zero(self) -> bool:
        """kref_get_unless_zero() / kobject_get_unless_zero(): chrdev_open uses it on a cached i_cdev."""
        with self._lock:
            if self._count <= 0 or self.released:
                return False
            self._count += 1
            return True

    def put(self) -> bool:
        """kref_put(): True when this put released the object (the release callback has run)."""
        with self._lock:
            if self._count <= 0 or self.released:
                raise KernelBug(f"refcount_t: underflow; use-after-free ({self.name})")
            self._count -= 1
            last = self._count == 0
            if last:
                self.released = True
        if last and self._release is not None:
            self._release()
        return last

    def reinit(self) -> None:
        """kref_init() on a live object: what cdev_init() does to the embedded cdev kobject on every
        modern bind (the spec's finding refcount_exact_all); only the caller knows it is legal."""
        with self._lock:
            self._count = 1
            self.released = False

    def __repr__(self) -> str:
        return f"Kref({self.name}, {self._count}{', released' if self.released else ''})"


class Kobject(Kref):
    """A kobject: a kref plus a parent that it pins from kobject_add (here: from the moment the
    caller says so) until its own release, which then puts the parent (kobject_cleanup ->
    kobject_put(parent)); the embedded cdev kobject pins its struct device this way (2f0157f)."""

    def __init__(
        self, name: str, release: Release | None = None, parent: Kref | None = None, count: int = 1
    ) -> None:
        super().__init__(name, None, count)
        self._own_release = release
        self.parent: Kref | None = parent
        self.parent_pinned = False
        self._release = self._cleanup

    def pin_parent(self) -> None:
        """cdev_add(): kobject_get(p->kobj.parent)."""
        if self.parent is None:
            raise KernelBug(f"{self.name}: no parent to pin")
        self.parent.get()
        self.parent_pinned = True

    def _cleanup(self) -> None:
        if self._own_release is not None:
            self._own_release()
        if self.parent_pinned and self.parent is not None:
            self.parent_pinned = False
            self.parent.put()
