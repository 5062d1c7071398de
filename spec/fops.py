"""What the VFS answers for the calls dax_fops does not implement.

dax_fops has open, release, mmap, get_unmapped_area, llseek = noop_llseek and (modern)
mmap_supported_flags = MAP_SYNC; nothing else (docs/semantics.md#calls-dax_fops-lacks;
tests/scenarios/s38-s40). Every other call is decided by generic code before or instead of the
driver. These outcomes never change device state, so they are plain functions of the open mode and
flags. docs/reference.md#outcomes-of-each-call lists them (spec/outcomes.py).
"""

from __future__ import annotations


def open_flags(flags: frozenset[str]) -> str:
    """do_dentry_open(): O_DIRECT needs FMODE_CAN_ODIRECT (set by ->open for files with direct I/O),
    which dax_open never sets -> EINVAL. O_SYNC, O_CLOEXEC, O_NONBLOCK... are accepted and ignored."""
    return "EINVAL" if "O_DIRECT" in flags else "ok"


def path_lookup(node: bool, flags: frozenset[str]) -> str | None:
    """path_openat() before any ->open. devtmpfs has the node from device_add() to device_del(), so
    an open after the device went is ENOENT, not chrdev_open's ENXIO (recorded: k43, k44);
    O_CREAT|O_EXCL on an existing node is EEXIST (open_last_lookups; recorded: k01), while O_CREAT
    alone opens it. O_PATH drops O_CREAT and O_EXCL (build_open_flags)."""
    if not node:
        return "ENOENT"
    if {"O_CREAT", "O_EXCL"} <= flags and "O_PATH" not in flags:
        return "EEXIST"
    return None


def path_only(flags: frozenset[str]) -> bool:
    """An O_PATH open is a path lookup only: do_dentry_open() gives the file f_op = &empty_fops and
    FMODE_PATH, and never calls ->open (no chrdev_open, no cdev reference, no private_data). fdget()
    refuses an FMODE_PATH file, so every later call on it but close is EBADF (read, write, lseek,
    ioctl, fsync, fallocate, mmap: recorded in k02, k03, k04, k05 on 6.1, 6.12 and 7.2)."""
    return "O_PATH" in flags


PATH_FD = "EBADF"


def read(readable: bool) -> str:
    """vfs_read(): FMODE_READ missing -> EBADF; no ->read/->read_iter (FMODE_CAN_READ unset) -> EINVAL."""
    return "EINVAL" if readable else "EBADF"


def write(writable: bool) -> str:
    """vfs_write(): FMODE_WRITE missing -> EBADF; no ->write/->write_iter -> EINVAL."""
    return "EINVAL" if writable else "EBADF"


def fsync() -> str:
    """vfs_fsync_range(): no ->fsync -> EINVAL (also what msync(MS_SYNC) reaches)."""
    return "EINVAL"


def lseek() -> str:
    """noop_llseek: returns the current position, never fails."""
    return "ok"


def ioctl() -> str:
    """No ->unlocked_ioctl: vfs_ioctl() -> ENOTTY (FIONREAD on a non-regular file goes there too)."""
    return "ENOTTY"


def fallocate(writable: bool, offset: int = 0, length: int = 1) -> str:
    """vfs_fallocate(): "if (offset < 0 || len <= 0) return -EINVAL" first (recorded: k05);
    FMODE_WRITE missing -> EBADF; a char device is neither S_ISREG nor S_ISBLK -> ENODEV.
    MADV_REMOVE ends here as well (PUNCH_HOLE)."""
    if offset < 0 or length <= 0:
        return "EINVAL"
    return "ENODEV" if writable else "EBADF"


def msync_flags(flags: frozenset[str]) -> str | None:
    """msync(): unknown flags, or MS_SYNC together with MS_ASYNC -> EINVAL; None if they are fine."""
    if flags - {"MS_SYNC", "MS_ASYNC", "MS_INVALIDATE"}:
        return "EINVAL"
    if {"MS_SYNC", "MS_ASYNC"} <= flags:
        return "EINVAL"
    return None


def msync_vma(flags: frozenset[str], vm_shared: bool) -> str:
    """msync() per vma: MS_SYNC on a VM_SHARED vma calls vfs_fsync_range -> fsync() -> EINVAL.
    A read-only shared mapping (O_RDONLY file: no VM_SHARED) has nothing to write back: ok."""
    if "MS_SYNC" in flags and vm_shared:
        return fsync()
    return "ok"
