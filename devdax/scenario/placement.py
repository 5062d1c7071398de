"""Where a runner puts a scenario's fixed mappings (``fixed_offset``, docs/scenario-format.md).

The spec places them at FIXED_BASE (spec/config.py) in an mm that holds nothing but the scenario's
own mappings, so a fixed mapping always has free address space after it: mremap grows it in place
(spec/mm.py mremap_path, vma_expandable). A runner's base must keep that promise. Reserving just the
span a step needs does not: the top-down allocator puts the reservation right under the lowest
mapping, and the next thing above may be a thread stack, so a later mremap cannot grow in place and
moves the mapping instead, where the spec grew it (seen with impl: the move then decided the
placement luck of a later mmap, ok against the spec's EINVAL). So the base sits at the bottom of a
reservation with MM_ROOM bytes of free address space on top, released before the step maps there:
later top-down allocations take higher gaps first, or the top of this one.
"""

from __future__ import annotations

from devdax.impl import sys as dsys
from devdax.spec.config import MM_ROOM


def fixed_base(span: int, align: int) -> int:
    """An ``align``-aligned address with ``span`` + MM_ROOM free bytes after it (reserved, released)."""
    length = span + MM_ROOM + align
    res = dsys.mmap(0, length, dsys.PROT_NONE, dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS | dsys.MAP_NORESERVE)
    dsys.munmap(res, length)
    return (res + align - 1) & ~(align - 1)
