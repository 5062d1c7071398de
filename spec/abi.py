"""The x86-64 Linux user ABI values that scenario files name: one table per call argument.

Why in spec/: every layer that turns a scenario's flag names into numbers (the emulation in impl/,
the kernel backend that runs the same file on a real ``/dev/daxX.Y``) must agree on them, and spec/ is
the one layer all of them may import. The values are uapi facts, cited per table; nothing here is a
rule of device-dax.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final

#: include/uapi/asm-generic/mman-common.h
PROT: Final = {"PROT_NONE": 0, "PROT_READ": 1, "PROT_WRITE": 2, "PROT_EXEC": 4}
#: include/uapi/asm-generic/mman-common.h, include/uapi/linux/mman.h, arch/x86 mman.h
MAP: Final = {
    "MAP_SHARED": 0x01,
    "MAP_PRIVATE": 0x02,
    "MAP_SHARED_VALIDATE": 0x03,
    "MAP_FIXED": 0x10,
    "MAP_ANONYMOUS": 0x20,
    "MAP_GROWSDOWN": 0x100,
    "MAP_LOCKED": 0x2000,
    "MAP_NORESERVE": 0x4000,
    "MAP_POPULATE": 0x8000,
    "MAP_NONBLOCK": 0x10000,
    "MAP_STACK": 0x20000,
    "MAP_HUGETLB": 0x40000,
    "MAP_SYNC": 0x80000,
    "MAP_FIXED_NOREPLACE": 0x100000,
    "MAP_HUGE_2MB": 21 << 26,
    "MAP_HUGE_1GB": 30 << 26,
}
MAP_TYPE: Final = 0x03
#: include/linux/mman.h LEGACY_MAP_MASK: what MAP_SHARED_VALIDATE accepts besides mmap_supported_flags
LEGACY_MAP_MASK: Final = (
    0x01
    | 0x02
    | 0x10
    | 0x20
    | 0x0800
    | 0x1000
    | 0x4000000
    | 0x100
    | 0x2000
    | 0x4000
    | 0x8000
    | 0x10000
    | 0x20000
    | 0x40000
)
#: include/uapi/asm-generic/mman-common.h
MADV: Final = {
    "MADV_NORMAL": 0,
    "MADV_RANDOM": 1,
    "MADV_SEQUENTIAL": 2,
    "MADV_WILLNEED": 3,
    "MADV_DONTNEED": 4,
    "MADV_FREE": 8,
    "MADV_REMOVE": 9,
    "MADV_DONTFORK": 10,
    "MADV_DOFORK": 11,
    "MADV_MERGEABLE": 12,
    "MADV_UNMERGEABLE": 13,
    "MADV_HUGEPAGE": 14,
    "MADV_NOHUGEPAGE": 15,
    "MADV_DONTDUMP": 16,
    "MADV_DODUMP": 17,
    "MADV_WIPEONFORK": 18,
    "MADV_KEEPONFORK": 19,
    "MADV_COLD": 20,
    "MADV_PAGEOUT": 21,
    "MADV_POPULATE_READ": 22,
    "MADV_POPULATE_WRITE": 23,
    "MADV_DONTNEED_LOCKED": 24,
    "MADV_COLLAPSE": 25,
    "MADV_HWPOISON": 100,
    "MADV_SOFT_OFFLINE": 101,
}
MADV_NAMES: Final = {v: k for k, v in MADV.items()}
#: include/uapi/asm-generic/mman-common.h
MS: Final = {"MS_ASYNC": 1, "MS_INVALIDATE": 2, "MS_SYNC": 4}
#: include/uapi/linux/mman.h
MREMAP: Final = {"MREMAP_MAYMOVE": 1, "MREMAP_FIXED": 2, "MREMAP_DONTUNMAP": 4}
#: include/uapi/asm-generic/fcntl.h (as the host's os module spells them; O_LARGEFILE is x86-64's)
O_FLAGS: Final = {
    "O_RDONLY": os.O_RDONLY,
    "O_WRONLY": os.O_WRONLY,
    "O_RDWR": os.O_RDWR,
    "O_SYNC": os.O_SYNC,
    "O_DSYNC": os.O_DSYNC,
    "O_DIRECT": os.O_DIRECT,
    "O_EXCL": os.O_EXCL,
    "O_CLOEXEC": os.O_CLOEXEC,
    "O_NONBLOCK": os.O_NONBLOCK,
    "O_NOATIME": os.O_NOATIME,
    "O_NOCTTY": os.O_NOCTTY,
    "O_TRUNC": os.O_TRUNC,
    "O_APPEND": os.O_APPEND,
    "O_CREAT": os.O_CREAT,
    "O_LARGEFILE": 0o100000,
    "O_PATH": os.O_PATH,
}
#: include/uapi/linux/fs.h
SEEK: Final = {"SEEK_SET": 0, "SEEK_CUR": 1, "SEEK_END": 2, "SEEK_DATA": 3, "SEEK_HOLE": 4}
#: include/uapi/linux/falloc.h
FALLOC: Final = {"FALLOC_FL_KEEP_SIZE": 1, "FALLOC_FL_PUNCH_HOLE": 2}
#: include/uapi/asm-generic/ioctls.h FIONREAD, include/uapi/linux/fs.h BLKGETSIZE64
IOCTL: Final = {"FIONREAD": 0x541B, "BLKGETSIZE64": 0x80081272}


def flags_of(names: Iterable[str], table: dict[str, int], field: str) -> int:
    """Names -> the OR of their values (the scenario runner's way in); unknown names: ValueError."""
    out = 0
    for n in names:
        if n not in table:
            raise ValueError(f"{field}: unknown flag {n!r}")
        out |= table[n]
    return out
