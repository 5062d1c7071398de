"""Thin ctypes bindings to the Linux syscalls the mmap core needs (x86_64 only).

Why ctypes and not the ``mmap`` module: device-dax semantics need things ``mmap.mmap`` hides or cannot
do -- a raw integer address, MAP_FIXED placement (get_unmapped_area congruence), madvise on part of a
mapping, userfaultfd ioctls, and touching memory through ``process_vm_readv`` so that a fault that
ends in SIGBUS becomes an ``EFAULT`` instead of killing the interpreter.

Every wrapper raises ``OSError(errno, strerror)`` on failure and never returns -1, so callers cannot
forget to check. Syscall numbers and ioctl encodings are for x86_64; :data:`ARCH_OK` says whether
this machine is one (import works elsewhere, calls would be wrong).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
from typing import Final

ARCH_OK: Final[bool] = platform.machine() == "x86_64"

_libc = ctypes.CDLL(None, use_errno=True)

PAGE_SIZE: Final[int] = os.sysconf("SC_PAGE_SIZE")
PMD_SIZE: Final[int] = 2 << 20
PUD_SIZE: Final[int] = 1 << 30

# --- mmap / mprotect ---------------------------------------------------------------------------
PROT_NONE: Final = 0x0
PROT_READ: Final = 0x1
PROT_WRITE: Final = 0x2
PROT_EXEC: Final = 0x4

MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_SHARED_VALIDATE: Final = 0x03
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20
MAP_NORESERVE: Final = 0x4000
MAP_POPULATE: Final = 0x8000
MAP_FIXED_NOREPLACE: Final = 0x100000
MAP_SYNC: Final = 0x80000

MREMAP_MAYMOVE: Final = 1
MREMAP_FIXED: Final = 2
MREMAP_DONTUNMAP: Final = 4

# --- madvise -----------------------------------------------------------------------------------
MADV_NORMAL: Final = 0
MADV_WILLNEED: Final = 3
MADV_DONTNEED: Final = 4
MADV_REMOVE: Final = 9
MADV_DONTFORK: Final = 10
MADV_DOFORK: Final = 11
MADV_HUGEPAGE: Final = 14
MADV_NOHUGEPAGE: Final = 15
MADV_POPULATE_READ: Final = 22
MADV_POPULATE_WRITE: Final = 23

# --- memfd / fallocate -------------------------------------------------------------------------
MFD_CLOEXEC: Final = 0x0001
MFD_ALLOW_SEALING: Final = 0x0002
MFD_HUGETLB: Final = 0x0004
MFD_NOEXEC_SEAL: Final = 0x0008
# include/uapi/linux/memfd.h: with MFD_HUGETLB, log2 of the huge page size in bits 26..31
MFD_HUGE_SHIFT: Final = 26
MFD_HUGE_2MB: Final = 21 << MFD_HUGE_SHIFT
MFD_HUGE_1GB: Final = 30 << MFD_HUGE_SHIFT
HUGEPAGES_SYSFS: Final = "/sys/kernel/mm/hugepages"

FALLOC_FL_KEEP_SIZE: Final = 0x01
FALLOC_FL_PUNCH_HOLE: Final = 0x02

# --- membarrier --------------------------------------------------------------------------------
MEMBARRIER_CMD_QUERY: Final = 0
MEMBARRIER_CMD_GLOBAL: Final = 1 << 0
MEMBARRIER_CMD_GLOBAL_EXPEDITED: Final = 1 << 1
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: Final = 1 << 2
MEMBARRIER_CMD_PRIVATE_EXPEDITED: Final = 1 << 3
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: Final = 1 << 4

# --- x86_64 syscall numbers used through syscall(2) -----------------------------------------------
SYS_mremap: Final = 25
SYS_userfaultfd: Final = 323
SYS_membarrier: Final = 324

# --- userfaultfd (include/uapi/linux/userfaultfd.h) -------------------------------------------------
UFFD_API: Final = 0xAA
UFFD_USER_MODE_ONLY: Final = 1
O_CLOEXEC: Final = os.O_CLOEXEC
O_NONBLOCK: Final = os.O_NONBLOCK

UFFD_FEATURE_PAGEFAULT_FLAG_WP: Final = 1 << 0
UFFD_FEATURE_EVENT_FORK: Final = 1 << 1
UFFD_FEATURE_EVENT_REMAP: Final = 1 << 2
UFFD_FEATURE_EVENT_REMOVE: Final = 1 << 3
UFFD_FEATURE_MISSING_HUGETLBFS: Final = 1 << 4
UFFD_FEATURE_MISSING_SHMEM: Final = 1 << 5
UFFD_FEATURE_EVENT_UNMAP: Final = 1 << 6
UFFD_FEATURE_SIGBUS: Final = 1 << 7
UFFD_FEATURE_THREAD_ID: Final = 1 << 8
UFFD_FEATURE_MINOR_HUGETLBFS: Final = 1 << 9
UFFD_FEATURE_MINOR_SHMEM: Final = 1 << 10
UFFD_FEATURE_EXACT_ADDRESS: Final = 1 << 11
UFFD_FEATURE_WP_HUGETLBFS_SHMEM: Final = 1 << 12
UFFD_FEATURE_WP_UNPOPULATED: Final = 1 << 13
UFFD_FEATURE_POISON: Final = 1 << 14
UFFD_FEATURE_WP_ASYNC: Final = 1 << 15
UFFD_FEATURE_MOVE: Final = 1 << 16

UFFDIO_REGISTER_MODE_MISSING: Final = 1 << 0
UFFDIO_REGISTER_MODE_WP: Final = 1 << 1
UFFDIO_REGISTER_MODE_MINOR: Final = 1 << 2

UFFDIO_CONTINUE_MODE_DONTWAKE: Final = 1 << 0
UFFDIO_POISON_MODE_DONTWAKE: Final = 1 << 0

UFFD_EVENT_PAGEFAULT: Final = 0x12
UFFD_EVENT_FORK: Final = 0x13
UFFD_EVENT_REMAP: Final = 0x14
UFFD_EVENT_REMOVE: Final = 0x15
UFFD_EVENT_UNMAP: Final = 0x16

UFFD_PAGEFAULT_FLAG_WRITE: Final = 1 << 0
UFFD_PAGEFAULT_FLAG_WP: Final = 1 << 1
UFFD_PAGEFAULT_FLAG_MINOR: Final = 1 << 2


def _ioc(direction: int, typ: int, nr: int, size: int) -> int:
    """asm-generic _IOC encoding (x86_64 uses the generic layout)."""
    return (direction << 30) | (size << 16) | (typ << 8) | nr


_IOC_WRITE: Final = 1
_IOC_READ: Final = 2


class uffdio_api(ctypes.Structure):
    _fields_ = (("api", ctypes.c_uint64), ("features", ctypes.c_uint64), ("ioctls", ctypes.c_uint64))


class uffdio_range(ctypes.Structure):
    _fields_ = (("start", ctypes.c_uint64), ("len", ctypes.c_uint64))


class uffdio_register(ctypes.Structure):
    _fields_ = (("range", uffdio_range), ("mode", ctypes.c_uint64), ("ioctls", ctypes.c_uint64))


class uffdio_continue(ctypes.Structure):
    _fields_ = (("range", uffdio_range), ("mode", ctypes.c_uint64), ("mapped", ctypes.c_int64))


class uffdio_poison(ctypes.Structure):
    _fields_ = (("range", uffdio_range), ("mode", ctypes.c_uint64), ("updated", ctypes.c_int64))


class uffd_msg(ctypes.Structure):
    """``struct uffd_msg`` flattened: event, then the pagefault / fork arm of the union.

    ``arg0`` is pagefault.flags or fork.ufd (low 32 bits); ``arg1`` the fault address;
    ``arg2`` the ptid (UFFD_FEATURE_THREAD_ID) in its low 32 bits.
    """

    _fields_ = (
        ("event", ctypes.c_uint8),
        ("reserved1", ctypes.c_uint8),
        ("reserved2", ctypes.c_uint16),
        ("reserved3", ctypes.c_uint32),
        ("arg0", ctypes.c_uint64),
        ("arg1", ctypes.c_uint64),
        ("arg2", ctypes.c_uint64),
    )


UFFD_MSG_SIZE: Final[int] = ctypes.sizeof(uffd_msg)
assert UFFD_MSG_SIZE == 32

UFFDIO_API: Final = _ioc(_IOC_READ | _IOC_WRITE, UFFD_API, 0x3F, ctypes.sizeof(uffdio_api))
UFFDIO_REGISTER: Final = _ioc(_IOC_READ | _IOC_WRITE, UFFD_API, 0x00, ctypes.sizeof(uffdio_register))
UFFDIO_WAKE: Final = _ioc(_IOC_READ, UFFD_API, 0x02, ctypes.sizeof(uffdio_range))
UFFDIO_CONTINUE: Final = _ioc(_IOC_READ | _IOC_WRITE, UFFD_API, 0x07, ctypes.sizeof(uffdio_continue))
UFFDIO_POISON: Final = _ioc(_IOC_READ | _IOC_WRITE, UFFD_API, 0x08, ctypes.sizeof(uffdio_poison))
assert UFFDIO_API == 0xC018AA3F and UFFDIO_REGISTER == 0xC020AA00
assert UFFDIO_CONTINUE == 0xC020AA07 and UFFDIO_WAKE == 0x8010AA02


class iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


# --- prototypes ----------------------------------------------------------------------------------
_c_long = ctypes.c_long
_c_int = ctypes.c_int
_c_size = ctypes.c_size_t
_c_vp = ctypes.c_void_p

_libc.syscall.restype = _c_long
_libc.memfd_create.argtypes = (ctypes.c_char_p, ctypes.c_uint)
_libc.memfd_create.restype = _c_int
_libc.ftruncate.argtypes = (_c_int, ctypes.c_int64)
_libc.ftruncate.restype = _c_int
_libc.fallocate.argtypes = (_c_int, _c_int, ctypes.c_int64, ctypes.c_int64)
_libc.fallocate.restype = _c_int
_libc.mmap.argtypes = (_c_vp, _c_size, _c_int, _c_int, _c_int, ctypes.c_int64)
_libc.mmap.restype = _c_vp
_libc.munmap.argtypes = (_c_vp, _c_size)
_libc.munmap.restype = _c_int
_libc.mprotect.argtypes = (_c_vp, _c_size, _c_int)
_libc.mprotect.restype = _c_int
_libc.madvise.argtypes = (_c_vp, _c_size, _c_int)
_libc.madvise.restype = _c_int
_libc.ioctl.argtypes = (_c_int, ctypes.c_ulong, _c_vp)
_libc.ioctl.restype = _c_int
_libc.close.argtypes = (_c_int,)
_libc.close.restype = _c_int
_libc.process_vm_readv.argtypes = (_c_int, _c_vp, ctypes.c_ulong, _c_vp, ctypes.c_ulong, ctypes.c_ulong)
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_writev.argtypes = (_c_int, _c_vp, ctypes.c_ulong, _c_vp, ctypes.c_ulong, ctypes.c_ulong)
_libc.process_vm_writev.restype = ctypes.c_ssize_t

_MAP_FAILED: Final = ctypes.c_void_p(-1).value


def _raise(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _x86_64_only(what: str) -> None:
    """The raw syscall numbers below are x86_64's; on anything else refuse instead of calling a
    different syscall."""
    if not ARCH_OK:
        raise OSError(_errno.ENOSYS, f"{what}: devdax.impl.sys uses x86_64 syscall numbers")


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise _raise(what)
    return rc


def memfd_create(name: str, flags: int = MFD_CLOEXEC) -> int:
    """Anonymous shmem file: the default backing of a dax region (uffd minor mode works on shmem)."""
    return _check(_libc.memfd_create(name.encode(), flags), "memfd_create")


def memfd_hugetlb(name: str, page: int) -> int:
    """A memfd on the kernel's internal hugetlbfs mount with pages of ``page`` bytes (2M or 1G): what
    a 2M or 1G device's memory is where the pool has pages (core.MappingCore picks it)."""
    log2 = page.bit_length() - 1
    if page not in (PMD_SIZE, PUD_SIZE):
        raise ValueError(f"page: expected 2M or 1G, got {page:#x}")
    return memfd_create(name, MFD_CLOEXEC | MFD_HUGETLB | (log2 << MFD_HUGE_SHIFT))


def hugepages_free(page: int, root: str = HUGEPAGES_SYSFS) -> int:
    """Free pages of ``page`` bytes in the hugetlb pool (0 when the size or the sysfs file is absent).
    Only a hint: another process may take them before a fallocate does."""
    try:
        with open(f"{root}/hugepages-{page >> 10}kB/free_hugepages") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def kernel_page_size(addr: int, smaps: str = "/proc/self/smaps") -> int | None:
    """KernelPageSize of the vma holding ``addr`` in bytes, as /proc/self/smaps reports it (None: no
    vma). For a hugetlb vma it is the huge page size (hugetlb_vm_op_pagesize), for shmem 4K."""
    found = False
    with open(smaps) as f:
        for ln in f:
            if not found:
                head = ln.split(maxsplit=1)[0]
                if "-" in head and ":" not in head:
                    lo, hi = (int(x, 16) for x in head.split("-"))
                    found = lo <= addr < hi
            elif ln.startswith("KernelPageSize:"):
                return int(ln.split()[1]) << 10
    return None


def ftruncate(fd: int, length: int) -> None:
    _check(_libc.ftruncate(fd, length), "ftruncate")


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """Allocate (mode 0) puts pages in the page cache -- a precondition of UFFDIO_CONTINUE;
    PUNCH_HOLE|KEEP_SIZE removes them (a hole in device memory)."""
    _check(_libc.fallocate(fd, mode, offset, length), "fallocate")


def mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """mmap(2) returning the address as an int (0 is never returned)."""
    r = _libc.mmap(addr or None, length, prot, flags, fd, offset)
    if r is None or r == _MAP_FAILED:
        raise _raise("mmap")
    return int(r)


def munmap(addr: int, length: int) -> None:
    _check(_libc.munmap(addr, length), "munmap")


def mprotect(addr: int, length: int, prot: int) -> None:
    _check(_libc.mprotect(addr, length, prot), "mprotect")


def madvise(addr: int, length: int, advice: int) -> None:
    _check(_libc.madvise(addr, length, advice), "madvise")


def mremap(old_addr: int, old_size: int, new_size: int, flags: int = 0, new_addr: int = 0) -> int:
    """Raw syscall (glibc's mremap is variadic); returns the new address."""
    _x86_64_only("mremap")
    r = _libc.syscall(
        _c_long(SYS_mremap),
        _c_vp(old_addr),
        _c_size(old_size),
        _c_size(new_size),
        _c_long(flags),
        _c_vp(new_addr or None),
    )
    if r == -1:
        raise _raise("mremap")
    return int(r) & 0xFFFFFFFFFFFFFFFF


def userfaultfd(flags: int = O_CLOEXEC | O_NONBLOCK) -> int:
    """userfaultfd(2) (no glibc wrapper). As root this works although vm.unprivileged_userfaultfd=0."""
    _x86_64_only("userfaultfd")
    return _check(int(_libc.syscall(_c_long(SYS_userfaultfd), _c_int(flags))), "userfaultfd")


def membarrier(cmd: int, flags: int = 0, cpu_id: int = 0) -> int:
    """membarrier(2); see srcu.py for which command reaches which processes."""
    _x86_64_only("membarrier")
    return _check(
        int(_libc.syscall(_c_long(SYS_membarrier), _c_int(cmd), ctypes.c_uint(flags), _c_int(cpu_id))),
        "membarrier",
    )


def ioctl(fd: int, request: int, arg: ctypes.Structure | None) -> int:
    """ioctl with a pointer to ``arg``; the kernel may write back into it (e.g. ``mapped``)."""
    p = ctypes.addressof(arg) if arg is not None else None
    return _check(_libc.ioctl(fd, request, p), "ioctl")


def close(fd: int) -> None:
    _check(_libc.close(fd), "close")


def process_vm_readv(pid: int, local: int, remote: int, length: int) -> int:
    """Copy ``length`` bytes at ``remote`` in ``pid`` to ``local`` here; returns bytes copied.

    The remote side goes through GUP with FOLL_UNLOCKABLE, so a userfaultfd-registered page blocks
    until the handler resolves it, and a fault that would SIGBUS a real load returns EFAULT (or a
    short count) instead -- which is how the core touches device memory without risking a signal.
    """
    lv = iovec(local, length)
    rv = iovec(remote, length)
    return _check(
        int(_libc.process_vm_readv(pid, ctypes.addressof(lv), 1, ctypes.addressof(rv), 1, 0)),
        "process_vm_readv",
    )


def process_vm_writev(pid: int, local: int, remote: int, length: int) -> int:
    """Write counterpart of :func:`process_vm_readv` (same EFAULT-instead-of-SIGBUS property)."""
    lv = iovec(local, length)
    rv = iovec(remote, length)
    return _check(
        int(_libc.process_vm_writev(pid, ctypes.addressof(lv), 1, ctypes.addressof(rv), 1, 0)),
        "process_vm_writev",
    )


# --- userfaultfd helpers ------------------------------------------------------------------------------


def uffd_api(fd: int, features: int) -> int:
    """UFFDIO_API handshake; returns the feature bits the kernel granted. Raises if any is missing."""
    a = uffdio_api(UFFD_API, features, 0)
    ioctl(fd, UFFDIO_API, a)
    if a.features & features != features:
        raise OSError(_errno.EINVAL, f"UFFDIO_API: missing features {features & ~a.features:#x}")
    return int(a.features)


def uffd_features() -> int:
    """The feature bits this kernel's userfaultfd offers (UFFDIO_API with none asked, on a throwaway
    context: a context takes one handshake only); 0 when userfaultfd is unavailable."""
    try:
        fd = userfaultfd()
    except OSError:
        return 0
    try:
        a = uffdio_api(UFFD_API, 0, 0)
        ioctl(fd, UFFDIO_API, a)
        return int(a.features)
    except OSError:
        return 0
    finally:
        os.close(fd)


def uffd_register(fd: int, start: int, length: int, mode: int) -> int:
    """UFFDIO_REGISTER; returns the ioctl bitmask the range supports."""
    r = uffdio_register(uffdio_range(start, length), mode, 0)
    ioctl(fd, UFFDIO_REGISTER, r)
    return int(r.ioctls)


def uffd_wake(fd: int, start: int, length: int) -> None:
    ioctl(fd, UFFDIO_WAKE, uffdio_range(start, length))


def uffd_continue(fd: int, start: int, length: int, mode: int = 0) -> int:
    """UFFDIO_CONTINUE: map the page-cache pages already present behind [start, start+length).

    Returns bytes mapped. On error the OSError carries errno (EEXIST: the first PTE already present,
    EAGAIN: mm changing, or a partial success, ESRCH: the target mm is gone) and ``mapped``: the
    bytes mapped before the error when positive (the kernel's partial-success convention).
    """
    c = uffdio_continue(uffdio_range(start, length), mode, 0)
    try:
        ioctl(fd, UFFDIO_CONTINUE, c)
    except OSError as e:
        e.mapped = int(c.mapped)  # type: ignore[attr-defined]
        raise
    return int(c.mapped)


def uffd_poison(fd: int, start: int, length: int, mode: int = 0) -> int:
    """UFFDIO_POISON: install poison markers; a later access raises SIGBUS, GUP returns EFAULT."""
    p = uffdio_poison(uffdio_range(start, length), mode, 0)
    try:
        ioctl(fd, UFFDIO_POISON, p)
    except OSError as e:
        e.mapped = int(p.updated)  # type: ignore[attr-defined]
        raise
    return int(p.updated)


def read_msgs(fd: int, max_msgs: int = 16) -> list[uffd_msg]:
    """Non-blocking read of pending uffd messages ([] when none)."""
    try:
        data = os.read(fd, UFFD_MSG_SIZE * max_msgs)
    except BlockingIOError:
        return []
    n = len(data) // UFFD_MSG_SIZE
    return [uffd_msg.from_buffer_copy(data, i * UFFD_MSG_SIZE) for i in range(n)]


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("annotations",)]


def uffd_unavailable() -> str | None:
    """Why this machine cannot run the emulation (x86_64 syscall numbers; a userfaultfd with minor
    mode on shmem, poison, fork events and thread ids), or None when it can. Tests skip on it."""
    if not ARCH_OK:
        return "impl/ is x86_64 only"
    try:
        fd = userfaultfd()
    except OSError as e:
        return f"userfaultfd unavailable: {e}"
    try:
        uffd_api(
            fd,
            UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_POISON | UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_THREAD_ID,
        )
    except OSError as e:
        return f"userfaultfd lacks minor-shmem/poison/fork: {e}"
    finally:
        os.close(fd)
    return None
