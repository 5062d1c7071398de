"""VmCore: MappingCore plus the vma operations a kernel mm offers and the core does not.

MappingCore (impl/core.py, another owner) maps one vma at an address it chooses and unmaps it whole.
The kernel's mm can also place a vma at a given address (MAP_FIXED, a hint), cut it in two
(__split_vma for munmap/mprotect/madvise on part of a vma), and grow or shrink it (mremap). Each
kernel vma of the device layer is one core Mapping here, so that the shared vma descriptor the handler
reads is always exactly the kernel vma (start, end, pgoff, flags): check_vma and the fault-size
negotiation see the real vm_start/vm_end, e.g. an mremap that leaves vm_end unaligned makes every
later fault SIGBUS as in the kernel (tests/scenarios/s17_mremap_grow_unaligned.json).

This module uses MappingCore internals (_lock, _dev, _maps, _request, _uffd, _hole_fd, _populate,
_free_vma_slot, _map_pieces, _record_vma): a wrapper, not an edit, as the ownership rules ask. The
public equivalents it would need in core.py are listed in impl/README-dax.md ("requests to the core
owner").
"""

from __future__ import annotations

import errno

from . import sys as dsys
from .core import PAGE, Mapping, MappingCore, Piece
from .fault_policy import VMA_NOHUGE
from .table import MAX_VMAS, VMA_MAYSHARE, VMA_SHARED, VMA_WRITE

POLICY = "devdax.impl.fault_policy:dax_vm_policy"


def clip_pieces(pieces: tuple[Piece, ...], length: int, page: int = PAGE, addr: int = 0) -> tuple[Piece, ...]:
    """MappingCore.pieces rounds the length up to whole units; a kernel vma may end inside a unit
    (after an unaligned mremap): cut the pieces at ``length``. Memory of ``page``-sized pages
    (hugetlbfs) can only be mapped in whole pages at page-aligned addresses (the pieces start at
    ``addr``), so what cannot be is left to the empty memfd: every fault of such a vma SIGBUSes
    anyway (check_vma: its vm_end is not aligned)."""
    out: list[Piece] = []
    for p in pieces:
        if p.offset >= length:
            break
        n = min(p.length, length - p.offset)
        # of a backed piece, its whole pages; none if it does not start on a page
        whole = n if p.phys is None else 0 if (addr + p.offset) % page else n - n % page
        if whole:
            out.append(Piece(p.offset, whole, p.phys))
        if whole < n:
            out.append(Piece(p.offset + whole, n - whole, None))
    return tuple(out)


def absent_runs(start: int, end: int, unit: int) -> list[tuple[int, int]]:
    """The runs of [start, end) made of units (``unit``-aligned blocks, clipped to the range) whose
    first page has no entry in our page tables (/proc/self/pagemap bit 63 clear): where a poison
    marker may be, and no installed entry is."""
    pages = (end - start + PAGE - 1) // PAGE
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        entries = memoryview(f.read(pages * 8)).cast("Q")
    runs: list[tuple[int, int]] = []
    at = start
    while at < end:
        nxt = min(end, (at // unit + 1) * unit)
        if not entries[(at - start) // PAGE] >> 63:
            if runs and runs[-1][1] == at:
                runs[-1] = (runs[-1][0], nxt)
            else:
                runs.append((at, nxt))
        at = nxt
    return runs


def reserve(length: int, align: int, hint: int = 0) -> int:
    """An address with ``length`` free bytes congruent to 0 mod ``align``, as a PROT_NONE reservation
    the caller must map over or munmap (the get_unmapped_area emulation of core.map_shared)."""
    res_len = length + align
    res = dsys.mmap(hint, res_len, dsys.PROT_NONE, dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS | dsys.MAP_NORESERVE)
    addr = (res + align - 1) & ~(align - 1)
    if addr > res:
        dsys.munmap(res, addr - res)
    if res + res_len > addr + length:
        dsys.munmap(addr + length, res + res_len - addr - length)
    return addr


def claim(addr: int, length: int) -> bool:
    """Reserve [addr, addr+length) PROT_NONE if it is entirely free (MAP_FIXED_NOREPLACE)."""
    try:
        got = dsys.mmap(
            addr,
            length,
            dsys.PROT_NONE,
            dsys.MAP_PRIVATE | dsys.MAP_ANONYMOUS | dsys.MAP_NORESERVE | dsys.MAP_FIXED_NOREPLACE,
        )
    except OSError as e:
        if e.errno == errno.EEXIST:
            return False
        raise
    if got != addr:  # kernels before 4.17 treat the flag as a hint
        dsys.munmap(got, length)
        return False
    return True


class VmCore(MappingCore):
    """The core with the device layer's fault policy and the kernel's vma surgery."""

    def __init__(self, workers: int = 2, *, timeout: float = 10.0) -> None:
        super().__init__(workers, POLICY, event_fork=True, timeout=timeout)

    # --- placement ---------------------------------------------------------------------------------
    def map_at(
        self, dev: int, addr: int, length: int, pgoff: int, prot: int, file_writable: bool, vflags: int = 0
    ) -> Mapping:
        """Map ``length`` bytes of ``dev`` from page ``pgoff`` at ``addr``, MAP_FIXED over memory the
        caller owns (a reservation from reserve()/claim(), or a vma it just took down). No alignment
        check: that is check_vma's job in the layer above (mmap) and in the fault policy (faults)."""
        with self._lock:
            d = self._dev(dev)
            if self.broken:
                raise OSError(errno.EIO, "the fault handler process died; no new mappings")
            if length <= 0 or length % PAGE or addr % PAGE or pgoff < 0:
                raise OSError(errno.EINVAL, f"map_at: addr {addr:#x} length {length:#x} pgoff {pgoff}")
            idx = self._free_vma_slot()
            pieces = clip_pieces(self.pieces(d.ranges, pgoff, length, d.align), length, d.backing.page, addr)
            try:
                self._map_pieces(d, addr, pieces, prot)
            except BaseException:
                dsys.munmap(addr, length)
                raise
            flags = (
                VMA_MAYSHARE
                | (VMA_SHARED if file_writable else 0)
                | (VMA_WRITE if prot & dsys.PROT_WRITE else 0)
                | vflags
            )
            v = self._record_vma(idx, addr, length, pgoff, dev, d.align, flags)
            m = Mapping(addr, length, pgoff, dev, d.align, prot, idx, pieces, "uffd")
            self._register_vma(m, v, self._populate, forget_when_broken=False)
            d.maps.append(m)
            self._maps.add(m)
            return m

    # --- surgery -----------------------------------------------------------------------------------
    def split(self, m: Mapping, cut: int) -> Mapping:
        """__split_vma at ``cut`` (strictly inside m): m keeps the head, the returned Mapping is the
        tail. The memory and its registration stay as they are; only the descriptors change, the
        tail's first so that a concurrent fault always finds a descriptor that covers it."""
        with self._lock:
            self._live(m)
            if not m.addr < cut < m.end or cut % PAGE:
                raise ValueError(f"split at {cut:#x} outside ({m.addr:#x}, {m.end:#x}) or unaligned")
            free = [i for i in range(MAX_VMAS) if not self.table.t.vmas[i].used]
            if not free:
                raise OSError(errno.ENOMEM, "no free vma slot")
            off = cut - m.addr
            head: list[Piece] = []
            tail: list[Piece] = []
            for p in m.pieces:
                if p.offset + p.length <= off:
                    head.append(p)
                elif p.offset >= off:
                    tail.append(Piece(p.offset - off, p.length, p.phys))
                else:
                    k = off - p.offset
                    head.append(Piece(p.offset, k, p.phys))
                    tail.append(Piece(0, p.length - k, None if p.phys is None else p.phys + k))
            old = self.table.t.vmas[m.vma_idx]
            idx = free[0]
            v = self.table.t.vmas[idx]
            v.start, v.end, v.pgoff, v.dev, v.align = cut, m.end, m.pgoff + off // PAGE, m.dev, m.align
            v.flags = old.flags
            v.used = 1
            self._request(b"ADD")
            t = Mapping(
                cut,
                m.length - off,
                m.pgoff + off // PAGE,
                m.dev,
                m.align,
                m.prot,
                idx,
                tuple(tail),
                m.mode,
                m.revoked,
            )
            m.length = off
            m.pieces = tuple(head)
            old.end = cut
            self._request(b"ADD")
            self._devices[m.dev].maps.append(t)
            self._maps.add(t)
            return t

    def set_prot(self, m: Mapping, prot: int) -> None:
        """mprotect of a whole vma (the caller split first)."""
        with self._lock:
            self._live(m)
            dsys.mprotect(m.addr, m.length, prot)
            m.prot = prot
            v = self.table.t.vmas[m.vma_idx]
            v.flags = (int(v.flags) & ~VMA_WRITE) | (VMA_WRITE if prot & dsys.PROT_WRITE else 0)

    def set_flags(self, m: Mapping, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Flags the fault policy reads (VMA_NOHUGE). Clearing NOHUGE zaps the vma: poison markers a
        PTE-size fault left must not answer the next (now huge) fault."""
        with self._lock:
            self._live(m)
            v = self.table.t.vmas[m.vma_idx]
            before = int(v.flags)
            v.flags = (before | set_bits) & ~clear_bits
            if before & VMA_NOHUGE and not int(v.flags) & VMA_NOHUGE:
                self._zap(m)

    def flags(self, m: Mapping) -> int:
        return int(self.table.t.vmas[m.vma_idx].flags)

    def grow(self, m: Mapping, new_length: int) -> bool:
        """mremap growing m in place: False if the address range after it is not free. The new end
        may be misaligned; the descriptor says so and every later fault of the vma SIGBUSes, while
        the entries installed before stay (vma_merge keeps the page tables: k34 step 15)."""
        with self._lock:
            self._live(m)
            extra = new_length - m.length
            if extra <= 0 or new_length % PAGE:
                raise ValueError(f"grow from {m.length:#x} to {new_length:#x}")
            if not claim(m.end, extra):
                return False
            d = self._dev(m.dev)
            pgoff = m.pgoff + m.length // PAGE
            add = clip_pieces(self.pieces(d.ranges, pgoff, extra, d.align), extra, d.backing.page, m.end)
            try:
                for p in add:
                    fd = d.backing.raw_fd if p.phys is not None else self._hole_fd
                    dsys.mmap(
                        m.end + p.offset, p.length, m.prot, dsys.MAP_SHARED | dsys.MAP_FIXED, fd, p.phys or 0
                    )
                if m.mode == "uffd":
                    dsys.uffd_register(self._uffd, m.end, extra, dsys.UFFDIO_REGISTER_MODE_MINOR)
            except BaseException:
                dsys.munmap(m.end, extra)
                raise
            old_end = m.end
            m.pieces = m.pieces + tuple(Piece(p.offset + m.length, p.length, p.phys) for p in add)
            m.length = new_length

            def op() -> None:
                # vma_merge keeps the entries the vma has; SIGBUS decisions may change with
                # vm_end (check_vma), so poison markers, which only cache them, must go
                self.table.t.vmas[m.vma_idx].end = m.addr + new_length
                if m.mode == "uffd":
                    for lo, hi in absent_runs(m.addr, old_end, max(m.align, PAGE)):
                        dsys.madvise(lo, hi - lo, dsys.MADV_DONTNEED)

            self._mm_write(m.addr, m.end, op)  # mremap holds mmap_lock for write
            self._request(b"ADD")
            if m.mode == "prefault":
                self._zap(m)
                self._populate(m)
            return True

    def live(self, m: Mapping) -> bool:
        return not m.closed and m in self._maps
