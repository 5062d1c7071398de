"""Every way each user call on /dev/daxX.Y can end, in the order the kernel checks: the outcome tables.

The rules themselves live where they always did (fops.py, vma.py, mm.py, fault.py, file.py and the
scenario runner that strings them together); this module lists their outcomes for people, one row
per way a call ends, with the condition, the kernel function that decides it, and a *witness*: a
scenario (docs/scenario-format.md) whose last step is that call ending exactly that way.
tests/test_docs.py runs every witness through the spec and fails when it ends otherwise, and fails
when the spec gives an outcome for a call over the scenario suite that no row of the call lists; so
the table cannot drift from the rules, and docs/reference.md prints it (with the kernels that were
recorded doing it, tests/kernel-results/).

Witnesses run on `modern` unless a row names another profile, on a 64M region with 2M alignment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Step = Mapping[str, object]


@dataclass(frozen=True)
class Row:
    """One outcome of a call: what the user sees, when, and which kernel code decides it."""

    outcome: str
    condition: str
    source: str
    witness: tuple[Step, ...]
    profile: str = "modern"
    setup: Mapping[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------------ witness steps ----
# Small constructors so that a witness reads as the user program it is.


def opened(flags: tuple[str, ...] = ("O_RDWR",), as_: str = "f") -> Step:
    return {"op": "open", "dev": 0, "flags": list(flags), "as": as_}


def mapped(length: object = "4M", prot: tuple[str, ...] = ("PROT_READ", "PROT_WRITE"), **kw: object) -> Step:
    step: dict[str, object] = {"op": "mmap", "fd": "f", "length": length, "prot": list(prot)}
    step.update({"flags": ["MAP_SHARED"], "offset": 0, "as": "m"})
    step.update(kw)
    return step


def on_map(op: str, **kw: object) -> Step:
    """A range call on mapping m: offset 0 and length 4M unless given."""
    return {"op": op, "map": "m", "offset": 0, "length": "4M", **kw}


def on_fd(op: str, **kw: object) -> Step:
    return {"op": op, "fd": "f", **kw}


def touch(offset: object = 0, access: str = "read") -> Step:
    return {"op": "touch", "map": "m", "offset": offset, "access": access}


def admin(op: str) -> Step:
    return {"op": op, "dev": 0}


RW = opened()
RO = opened(("O_RDONLY",))
MAP = mapped()
CLOSED = (RW, on_fd("close"))
PATH = opened(("O_RDONLY", "O_PATH"))
#: a 4M mapping with nothing mapped after it, so mremap can grow it in place
ROOM = (RW, mapped(length="8M"), on_map("munmap", offset="4M", length="4M"))
SMALL = {"region": {"size": "64M", "align": "2M"}, "devices": [{"size": "16M"}]}

# ------------------------------------------------------------------------------- tables ----

OPEN: tuple[Row, ...] = (
    Row(
        "ENOENT",
        "the node is gone: the device was deleted (devtmpfs has the node from device_add to device_del)",
        "path_openat",
        (RW, admin("remove"), opened(as_="g")),
    ),
    Row(
        "EEXIST",
        "O_CREAT|O_EXCL on the existing node",
        "open_last_lookups",
        (opened(("O_RDWR", "O_CREAT", "O_EXCL")),),
    ),
    Row(
        "EINVAL",
        "O_DIRECT: dax_open never sets FMODE_CAN_ODIRECT",
        "do_dentry_open",
        (opened(("O_RDWR", "O_DIRECT")),),
    ),
    Row(
        "ok",
        "O_PATH: a path lookup only, ->open is never called; later calls but close are EBADF",
        "do_dentry_open",
        (PATH,),
    ),
    Row(
        "ENXIO",
        "no cdev answers the devt: the device_dax driver is unbound (cdev_del ran) and no cached i_cdev "
        "is held",
        "chrdev_open (kobj_lookup)",
        (admin("disable"), RW),
    ),
    Row(
        "ok",
        "otherwise; dax_open has no alive check (modern: outside the alive window it stores a NULL "
        "private_data, F1)",
        "chrdev_open -> dax_open",
        (RW,),
    ),
)

CLOSE: tuple[Row, ...] = (
    Row("EBADF", "the fd is not open", "close_fd", (*CLOSED, on_fd("close"))),
    Row(
        "ok",
        "otherwise; the last close drops the cdev reference (cdev_put), which may release the device",
        "__fput",
        CLOSED,
    ),
)

MMAP: tuple[Row, ...] = (
    Row("EBADF", "the fd is not open, or is an O_PATH fd", "ksys_mmap_pgoff (fget)", (*CLOSED, mapped())),
    Row(
        "EINVAL",
        "not exactly one of MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE; or MAP_HUGETLB on a "
        "non-hugetlbfs file",
        "ksys_mmap_pgoff, do_mmap",
        (RW, mapped(flags=["MAP_SHARED", "MAP_HUGETLB"])),
    ),
    Row("EINVAL", "length 0, or an offset that is not page-aligned", "do_mmap", (RW, mapped(length=0))),
    Row(
        "EACCES",
        "the fd is not readable, or MAP_SHARED with PROT_WRITE on an fd not opened for writing",
        "do_mmap",
        (RO, mapped()),
    ),
    Row(
        "EOPNOTSUPP",
        "MAP_SHARED_VALIDATE|MAP_SYNC where dax_fops has no mmap_supported_flags (before modern)",
        "do_mmap",
        (RW, mapped(flags=["MAP_SHARED_VALIDATE", "MAP_SYNC"])),
        profile="v4.10",
    ),
    Row(
        "EINVAL",
        "MAP_GROWSDOWN on a file mapping",
        "do_mmap",
        (RW, mapped(flags=["MAP_SHARED", "MAP_GROWSDOWN"])),
    ),
    Row(
        "EINVAL",
        "MAP_FIXED at an address that is not page-aligned",
        "do_mmap",
        (RW, mapped(flags=["MAP_SHARED", "MAP_FIXED"], fixed_offset=1)),
    ),
    Row(
        "OOPS",
        "modern: the fd was opened outside the alive window (private_data is NULL): check_vma(NULL) "
        "(F1, M21)",
        "dax_mmap -> check_vma",
        (RW, admin("disable"), opened(as_="g"), mapped(fd="g")),
    ),
    Row(
        "ENXIO",
        "the device is not alive (killed, unbound)",
        "check_vma (!dax_alive)",
        (RW, admin("disable"), mapped()),
    ),
    Row(
        "EINVAL",
        "a private mapping (no VM_MAYSHARE), whatever the prot",
        "check_vma ('attempted private mapping')",
        (RW, mapped(flags=["MAP_PRIVATE"])),
    ),
    Row(
        "EINVAL",
        "vm_start or vm_end not a multiple of the device alignment: a length, a MAP_FIXED address, or "
        "(through dax_get_unmapped_area's congruence) a file offset that is not aligned",
        "check_vma ('unaligned vma')",
        (RW, mapped(length="3M")),
    ),
    Row(
        "ok",
        "otherwise; neither the offset nor the length is checked against the device size (faults past the "
        "end are SIGBUS), nor vm_pgoff's alignment under MAP_FIXED (F3)",
        "dax_mmap",
        (RW, mapped()),
    ),
)

MUNMAP: tuple[Row, ...] = (
    Row(
        "EINVAL",
        "length 0, a start that is not page-aligned, or a range that wraps",
        "__vm_munmap",
        (RW, MAP, on_map("munmap", length=0)),
    ),
    Row(
        "EINVAL",
        "the range cuts a vma at an address that is not a multiple of the alignment; nothing is unmapped",
        "dev_dax_may_split (__split_vma)",
        (RW, MAP, on_map("munmap", length="1M")),
    ),
    Row(
        "ok",
        "otherwise, also where nothing is mapped",
        "do_vmi_munmap",
        (RW, MAP, on_map("munmap", length="2M")),
    ),
)

MPROTECT: tuple[Row, ...] = (
    Row(
        "EINVAL",
        "a start that is not page-aligned, or a range that wraps",
        "do_mprotect_pkey",
        (RW, MAP, on_map("mprotect", offset=1, prot=["PROT_READ"])),
    ),
    Row(
        "EACCES",
        "PROT_WRITE on a shared mapping of an fd opened read-only (no VM_MAYWRITE), checked before any split",
        "mprotect_fixup",
        (RO, mapped(prot=("PROT_READ",)), on_map("mprotect", prot=["PROT_READ", "PROT_WRITE"])),
    ),
    Row(
        "EINVAL",
        "the range cuts a vma at an address that is not a multiple of the alignment",
        "dev_dax_may_split (__split_vma)",
        (RW, MAP, on_map("mprotect", length="1M", prot=["PROT_READ"])),
    ),
    Row(
        "ENOMEM",
        "a hole in the range: the walk stops there, with the vmas before it changed",
        "do_mprotect_pkey",
        (RW, MAP, on_map("mprotect", length="8M", prot=["PROT_READ"])),
    ),
    Row(
        "ok",
        "otherwise (an unchanged flag set splits nothing)",
        "mprotect_fixup",
        (RW, MAP, on_map("mprotect", prot=["PROT_READ"])),
    ),
)


def _advise(advice: str, length: str = "4M", fd: Step = RW, map_step: Step = MAP) -> tuple[Step, ...]:
    return (fd, map_step, on_map("madvise", length=length, advice=advice))


MADVISE: tuple[Row, ...] = (
    Row(
        "EINVAL",
        "a start that is not page-aligned, or a range that wraps",
        "do_madvise",
        (RW, MAP, on_map("madvise", offset=1, advice="MADV_NORMAL")),
    ),
    Row(
        "EINVAL",
        "MADV_POPULATE_WRITE on a vma without VM_WRITE, or a populate of a PROT_NONE vma",
        "faultin_vma_page_range (check_vma_flags)",
        _advise("MADV_POPULATE_WRITE", fd=RO, map_step=mapped(prot=("PROT_READ",))),
    ),
    Row(
        "EFAULT",
        "MADV_POPULATE_READ/WRITE where a fault is SIGBUS (past the device end, device killed)",
        "faultin_page_range",
        _advise("MADV_POPULATE_READ", length="32M", map_step=mapped(length="32M")),
        setup=SMALL,
    ),
    Row(
        "ENOMEM",
        "a hole in the range (reported after the vmas around it were advised)",
        "madvise_walk_vmas (unmapped_error)",
        _advise("MADV_NORMAL", length="8M"),
    ),
    Row(
        "EINVAL",
        "MADV_DODUMP on a VM_MIXEDMAP vma (4.x profiles)",
        "madvise_vma_behavior (VM_SPECIAL)",
        _advise("MADV_DODUMP"),
        profile="v4.10",
    ),
    Row(
        "EINVAL",
        "a flag advice (MADV_DONTFORK, MADV_NOHUGEPAGE, ...) whose range cuts a vma at a misaligned address",
        "dev_dax_may_split (madvise_update_vma)",
        _advise("MADV_DONTFORK", length="1M"),
    ),
    Row("EINVAL", "MADV_FREE: anonymous memory only", "madvise_free_single_vma", _advise("MADV_FREE")),
    Row("EINVAL", "MADV_WIPEONFORK on a file mapping", "madvise_vma_behavior", _advise("MADV_WIPEONFORK")),
    Row(
        "EACCES",
        "MADV_REMOVE on a mapping that is not shared and writable",
        "madvise_remove (vma_is_shared_maywrite)",
        _advise("MADV_REMOVE", fd=RO, map_step=mapped(prot=("PROT_READ",))),
    ),
    Row(
        "ENODEV",
        "MADV_REMOVE: fallocate(PUNCH_HOLE) on a char device",
        "madvise_remove -> vfs_fallocate",
        _advise("MADV_REMOVE"),
    ),
    Row(
        "EINVAL",
        "any advice device-dax has no meaning for (MADV_COLLAPSE, MADV_HWPOISON, ...)",
        "madvise_vma_behavior",
        _advise("MADV_COLLAPSE"),
    ),
    Row(
        "ok",
        "otherwise: flag advices change vm_flags (MADV_DONTFORK sets VM_DONTCOPY), MADV_DONTNEED zaps the "
        "entries (the data stays on the device), MADV_COLD/PAGEOUT/WILLNEED do nothing",
        "madvise_vma_behavior",
        _advise("MADV_DONTNEED"),
    ),
)


def _remap(offset: object, old: object, new: object, move: bool = False) -> Step:
    step: dict[str, object] = {
        "op": "mremap",
        "map": "m",
        "offset": offset,
        "old_length": old,
        "new_length": new,
    }
    if move:
        step["move"] = True
    return step


MREMAP: tuple[Row, ...] = (
    Row(
        "EINVAL",
        "an address that is not page-aligned, or a new length of 0",
        "SYSCALL mremap",
        (RW, MAP, _remap(0, "4M", 0)),
    ),
    Row("EFAULT", "no vma at the address", "vma_lookup", (RW, MAP, on_map("munmap"), _remap(0, "4M", "2M"))),
    Row(
        "EINVAL",
        "a shrink whose new end cuts the vma at a misaligned address (the tail's munmap asks may_split)",
        "do_vmi_munmap -> dev_dax_may_split",
        (RW, MAP, _remap(0, "4M", "3M")),
    ),
    Row(
        "ok",
        "a shrink at an aligned end, or the same length",
        "do_vmi_munmap",
        (RW, MAP, _remap(0, "4M", "2M")),
    ),
    Row(
        "EFAULT",
        "a grow whose old range crosses the vma's end",
        "vma_to_resize",
        (RW, MAP, _remap(0, "6M", "8M")),
    ),
    Row(
        "ok",
        "a grow in place (nothing mapped after the vma): no driver hook is asked, so the end may be "
        "misaligned "
        "and every later fault is SIGBUS (check_vma)",
        "vma_expandable -> vma_merge",
        (*ROOM, _remap(0, "4M", "5M")),
    ),
    Row(
        "ENOMEM",
        "a grow that does not fit in place, without MREMAP_MAYMOVE",
        "SYSCALL mremap",
        (RW, MAP, _remap(0, "2M", "4M")),
    ),
    Row(
        "EINVAL",
        "a move of part of a vma cut at a misaligned address",
        "move_vma -> dev_dax_may_split",
        (RW, MAP, _remap("1M", "1M", "4M", move=True)),
    ),
    Row(
        "ok",
        "a move: a new vma where dax_get_unmapped_area puts it, entries moved when the distance keeps "
        "them aligned",
        "move_vma",
        (RW, MAP, _remap(0, "2M", "4M", move=True)),
    ),
)

MSYNC: tuple[Row, ...] = (
    Row(
        "EINVAL",
        "an unknown flag, or MS_SYNC together with MS_ASYNC",
        "SYSCALL msync",
        (RW, MAP, on_map("msync", flags=["MS_SYNC", "MS_ASYNC"])),
    ),
    Row(
        "EINVAL",
        "a start that is not page-aligned",
        "SYSCALL msync",
        (RW, MAP, on_map("msync", offset=1, flags=["MS_ASYNC"])),
    ),
    Row(
        "EINVAL",
        "MS_SYNC over a VM_SHARED vma: dax_fops has no ->fsync",
        "vfs_fsync_range",
        (RW, MAP, on_map("msync", flags=["MS_SYNC"])),
    ),
    Row(
        "ENOMEM",
        "a hole in the range",
        "SYSCALL msync",
        (RW, MAP, on_map("msync", length="8M", flags=["MS_ASYNC"])),
    ),
    Row(
        "ok",
        "otherwise (MS_ASYNC; MS_SYNC on a read-only shared mapping, which has no VM_SHARED)",
        "SYSCALL msync",
        (RW, MAP, on_map("msync", flags=["MS_ASYNC"])),
    ),
)

TOUCH: tuple[Row, ...] = (
    Row(
        "SIGSEGV",
        "no vma at the address (SEGV_MAPERR)",
        "do_user_addr_fault",
        (RW, MAP, on_map("munmap"), touch()),
    ),
    Row(
        "SIGSEGV",
        "the vma does not permit the access: a write to a read-only mapping, any access to PROT_NONE "
        "(SEGV_ACCERR)",
        "access_error",
        (RW, mapped(prot=("PROT_READ",)), touch(access="write")),
    ),
    Row("ok", "an entry maps the address already: no fault", "the page table", (RW, MAP, touch(), touch())),
    Row(
        "SIGBUS",
        "the device is not alive (unbound, removed): every fault re-checks alive under the read lock",
        "dev_dax_huge_fault -> check_vma",
        (RW, MAP, admin("disable"), touch()),
    ),
    Row(
        "SIGBUS",
        "the vma is no longer aligned (mremap grew it to a misaligned end)",
        "dev_dax_huge_fault -> check_vma",
        (*ROOM, _remap(0, "4M", "5M"), touch("2M")),
    ),
    Row(
        "SIGBUS",
        "the fault is smaller than the alignment (MADV_NOHUGEPAGE forces pte faults on a 2M device)",
        "__dev_dax_pte_fault (fault_size != align)",
        (RW, MAP, on_map("madvise", advice="MADV_NOHUGEPAGE"), touch()),
    ),
    Row(
        "SIGBUS",
        "past the device end, or a block straddling two ranges",
        "dax_pgoff_to_phys",
        (RW, mapped(length="32M"), touch("20M")),
        setup=SMALL,
    ),
    Row(
        "ok",
        "otherwise: one entry of the alignment's size, after FALLBACK from any larger fault size",
        "vmf_insert_pfn_pmd / _pud / vmf_insert_mixed",
        (RW, MAP, touch(access="write")),
    ),
)

FORK: tuple[Row, ...] = (
    Row(
        "SIGSEGV",
        "the vma has VM_DONTCOPY (MADV_DONTFORK): the child has no mapping there",
        "dup_mmap",
        (
            RW,
            MAP,
            on_map("madvise", advice="MADV_DONTFORK"),
            {"op": "fork_touch", "map": "m", "offset": 0, "access": "read"},
        ),
    ),
    Row(
        "SIGBUS",
        "the device is not alive: the child's fault fails like the parent's",
        "dev_dax_huge_fault -> check_vma",
        (RW, MAP, admin("disable"), {"op": "fork_touch", "map": "m", "offset": 0, "access": "read"}),
    ),
    Row(
        "ok",
        "otherwise: the child shares the mapping (4.x copies the entries, VM_MIXEDMAP; modern refaults)",
        "dup_mmap",
        (RW, MAP, {"op": "fork_touch", "map": "m", "offset": 0, "access": "write"}),
    ),
)


def _fd_rows(op: str, mode_errno: str, answer: str, why: str, source: str, **kw: object) -> tuple[Row, ...]:
    """The rows every fd call shares: EBADF for a closed or O_PATH fd first."""
    return (
        Row("EBADF", "the fd is not open, or is an O_PATH fd (FMODE_PATH)", "fdget", (PATH, on_fd(op, **kw))),
        *(
            (
                Row(
                    "EBADF",
                    mode_errno,
                    source,
                    (opened(("O_WRONLY",) if op == "read" else ("O_RDONLY",)), on_fd(op, **kw)),
                ),
            )
            if mode_errno
            else ()
        ),
        Row(answer, why, source, (RW, on_fd(op, **kw))),
    )


READ = _fd_rows(
    "read",
    "the fd was not opened for reading (no FMODE_READ)",
    "EINVAL",
    "dax_fops has no ->read or ->read_iter",
    "vfs_read",
    length=4096,
)
WRITE = _fd_rows(
    "write",
    "the fd was not opened for writing (no FMODE_WRITE)",
    "EINVAL",
    "dax_fops has no ->write or ->write_iter",
    "vfs_write",
    length=4096,
)
FSYNC = _fd_rows("fsync", "", "EINVAL", "dax_fops has no ->fsync", "vfs_fsync_range")
LSEEK = _fd_rows(
    "lseek",
    "",
    "ok",
    "noop_llseek: the position is returned unchanged",
    "noop_llseek",
    offset=0,
    whence="SEEK_SET",
)
IOCTL = _fd_rows("ioctl", "", "ENOTTY", "dax_fops has no ->unlocked_ioctl", "vfs_ioctl", request="FIONREAD")
_FALLOC = {"mode": 0, "offset": 0}
FALLOCATE: tuple[Row, ...] = (
    Row(
        "EBADF",
        "the fd is not open, or is an O_PATH fd (FMODE_PATH)",
        "fdget",
        (PATH, on_fd("fallocate", length=4096, **_FALLOC)),
    ),
    Row(
        "EINVAL",
        "a negative offset or a length <= 0, checked first",
        "vfs_fallocate",
        (RW, on_fd("fallocate", length=0, **_FALLOC)),
    ),
    Row(
        "EBADF",
        "the fd was not opened for writing",
        "vfs_fallocate",
        (RO, on_fd("fallocate", length=4096, **_FALLOC)),
    ),
    Row(
        "ENODEV",
        "a char device is neither a regular file nor a block device",
        "vfs_fallocate",
        (RW, on_fd("fallocate", length=4096, **_FALLOC)),
    ),
)

#: call -> its rows in check order; the key is the scenario op the witnesses end with
CALLS: dict[str, tuple[Row, ...]] = {
    "open": OPEN,
    "close": CLOSE,
    "mmap": MMAP,
    "munmap": MUNMAP,
    "mprotect": MPROTECT,
    "madvise": MADVISE,
    "mremap": MREMAP,
    "msync": MSYNC,
    "touch": TOUCH,
    "fork_touch": FORK,
    "read": READ,
    "write": WRITE,
    "fsync": FSYNC,
    "lseek": LSEEK,
    "fallocate": FALLOCATE,
    "ioctl": IOCTL,
}

#: how the reference names a call whose scenario op is not the system call's name
TITLES: dict[str, str] = {
    "touch": "a load or store (the page fault)",
    "fork_touch": "fork(), then the child's access",
}
