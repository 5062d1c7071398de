"""An open /dev/daxX.Y: DaxFile, its file operations and mmap.

The file pins the cdev kobject chrdev_open took (and through it the device) until its last fput:
the fd is one reference, each vma made through it another (vma->vm_file), so a file whose fd is
closed lives on while a vma of it exists. The fops outcomes are spec/fops.py's; mmap follows
spec/vma.py do_mmap's order of checks, then check_vma (spec/geometry.py) with the device's align.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Final

import icontract

from devdax.spec import fops, geometry
from devdax.spec.abi import LEGACY_MAP_MASK, MAP, MAP_TYPE, PROT

from . import contracts
from .errors import KernelBug, check_int, os_error
from .fault_policy import VMA_NOHUGE
from .kobject import Kref
from .vma import Placement, UserMapping, VmArea, real_prot

if TYPE_CHECKING:
    from .bus import DaxBus
    from .device import DevDax

ON: Final = contracts.ENABLED
PAGE: Final = geometry.PAGE_SIZE


def _file_refs_exact(self: DaxFile) -> bool:
    f = self
    if f.f_count.released:
        return True
    return f.f_count.count == int(f.fd_open) + len(f.areas)


@icontract.invariant(_file_refs_exact, "f_count == fd + vmas", enabled=ON)
class DaxFile:
    """An open struct file of /dev/daxX.Y: f_count = the fd plus one per vma; private_data is the
    device dax_open stored (None: modern dax_get_private() of a dead device, M21)."""

    def __init__(self, bus: DaxBus, dev: DevDax, readable: bool, writable: bool, flags: int) -> None:
        self.bus = bus
        self.dev = dev
        self.readable = readable
        self.writable = writable
        self.flags = flags
        self.fd_open = True
        self.number = bus._next_file()
        self.name = f"file{self.number}"
        self.f_count = Kref(f"file{self.number}", self._last_fput)
        self.private_data: DevDax | None = dev
        self.areas: list[VmArea] = []
        self.pos = 0

    @property
    def closed(self) -> bool:
        return not self.fd_open

    def _last_fput(self) -> None:
        """__fput(): dax_release() does nothing; the VFS then drops what chrdev_open took."""
        self.bus._log("release", self.name)
        self.dev.files.discard(self)
        self.dev._cdev_put()
        self.dev.cd_forget()  # the file's /dev inode goes with its last file once its node is gone

    def _get(self) -> None:
        self.f_count.get()

    def _put(self) -> None:
        self.f_count.put()

    def _need_fd(self) -> None:
        if not self.fd_open:
            raise os_error(errno.EBADF, f"{self.name} is closed")

    # --- fops ----------------------------------------------------------------------------------------
    @icontract.ensure(lambda self: not self.fd_open, enabled=ON)
    def close(self) -> None:
        """close(fd): the vmas made through it keep the file (and so the device) alive."""
        with self.bus._lock:
            self._need_fd()
            self.fd_open = False
            self.bus._log("close", self.name)
            self._put()

    def read(self, length: int) -> bytes:
        """read(2): dax_fops has no ->read (spec/fops.py)."""
        check_int("length", length)
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.read(self.readable)), f"read on {self.name}")

    def write(self, data: bytes | int) -> int:
        """write(2): dax_fops has no ->write."""
        if not isinstance(data, bytes | bytearray | int) or isinstance(data, bool):
            raise ValueError(f"data: expected bytes or a length, got {type(data).__name__}")
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.write(self.writable)), f"write on {self.name}")

    def fsync(self) -> None:
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.fsync()), f"fsync on {self.name}")

    def lseek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """noop_llseek: returns the current position and never fails."""
        check_int("offset", offset, lo=-(1 << 63), hi=(1 << 63) - 1)
        check_int("whence", whence, 0, 4)
        with self.bus._lock:
            self._need_fd()
            assert fops.lseek() == "ok"
            return self.pos

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        check_int("mode", mode)
        check_int("offset", offset)
        check_int("length", length)
        with self.bus._lock:
            self._need_fd()
            out = fops.fallocate(self.writable, offset, length)
            raise os_error(getattr(errno, out), f"fallocate on {self.name}")

    def ioctl(self, request: int) -> int:
        check_int("request", request)
        with self.bus._lock:
            self._need_fd()
            raise os_error(getattr(errno, fops.ioctl()), f"ioctl on {self.name}")

    # --- mmap ----------------------------------------------------------------------------------------
    @icontract.ensure(lambda result: all(a.mayshare for a in result.areas), "vmas are shared", enabled=ON)
    @icontract.ensure(
        lambda self, result: all(
            a.start % self.dev.align == 0 and a.end % self.dev.align == 0 for a in result.areas
        ),
        "vmas are aligned on creation",
        enabled=ON,
    )
    def mmap(
        self, length: int, prot: int, flags: int, offset: int = 0, fixed_addr: int | None = None
    ) -> UserMapping:
        """mmap(2) in the spec's order (spec/vma.py do_mmap): map type; length/offset; EACCES;
        MAP_SHARED_VALIDATE flags; fixed address; dax_get_unmapped_area; dax_mmap -> check_vma."""
        check_int("length", length, 0, 1 << 47)
        check_int("prot", prot, 0, 0xF)
        check_int("flags", flags, 0, (1 << 32) - 1)
        check_int("offset", offset, 0, 1 << 62)
        if fixed_addr is not None:
            check_int("fixed_addr", fixed_addr, 0, (1 << 47) - 1)
        with self.bus._lock:
            self._need_fd()
            return self._mmap(length, prot, flags, offset, fixed_addr)

    def _do_mmap_checks(self, length: int, prot: int, flags: int, offset: int) -> int:
        """do_mmap's refusals before any address is chosen, in its order (spec/vma.py do_mmap):
        the map type, length and offset, the file's mode, MAP_SHARED_VALIDATE's flags. Returns the
        length rounded up to pages."""
        prof = self.dev.region.profile
        mtype = flags & MAP_TYPE
        if mtype == 0 or flags & MAP["MAP_HUGETLB"]:
            raise os_error(errno.EINVAL, "one of MAP_SHARED/MAP_PRIVATE/MAP_SHARED_VALIDATE; no MAP_HUGETLB")
        if length == 0 or offset % PAGE:
            raise os_error(errno.EINVAL, f"length {length:#x} / offset {offset:#x}")
        shared = mtype != MAP["MAP_PRIVATE"]
        write = bool(prot & PROT["PROT_WRITE"])
        if not self.readable or (shared and write and not self.writable):
            raise os_error(errno.EACCES, "do_mmap: FMODE_READ, or PROT_WRITE|MAP_SHARED needs FMODE_WRITE")
        if mtype == MAP["MAP_SHARED_VALIDATE"]:
            supported = LEGACY_MAP_MASK | (MAP["MAP_SYNC"] if prof.map_sync else 0)
            if flags & MAP["MAP_SYNC"] and not prof.map_sync:
                raise os_error(errno.EOPNOTSUPP, "MAP_SYNC not in mmap_supported_flags")
            if flags & ~supported & ~MAP["MAP_FIXED_NOREPLACE"]:
                raise os_error(errno.EOPNOTSUPP, f"flags {flags & ~supported:#x} not supported")
        if flags & MAP["MAP_GROWSDOWN"]:
            raise os_error(errno.EINVAL, "do_mmap: VM_GROWSDOWN on a file mapping (spec/vma.py do_mmap)")
        return geometry.round_up(length, PAGE)

    def _mmap(self, length: int, prot: int, flags: int, offset: int, fixed_addr: int | None) -> UserMapping:
        # Over 50 lines on purpose: do_mmap's checks, get_unmapped_area and dax_mmap in the kernel's
        # order (spec/vma.py do_mmap); split up, the order that decides each errno would be hidden.
        bus = self.bus
        length = self._do_mmap_checks(length, prot, flags, offset)
        shared = flags & MAP_TYPE != MAP["MAP_PRIVATE"]
        write = bool(prot & PROT["PROT_WRITE"])
        fixed = bool(flags & (MAP["MAP_FIXED"] | MAP["MAP_FIXED_NOREPLACE"]))
        if fixed and fixed_addr is None:
            raise ValueError("fixed_addr: MAP_FIXED needs an address")
        hint = geometry.mmap_addr(fixed_addr or 0, fixed)
        if hint is None:
            raise os_error(errno.EINVAL, f"MAP_FIXED address {fixed_addr:#x} not page aligned")
        dev = self.private_data
        align = self.dev.align
        place = Placement(
            bus, length, offset // PAGE, align, hint, fixed, bool(flags & MAP["MAP_FIXED_NOREPLACE"])
        )
        try:
            start = place.start()
            if dev is None:
                raise KernelBug(f"null deref: dax_mmap -> check_vma(NULL) on {self.name} of {self.dev.name}")
            noreserve = bool(flags & MAP["MAP_NORESERVE"])
            vflags = geometry.VmaFlags.from_mmap(shared, write, self.writable, noreserve)
            private_test = self.dev.region.profile.private_test
            rc = geometry.check_vma(dev.alive, vflags, start, start + length, align, private_test)
            if rc:
                raise os_error(-rc, f"check_vma on {dev.name} at {start:#x}+{length:#x}")
            place.commit()
            stack_nohuge = bool(flags & MAP["MAP_STACK"]) and self.dev.region.profile.map_stack_nohuge
            nohuge = VMA_NOHUGE if stack_nohuge else 0
            m = bus.core.map_at(
                dev.slot, start, length, offset // PAGE, real_prot(prot & 7), self.writable, nohuge
            )
        except BaseException:
            place.abort()
            raise
        area = VmArea(
            self,
            m,
            read=geometry.prot_readable(prot),
            write=write,
            exec_=bool(prot & PROT["PROT_EXEC"]),
            shared=vflags.shared,
            mayshare=vflags.mayshare,
            nohuge=bool(nohuge),
        )
        self._get()  # get_file(): the vma pins the file
        self.areas.append(area)
        v = UserMapping(self, start, [area])
        bus._areas.add(area)
        bus._log("mmap", self.name, f"{start:#x}+{length:#x} pgoff {offset // PAGE}")
        if flags & MAP["MAP_POPULATE"]:
            v._populate(start, start + length, write=False, strict=False)
        return v


__all__ = ["DaxFile"]


class PathFile:
    """An O_PATH file of /dev/daxX.Y: a path, not an open device (spec/fops.py path_only). No ->open
    ran, so it holds no cdev reference and no private_data; fdget() refuses it for every call but
    close (EBADF), and its close releases nothing of the device."""

    def __init__(self, bus: DaxBus, dev: DevDax) -> None:
        self.bus = bus
        self.dev = dev
        self.closed = False

    def fdget(self) -> None:
        """Any call but close: "if (file->f_mode & FMODE_PATH)" fdget() finds no file."""
        raise os_error(getattr(errno, fops.PATH_FD), f"O_PATH file of {self.dev.name}")

    def close(self) -> None:
        with self.bus._lock:
            if self.closed:
                raise os_error(errno.EBADF, "closed")
            self.closed = True
